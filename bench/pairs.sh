#!/usr/bin/env bash
# Where syncgate's POST stands against nginx, and what its events cost: nginx and the sidecar in
# up to three configs, run back to back in each round (the order reversed every other round), so
# that one machine's drift falls on all of them alike.
#
#   bench/pairs.sh [--rounds 10] [--duration 8] [--modes nginx,sub,nosub,noevent]
#                  [--method POST|GET|GET-browser]
#
# Modes (the REST scenario's wrk -t1 -c32 --latency against the same upstream):
#   nginx    the reverse proxy of bench/run.sh
#   sub      syncgate as bench/run.sh runs it: its event rule on, one subscriber held open
#   nosub    the same events built, numbered and stored, but nobody subscribed
#   noevent  no event rule and the convention off: a plain proxy
# Prints each run (requests/s, p50 and p99 ms, CPU µs per request of the proxy's processes), then
# per mode the median over rounds of its ratio to nginx in the same round, with the range, and
# the p99 of all its rounds' requests together against nginx's (bench/report.py's `pooled`), and
# each mode's tail over all its requests (p90, p99.9, the share over 1 ms).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

ROUNDS=10
DURATION=8
MODES="nginx,sub,nosub,noevent"
METHOD=POST
while [[ $# -gt 0 ]]; do
  case "$1" in
    --rounds) ROUNDS="$2"; shift ;;
    --duration) DURATION="$2"; shift ;;
    --modes) MODES="$2"; shift ;;
    --method) METHOD="$2"; shift ;;
    *) echo "bench/pairs.sh: unknown option $1 (see the header of this file)" >&2; exit 2 ;;
  esac
  shift
done
[[ ",$MODES," == *,nginx,* ]] || { echo "bench/pairs.sh: --modes must include nginx (the ratios' base)" >&2; exit 2; }
for tool in wrk nginx; do
  command -v "$tool" >/dev/null || { echo "bench/pairs.sh: needs $tool (bench/run.sh installs it)" >&2; exit 2; }
done

SYNCGATE="${SYNCGATE:-$ROOT/target/release/syncgate}"
if [[ -z "${LOADGEN:-}" ]]; then
  LOADGEN="$ROOT/target/release/syncgate-loadgen"
  cargo build -q --release -p syncgate -p syncgate-loadgen
fi

WORK="$(mktemp -d)"
# PIDS, cleanup, stop, free_port, wait_http, start_upstream, start_sidecar, hold_subscriber,
# wrk_run, syncgate_yaml, start_nginx_proxy.
source "$ROOT/bench/lib.sh"

start_upstream

# The bench config with the mode's change: the subscriber's path moved away, or every event off.
sidecar_yaml() { # mode port admin
  syncgate_yaml "$2" "$3" "$UP" | python3 -c '
import re, sys
mode, text = sys.argv[1], sys.stdin.read()
if mode == "nosub":
    text = text.replace("websocket:\n", "websocket:\n  path: \"/elsewhere\"\n", 1)
elif mode == "noevent":
    text = re.sub(r"events:\n(?:  .*\n)*", "events:\n  auto:\n    enabled: false\n", text, count=1)
sys.stdout.write(text)
' "$1"
}

# One run: appends its JSON line (bench/wrk_json.py) to RESULTS.
run() { # mode
  local mode="$1" port admin sub=""
  if [[ "$mode" == nginx ]]; then
    start_nginx_proxy
    port="$PORT"
  else
    port="$(free_port)"
    admin="$(free_port)"
    sidecar_yaml "$mode" "$port" "$admin" >"$WORK/syncgate.yaml"
    start_sidecar "$SYNCGATE" "$WORK/syncgate.yaml" "$admin"
    if [[ "$mode" == sub ]]; then
      hold_subscriber "$port"
      sub="$SUB"
    fi
  fi
  # CPU of the proxy's process tree: nginx's master and workers, or the sidecar.
  wrk_run "$mode" "$METHOD" "http://127.0.0.1:$port/api/projects" "$PID"
  [[ -n "$sub" ]] && stop "$sub"
  stop "$PID"
}

CONNS=32
RESULTS="$WORK/results.jsonl"
echo "wrk -t1 -c$CONNS -d${DURATION}s --latency, $METHOD, $ROUNDS rounds, modes $MODES (order reversed every other round)"
order="${MODES//,/ }"
reverse="$(tr ' ' '\n' <<<"$order" | tac | tr '\n' ' ')"
for round in $(seq "$ROUNDS"); do
  modes="$order"
  (( round % 2 == 0 )) && modes="$reverse"
  for mode in $modes; do
    run "$mode"
    python3 -c '
import json, sys
r = json.loads(sys.argv[2])
print("round %2s %-8s %9.0f req/s  p50 %.3f  p99 %.3f ms  CPU %.2f µs" % (
    sys.argv[1], r["peer"], r["rps"] or 0, r["p50_ms"] or 0, r["p99_ms"] or 0, r.get("cpu_us_per_request") or 0))
' "$round" "$(tail -n 1 "$RESULTS")"
  done
done

python3 - "$RESULTS" "$MODES" "$ROOT/bench" <<'PY'
import json, statistics, sys
sys.path.insert(0, sys.argv[3])
from report import pooled, round_ratios, share_over
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
modes = sys.argv[2].split(",")
by_mode = {mode: [r for r in rows if r["peer"] == mode] for mode in modes}
base = by_mode["nginx"]
base_all = pooled(base)
for mode in modes:
    if mode == "nginx":
        continue
    mine = by_mode[mode]
    parts = []
    for label, field in (("req/s", "rps"), ("CPU per request", "cpu_us_per_request"), ("p99", "p99_ms")):
        ratios = [x for x in round_ratios(mine, base, field) if x is not None]
        if ratios:
            parts.append(f"{label} {statistics.median(ratios):.2f}× ({min(ratios):.2f}–{max(ratios):.2f})")
    mine_all = pooled(mine)
    if mine_all and base_all:
        parts.append(f"p99 of all rounds' requests {mine_all:.3f} ms against {base_all:.3f}: {mine_all / base_all:.2f}×")
    print(f"{mode} ÷ nginx, median of {len(mine)} rounds: " + "; ".join(parts))
tails = []
for mode, mine in by_mode.items():
    p90, p999, over1 = pooled(mine, 0.90), pooled(mine, 0.999), share_over(mine, 1)
    if p90 is not None and p999 is not None and over1 is not None:
        tails.append(f"{mode} p90 {p90:.3f}, p99.9 {p999:.3f} ms, {over1:.2f}% over 1 ms")
if tails:
    print("the tail, all rounds' requests: " + "; ".join(tails))
bad = [r for r in rows if r["errors"] or not r["rps"]]
for r in bad:
    print(f"bench/pairs.sh: {r['peer']} answered {r['errors']} requests with an error (or none at all)", file=sys.stderr)
sys.exit(1 if bad else 0)
PY
