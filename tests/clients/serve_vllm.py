#!/usr/bin/env python3
"""Serve vLLM-named metrics through prometheus_client (the library vLLM itself uses).

Used by the scrape end-to-end test. It serves /metrics on --port with vLLM's names, label
(`model_name`) and bucket layouts, prints "ready", waits until the file --go exists, then
makes the observations listed in --observations (JSON: {"ttft": [...], "e2e": [...],
"prompt_tokens": [...]}) and prints "observed". It serves until killed.
"""
import argparse
import json
import os
import sys
import time

from prometheus_client import Counter, Gauge, Histogram, start_http_server

# vLLM's layouts (vllm/engine/metrics.py, 2024-2025).
TTFT_BUCKETS = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0,
                2.5, 5.0, 7.5, 10.0]
E2E_BUCKETS = [0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0,
               60.0]


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--go", required=True)
    p.add_argument("--observations", required=True)
    p.add_argument("--model", default="meta-llama/Llama-3.1-8B-Instruct")
    args = p.parse_args()

    labels = ["model_name"]
    ttft = Histogram("vllm:time_to_first_token_seconds",
                     "Histogram of time to first token in seconds.", labels,
                     buckets=TTFT_BUCKETS)
    e2e = Histogram("vllm:e2e_request_latency_seconds",
                    "Histogram of end to end request latency in seconds.", labels,
                    buckets=E2E_BUCKETS)
    prompt = Counter("vllm:prompt_tokens", "Number of prefill tokens processed.", labels)
    running = Gauge("vllm:num_requests_running", "Number of requests in model execution batches.",
                    labels)
    m = args.model
    running.labels(m).set(3)
    # Series exist (at zero) before the agent's first scrape, its baseline.
    ttft.labels(m)
    e2e.labels(m)
    prompt.labels(m)
    start_http_server(args.port, addr="127.0.0.1")
    print("ready", flush=True)

    with open(args.observations) as f:
        obs = json.load(f)
    while not os.path.exists(args.go):
        time.sleep(0.05)
    for v in obs["ttft"]:
        ttft.labels(m).observe(v)
    for v in obs["e2e"]:
        e2e.labels(m).observe(v)
    for n in obs["prompt_tokens"]:
        prompt.labels(m).inc(n)
    running.labels(m).set(5)
    print("observed", flush=True)
    while True:
        time.sleep(1)


if __name__ == "__main__":
    sys.exit(main())
