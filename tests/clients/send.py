#!/usr/bin/env python3
"""Send metric values to a Pitot agent through an official, unmodified Python client.

Used by the end-to-end tests. Values come from a file (one float per line) so the test
knows exactly what was sent. Clients:
  datadog  -- datadog.DogStatsd (UDP or Unix datagram socket), with tags
  statsd   -- statsd.StatsClient (UDP), plain StatsD without tags
Kinds: timing (ms), histogram, distribution, increment (counter, value = count), set,
count_at (datadog: count_with_timestamp; each line is VALUE@UNIX_SECONDS).
"""
import argparse
import sys
import time


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--client", choices=["datadog", "statsd"], required=True)
    p.add_argument("--udp", help="host:port")
    p.add_argument("--unix", help="Unix datagram socket path (datadog only)")
    p.add_argument("--metric", required=True)
    p.add_argument("--kind", default="timing",
                   choices=["timing", "histogram", "distribution", "increment", "set", "count_at"])
    p.add_argument("--tags", default="", help="comma-separated k:v tags (datadog only)")
    p.add_argument("--values", required=True, help="file with one value per line")
    p.add_argument("--rate", type=float, default=0.0, help="values per second, 0 = flat out")
    p.add_argument("--socket-timeout", type=float, default=None,
                   help="datagram socket timeout (datadog); unset keeps the client's default "
                        "(non-blocking: drops when the agent's queue is full)")
    args = p.parse_args()

    with open(args.values) as f:
        values = [line.strip() for line in f if line.strip()]
    tags = [t for t in args.tags.split(",") if t]

    if args.client == "datadog":
        from datadog import DogStatsd
        options = {}
        if args.socket_timeout is not None:
            options["socket_timeout"] = args.socket_timeout
        if args.unix:
            client = DogStatsd(socket_path=args.unix, **options)
        else:
            host, port = args.udp.rsplit(":", 1)
            client = DogStatsd(host=host, port=int(port), **options)
        send = {
            "timing": lambda v: client.timing(args.metric, float(v), tags=tags),
            "histogram": lambda v: client.histogram(args.metric, float(v), tags=tags),
            "distribution": lambda v: client.distribution(args.metric, float(v), tags=tags),
            "increment": lambda v: client.increment(args.metric, int(float(v)), tags=tags),
            "set": lambda v: client.set(args.metric, v, tags=tags),
            "count_at": lambda v: client.count_with_timestamp(
                args.metric, int(v.split("@")[0]), timestamp=int(v.split("@")[1]), tags=tags),
        }[args.kind]
    else:
        import statsd
        host, port = args.udp.rsplit(":", 1)
        client = statsd.StatsClient(host, int(port))
        send = {
            "timing": lambda v: client.timing(args.metric, float(v)),
            "increment": lambda v: client.incr(args.metric, int(float(v))),
            "set": lambda v: client.set(args.metric, v),
        }[args.kind]

    start = time.monotonic()
    for i, v in enumerate(values):
        send(v)
        if args.rate > 0:
            due = start + (i + 1) / args.rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
    if args.client == "datadog":
        client.flush()
        client.close_socket()
    print(f"sent {len(values)} values in {time.monotonic() - start:.2f}s", file=sys.stderr)


if __name__ == "__main__":
    main()
