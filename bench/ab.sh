#!/usr/bin/env bash
# Two syncgate builds against each other, alternated, on one machine: the REST scenario's
# requests (wrk -t1 -c32, the bench's event rule on, one subscriber held open) through BEFORE,
# then AFTER, then AFTER, then BEFORE, ... so that the machine's drift (a shared VM's steal time
# moves a run's figures by far more than one change does) falls on both alike.
#
#   bench/ab.sh BEFORE_BINARY AFTER_BINARY [--pairs 6] [--methods GET,POST] [--duration 5]
#
# Prints, per method, each pair's requests/s and CPU per request (user + system of the sidecar's
# process, from /proc) as AFTER ÷ BEFORE, and their medians. Build the older commit in a worktree
# with its own target directory, for instance:
#
#   git worktree add /tmp/before <commit> && (cd /tmp/before && cargo build --release -p syncgate)
#   bench/ab.sh /tmp/before/target/release/syncgate target/release/syncgate
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

if [[ $# -lt 2 ]]; then
  echo "usage: bench/ab.sh BEFORE_BINARY AFTER_BINARY [--pairs N] [--methods GET,POST] [--duration S]" >&2
  exit 2
fi
BEFORE="$1"
AFTER="$2"
shift 2
PAIRS=6
METHODS="GET,POST"
DURATION=5
while [[ $# -gt 0 ]]; do
  case "$1" in
    --pairs) PAIRS="$2"; shift ;;
    --methods) METHODS="$2"; shift ;;
    --duration) DURATION="$2"; shift ;;
    *) echo "bench/ab.sh: unknown option $1 (see the header of this file)" >&2; exit 2 ;;
  esac
  shift
done
for bin in "$BEFORE" "$AFTER"; do
  [[ -x "$bin" ]] || { echo "bench/ab.sh: $bin is not an executable" >&2; exit 2; }
done
command -v wrk >/dev/null || { echo "bench/ab.sh: needs wrk (apt-get install wrk, or run bench/run.sh once)" >&2; exit 2; }

# The load generator is the release build unless LOADGEN names another (the test script's smoke
# run uses the debug one it already has).
if [[ -z "${LOADGEN:-}" ]]; then
  LOADGEN="$ROOT/target/release/syncgate-loadgen"
  cargo build -q --release -p syncgate-loadgen
fi

WORK="$(mktemp -d)"
# PIDS, cleanup, stop, free_port, wait_http, start_upstream, start_sidecar, hold_subscriber,
# tree_ticks, syncgate_yaml.
source "$ROOT/bench/lib.sh"

start_upstream

# One run: writes "requests/s cpu-µs-per-request" to $WORK/last.
run() { # binary method
  local port admin sg sub ticks0 ticks1 text script=()
  port="$(free_port)"
  admin="$(free_port)"
  syncgate_yaml "$port" "$admin" "$UP" >"$WORK/syncgate.yaml"
  start_sidecar "$1" "$WORK/syncgate.yaml" "$admin"
  sg="$PID"
  hold_subscriber "$port"
  sub="$SUB"
  [[ "$2" == POST ]] && script=(-s "$ROOT/bench/post.lua")
  ticks0="$(tree_ticks "$sg")"
  text="$(wrk -t1 -c32 -d"${DURATION}s" "${script[@]}" "http://127.0.0.1:$port/api/projects")"
  ticks1="$(tree_ticks "$sg")"
  stop "$sub"
  stop "$sg"
  python3 -c '
import re, sys
text = sys.stdin.read()
t0, t1, hz = (float(x) for x in sys.argv[1:4])
requests = int(re.search(r"(\d+) requests in", text).group(1))
rps = float(re.search(r"Requests/sec:\s*([\d.]+)", text).group(1))
print(f"{rps:.0f} {(t1 - t0) / hz * 1e6 / max(requests, 1):.2f}")
' "$ticks0" "$ticks1" "$(getconf CLK_TCK)" <<<"$text" >"$WORK/last"
}

echo "before: $BEFORE"
echo "after:  $AFTER"
echo "wrk -t1 -c32 -d${DURATION}s per run, $PAIRS pairs per method, order alternating"
for method in ${METHODS//,/ }; do
  ratios=()
  for pair in $(seq "$PAIRS"); do
    if (( pair % 2 == 1 )); then
      run "$BEFORE" "$method"; read -r b_rps b_cpu <"$WORK/last"
      run "$AFTER" "$method"; read -r a_rps a_cpu <"$WORK/last"
    else
      run "$AFTER" "$method"; read -r a_rps a_cpu <"$WORK/last"
      run "$BEFORE" "$method"; read -r b_rps b_cpu <"$WORK/last"
    fi
    echo "$method pair $pair: before $b_rps req/s ${b_cpu} µs, after $a_rps req/s ${a_cpu} µs"
    ratios+=("$b_rps $b_cpu $a_rps $a_cpu")
  done
  printf '%s\n' "${ratios[@]}" | python3 -c '
import statistics, sys
rows = [[float(x) for x in line.split()] for line in sys.stdin if line.strip()]
rps = [a / b for b, _, a, _ in rows]
cpu = [a / b for _, b, _, a in rows]
fmt = lambda xs: ", ".join(f"{x:.2f}" for x in xs)
print(f"'"$method"' after/before: req/s {fmt(rps)} (median {statistics.median(rps):.2f}); "
      f"CPU per request {fmt(cpu)} (median {statistics.median(cpu):.2f})")
'
done
