#!/usr/bin/env bash
# Fan-out through Redis across two replicas vs the memory broker, in one run.
#
#   bench/redis-fanout.sh [--subscribers 100] [--events 2000] [--publishers 4] [--redis URL]
#
# Builds the release binary and the bench client, starts a Redis on 127.0.0.1:6379 if none answers,
# and prints a Markdown table (BENCHMARKS.md, section "Redis broker"). SMOKE=1 runs a tiny load
# with the debug build (a quick check that the bench still works).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"

if ! redis-cli -p 6379 ping >/dev/null 2>&1; then
  echo "starting redis-server on 127.0.0.1:6379" >&2
  redis-server --port 6379 --bind 127.0.0.1 --save "" --appendonly no --daemonize yes >/dev/null
fi

if [[ "${SMOKE:-0}" == 1 ]]; then
  cargo build -q --bin syncgate --example redis_fanout
  exec "$TARGET/debug/examples/redis_fanout" --bin "$TARGET/debug/syncgate" \
    --subscribers 4 --events 50 --publishers 2 "$@"
fi
cargo build -q --release --bin syncgate --example redis_fanout
echo "machine: $(nproc) cores, $(redis-server --version | cut -d' ' -f3), $(date -u +%Y-%m-%d)" >&2
exec "$TARGET/release/examples/redis_fanout" --bin "$TARGET/release/syncgate" "$@"
