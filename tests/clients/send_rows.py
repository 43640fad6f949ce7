#!/usr/bin/env python3
"""Send a table row by row to a Pitot agent's Unix socket with the official datadog client.

Used by tests/e2e_unix_clients.rs. The client runs at its defaults except that buffering is
on (disable_buffering=False, its buffer at the default 8 KiB, counted in characters) and its
own telemetry is flushed every second instead of every 10 s, so a short test sees it.
Each row i sends:
  histogram    input.income      (a float)              tags region:<city>, lang:<language>
  distribution request.latency_s (seconds, sub-ms)      tags region:<city>
  set          input.salary_band (BANDS[i % len])       tags region:<city>, lang:<language>
Tag and set values are in several scripts. The values sent are written to --out as JSON
({"income": [...], "latency_s": [...], "bands": [...]}) so the test knows exactly what was
"""
import argparse
import json
import os
import random
import sys
import time

BANDS = ["20K - 40K €", "40K - 60K €", "Über 100K", "日本語の帯", "😀 emoji band"]
CITIES = ["München", "Zürich", "東京", "São Paulo"]
LANGS = ["日本語", "français", "español", "Ελληνικά"]


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--unix", required=True)
    p.add_argument("--rows", type=int, required=True)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--out", required=True)
    p.add_argument("--linger", type=float, default=0.0,
                   help="after the rows, keep sending one row a second for this long "
                        "(so the client flushes its telemetry)")
    p.add_argument("--burst-done", help="write this file once the rows are sent (before lingering)")
    args = p.parse_args()

    from datadog import DogStatsd
    client = DogStatsd(socket_path=args.unix, disable_buffering=False,
                       telemetry_min_flush_interval=1)
    rng = random.Random(args.seed)
    sent = {"income": [], "latency_s": [], "bands": []}

    def row(i):
        city, lang = CITIES[i % len(CITIES)], LANGS[i % len(LANGS)]
        income = round(rng.lognormvariate(10.5, 0.6), 2)
        latency = rng.lognormvariate(-5.2, 0.5)  # ~5.5 ms, in seconds, full precision
        band = BANDS[i % len(BANDS)]
        client.histogram("input.income", income, tags=[f"region:{city}", f"lang:{lang}"])
        client.distribution("request.latency_s", latency, tags=[f"region:{city}"])
        client.set("input.salary_band", band, tags=[f"region:{city}", f"lang:{lang}"])
        sent["income"].append(income)
        sent["latency_s"].append(latency)
        sent["bands"].append(band)

    start = time.monotonic()
    for i in range(args.rows):
        row(i)
    client.flush()
    if args.burst_done:
        with open(args.burst_done, "w") as f:
            f.write("done\n")
    end = time.monotonic() + args.linger
    i = args.rows
    while time.monotonic() < end:
        time.sleep(1.0)
        row(i)
        i += 1
        client.flush()
    client.close_socket()
    with open(args.out, "w") as f:
        json.dump(sent, f)
    print(f"sent {i} rows in {time.monotonic() - start:.2f}s", file=sys.stderr)


if __name__ == "__main__":
    main()
