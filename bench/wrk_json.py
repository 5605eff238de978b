#!/usr/bin/env python3
"""Turns wrk's --latency text (stdin) into one JSON result line: requests/s, p50/p99 ms, errors,
the whole latency histogram when bench/latency.lua printed it (`latency_us`: [µs, count] pairs,
which bench/report.py pools over rounds), and, given the peer's CPU clock ticks over the run and
the tick rate, its CPU µs per request."""
import json
import re
import sys

UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def ms(text):
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    return float(m.group(1)) * UNITS[m.group(2)] if m else None


def main():
    label, method = sys.argv[1], sys.argv[2]
    text = sys.stdin.read()
    out = {"scenario": "rest", "peer": label, "method": method}
    for pct, key in (("50", "p50_ms"), ("99", "p99_ms")):
        m = re.search(rf"^\s+{pct}%\s+(\S+)", text, re.M)
        out[key] = ms(m.group(1)) if m else None
    m = re.search(r"^Requests/sec:\s+([\d.]+)", text, re.M)
    out["rps"] = float(m.group(1)) if m else None
    m = re.search(r"(\d+) requests in", text)
    out["requests"] = int(m.group(1)) if m else 0
    errors = 0
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    errors += int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    errors += sum(int(g) for g in m.groups()) if m else 0
    out["errors"] = errors
    m = re.search(r"^latency-histogram (\S*)$", text, re.M)
    if m:
        out["latency_us"] = [[int(v), int(n)] for v, n in
                             (pair.split(":") for pair in m.group(1).split(",") if pair)]
    if len(sys.argv) > 4 and out["requests"] and int(sys.argv[3]) > 0:
        ticks, per_s = int(sys.argv[3]), int(sys.argv[4])
        out["cpu_us_per_request"] = ticks / per_s * 1e6 / out["requests"]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
