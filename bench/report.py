#!/usr/bin/env python3
"""Tables for BENCHMARKS.md from bench/run.sh's results.jsonl: medians over rounds, ratios in-run.

    report.py results.jsonl            # markdown tables on stdout
    report.py --brief < one-line.json  # one fan-out result as a line of text
    report.py --check-smoke results.jsonl   # exit 1 unless every scenario produced sane figures
"""
import json
import math
import statistics
import sys
from collections import defaultdict

REST_PEERS = ["direct", "nginx", "haproxy", "pushpin", "syncgate"]


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(v, digits=2):
    if v is None:
        return "—"
    if isinstance(v, float) and digits == 0:
        return f"{v:,.0f}"
    return f"{v:.{digits}f}"


def ratio(a, b):
    return f"{a / b:.2f}×" if a and b else "—"


def group(rows, key):
    by = defaultdict(list)
    for r in rows:
        by[key(r)].append(r)
    return by


def med_of(rs, field, quantile):
    return med(r[field][quantile] for r in rs)


def load(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def histogram(rs):
    """Every round's latency histogram (bench/latency.lua) merged: {µs: requests}. None unless
    every round has one, so a figure taken from it never silently covers only some rounds."""
    if not rs or any(not r.get("latency_us") for r in rs):
        return None
    counts = defaultdict(int)
    for r in rs:
        for value, n in r["latency_us"]:
            counts[value] += n
    return counts


def pooled(rs, quantile=0.99):
    """The latency (ms) at `quantile` of every request of every round together (nearest rank,
    as wrk's own percentiles). A single round's p99 on this two-core VM moves by half from one
    round to the next with how the scheduler fell; pooling weighs each round by its requests
    instead of letting the median round decide."""
    counts = histogram(rs)
    if counts is None:
        return None
    rank = math.ceil(quantile * sum(counts.values()))
    seen = 0
    for value in sorted(counts):
        seen += counts[value]
        if seen >= rank:
            return value / 1000
    return None


def share_over(rs, ms):
    """The share (%) of every request of every round together that took longer than `ms`: where
    a p99 sits is decided by how many requests land in the tail, and this counts them (a proxy
    whose tail is one slow round and one whose every round has a few more slow requests give the
    same p99 and a different share)."""
    counts = histogram(rs)
    if not counts:
        return None
    slow = sum(n for value, n in counts.items() if value > ms * 1000)
    return 100 * slow / sum(counts.values())


def round_ratios(rs, ng, field):
    """This peer's figure over nginx's, round by round (None where either is missing). Rows are
    in run order, so the k-th row of each peer belongs to round k."""
    return [r[field] / n[field] if r.get(field) and n.get(field) else None for r, n in zip(rs, ng)]


def paired(rs, ng, field):
    """Median over rounds of this peer's figure over nginx's in the same round: the machine's
    speed drifts between rounds (nginx itself varied 1.5x across one run), and a ratio taken
    within a round cancels that drift where a ratio of medians does not."""
    return med(round_ratios(rs, ng, field))


def rest_table(rows):
    by = group(rows, lambda r: (r["peer"], r["method"]))
    if not by:
        return []
    out = ["## REST proxying", "",
           "Ratios are to nginx: \"of medians\" divides the medians over rounds; \"paired\" is the median "
           "of the ratios within each round (nginx and syncgate run back to back in every round).", "",
           "| target | method | req/s | p50 ms | p99 ms | req/s vs nginx, of medians | paired | "
           "p99 vs nginx, of medians | paired | p99 ms, all rounds' requests | vs nginx | "
           "CPU µs per request | vs nginx, paired | errors | rounds |",
           "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for method in ("GET", "POST", "GET-browser"):
        ng = by.get(("nginx", method), [])
        ng_rps, ng_p99 = med(r["rps"] for r in ng), med(r["p99_ms"] for r in ng)
        ng_all = pooled(ng)
        for peer in REST_PEERS:
            rs = by.get((peer, method))
            if not rs:
                continue
            rps, p50, p99 = med(r["rps"] for r in rs), med(r["p50_ms"] for r in rs), med(r["p99_ms"] for r in rs)
            pr, pp = paired(rs, ng, "rps"), paired(rs, ng, "p99_ms")
            p99_all = pooled(rs)
            cpu = med(r.get("cpu_us_per_request") for r in rs)
            pc = paired(rs, ng, "cpu_us_per_request")
            out.append(f"| {peer} | {method} | {fmt(rps, 0)} | {fmt(p50)} | {fmt(p99)} | {ratio(rps, ng_rps)} | "
                       f"{fmt(pr) + '×' if pr else '—'} | {ratio(p99, ng_p99)} | {fmt(pp) + '×' if pp else '—'} | "
                       f"{fmt(p99_all)} | {ratio(p99_all, ng_all)} | {fmt(cpu, 1)} | {fmt(pc) + '×' if pc else '—'} | "
                       f"{sum(r['errors'] for r in rs)} | {len(rs)} |")
    return out + [""]


def rounds_table(rows, peer="syncgate"):
    """The paired medians' inputs, round by round: on a shared two-core VM one round can sit 30%
    away from the next, and a reader deciding whether a 5% gap is real needs the spread, not
    only the median."""
    by = group(rows, lambda r: (r["peer"], r["method"]))
    lines = []
    width = 0
    for method in ("GET", "POST", "GET-browser"):
        ng, rs = by.get(("nginx", method), []), by.get((peer, method), [])
        for label, field in (("req/s", "rps"), ("CPU", "cpu_us_per_request"), ("p99", "p99_ms")):
            ratios = round_ratios(rs, ng, field)
            if not any(ratios):
                continue
            width = max(width, len(ratios))
            cells = " | ".join(fmt(x) for x in ratios)
            lines.append(f"| {method} {label} | {cells} | **{fmt(med(ratios))}** |")
    if not lines:
        return []
    head = " | ".join(f"round {k}" for k in range(1, width + 1))
    return [f"{peer} ÷ nginx in each round (nginx first in odd rounds, {peer} first in even ones):", "",
            f"| | {head} | paired median |", "|---|" + "---:|" * (width + 1)] + lines + [""]


def fanout_table(rows):
    by = group(rows, lambda r: (r["sockets"], r["label"]))
    if not by:
        return []
    out = ["## Fan-out and memory", "",
           "Delay = subscriber's arrival time − the upstream's answer time (same clock). "
           "\"last socket\" = per mutation, the delay to the last socket; median and worst over the mutations. "
           "\"load client\": the CPU the subscriber processes spent reading each delivery, on the same cores.", "",
           "| sockets | peer | delay p50 ms | p99 ms | max ms | last socket p50 ms | last socket max ms | lost | "
           "RSS at rest MiB | RSS per idle socket KiB | CPU µs per delivery | load client µs per delivery | rounds |",
           "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for (n, label), rs in sorted(by.items()):
        skipped = [r for r in rs if "skipped" in r]
        if skipped:
            out.append(f"| {n:,} | {label} | not run: {skipped[0]['skipped']} | | | | | | | | | | |")
            continue
        lost = sum(r["lost"] + r["failed"] * r["mutations"] for r in rs)
        out.append(
            f"| {n:,} | {label} | {fmt(med_of(rs, 'delay_ms', 'p50'))} | {fmt(med_of(rs, 'delay_ms', 'p99'))} | "
            f"{fmt(med_of(rs, 'delay_ms', 'max'))} | {fmt(med_of(rs, 'last_socket_ms', 'p50'))} | {fmt(med_of(rs, 'last_socket_ms', 'max'))} | "
            f"{lost} | {fmt(med(r['rss_rest_kib'] / 1024 for r in rs), 1)} | "
            f"{fmt(med(r['rss_per_socket_bytes'] / 1024 for r in rs), 1)} | "
            f"{fmt(med(r.get('cpu_us_per_delivery') for r in rs), 2)} | "
            f"{fmt(med(r.get('client_cpu_us_per_delivery') for r in rs), 2)} | {len(rs)} |")
    return out + [""]


def latency_table(rows):
    by = group(rows, lambda r: r["label"])
    if not by:
        return []
    out = ["## Mutation to event, one subscriber", "",
           "| path | mutation round trip p50 ms | p99 ms | upstream answer → event p50 ms | p99 ms | lost | rounds |",
           "|---|---:|---:|---:|---:|---:|---:|"]
    for label in ("direct", "syncgate", "nchan"):
        rs = by.get(label)
        if not rs:
            continue
        has_events = any(r["connected"] for r in rs)
        out.append(
            f"| {label} | {fmt(med_of(rs, 'mutation_round_trip_ms', 'p50'), 3)} | {fmt(med_of(rs, 'mutation_round_trip_ms', 'p99'), 3)} | "
            f"{fmt(med_of(rs, 'delay_ms', 'p50'), 3) if has_events else '—'} | {fmt(med_of(rs, 'delay_ms', 'p99'), 3) if has_events else '—'} | "
            f"{sum(r['lost'] for r in rs) if has_events else '—'} | {len(rs)} |")
    return out + [""]


def brief(r):
    return (f"{r['connected']}/{r['sockets']} sockets, delay p50 {fmt(r['delay_ms']['p50'])} ms, "
            f"p99 {fmt(r['delay_ms']['p99'])} ms, max {fmt(r['delay_ms']['max'])} ms, lost {r['lost']}, "
            f"RSS/socket {fmt(r['rss_per_socket_bytes'] / 1024, 1)} KiB, "
            f"CPU {fmt(r.get('cpu_us_per_delivery'), 2)} µs/delivery")


def check_smoke(rows):
    problems = []
    rest = [r for r in rows if r["scenario"] == "rest"]
    for peer in REST_PEERS:
        for method in ("GET", "POST", "GET-browser"):
            rs = [r for r in rest if r["peer"] == peer and r["method"] == method]
            if not rs or not rs[0]["rps"] or rs[0]["errors"]:
                problems.append(f"rest {peer} {method}: {rs}")
                continue
            # The histogram is whole: its own p99 is the one wrk printed (to wrk's rounding).
            own, printed = pooled(rs[:1]), rs[0]["p99_ms"]
            if own is None or printed is None or abs(own - printed) > max(0.01, 0.01 * printed):
                problems.append(f"rest {peer} {method}: the latency histogram's p99 ({own} ms) "
                                f"is not wrk's ({printed} ms)")
    for peer in ("syncgate", "nchan", "pushpin", "floor"):
        rs = [r for r in rows if r["scenario"] == "fanout" and r["peer"] == peer and "skipped" not in r]
        if not rs or any(r["connected"] != r["sockets"] or r["lost"] or not r["received"] for r in rs):
            problems.append(f"fanout {peer}: {[brief(r) for r in rs] if rs else 'no result'}")
    for label in ("syncgate", "nchan"):
        rs = [r for r in rows if r["scenario"] == "latency" and r["label"] == label]
        if not rs or any(r["lost"] or not r["received"] for r in rs):
            problems.append(f"latency {label}: no events or some lost")
    for p in problems:
        print("smoke: " + p, file=sys.stderr)
    return 1 if problems else 0


def main(argv):
    if argv[:1] == ["--brief"]:
        print(brief(json.loads(sys.stdin.read())))
        return 0
    if argv[:1] == ["--check-smoke"]:
        return check_smoke(load(argv[1]))
    rows = load(argv[0])
    lines = []
    lines += rest_table([r for r in rows if r["scenario"] == "rest"])
    lines += rounds_table([r for r in rows if r["scenario"] == "rest"])
    lines += fanout_table([r for r in rows if r["scenario"] == "fanout"])
    lines += latency_table([r for r in rows if r["scenario"] == "latency"])
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
