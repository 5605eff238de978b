#!/usr/bin/env bash
# Runs the demo: the demo FastAPI app on 127.0.0.1:8000 and syncgate in front of it on :8080.
#
# Builds syncgate (release) and the demo page (npm ci + Vite build of demo/web), makes .venv with
# the demo's requirements when needed, starts both, waits until the API answers through the
# sidecar, and stops both on Ctrl-C or exit. Needs Rust (cargo) and Node 20.19+ with npm. python3 and its venv module are apt-get installed when missing and run as root.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

API_PORT=8000
PUBLIC_PORT=8080
READY_URL="http://127.0.0.1:${PUBLIC_PORT}/api/health"
LOG_DIR="$ROOT/target/demo"
API_PID=""
SIDECAR_PID=""

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
die() { printf 'demo.sh: %s\n' "$*" >&2; exit 1; }

port_in_use() {
  # bash's /dev/tcp: a successful connect means something already listens there.
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# shellcheck disable=SC2317  # called from the EXIT trap
stop_all() {
  local pid
  for pid in "$SIDECAR_PID" "$API_PID"; do
    if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
      kill "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
    fi
  done
}

command -v cargo >/dev/null || die "cargo is required: install Rust (https://rustup.rs)"
for port in "$API_PORT" "$PUBLIC_PORT"; do
  if port_in_use "$port"; then
    die "port $port is already in use on 127.0.0.1; stop whatever listens there (ss -ltnp 'sport = :$port') and retry"
  fi
done
if ! command -v python3 >/dev/null || ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
  if [[ "$(id -u)" != 0 ]] || ! command -v apt-get >/dev/null; then
    die "python3 with venv is required; on Debian: sudo apt-get install -y python3 python3-venv"
  fi
  say "Installing python3 and python3-venv"
  DEBIAN_FRONTEND=noninteractive apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3 python3-venv
fi

say "Building syncgate (cargo build --release)"
cargo build --release

mkdir -p "$LOG_DIR"

say "Preparing the Python environment (.venv)"
if [[ ! -x .venv/bin/python ]]; then
  python3 -m venv .venv || die "python3 -m venv failed; on Debian: apt-get install -y python3-venv"
fi
STAMP=".venv/.demo-requirements.sha256"
WANT="$(sha256sum demo/requirements.txt | cut -d' ' -f1)"
if [[ ! -f "$STAMP" || "$(cat "$STAMP")" != "$WANT" ]]; then
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r demo/requirements.txt
  printf '%s\n' "$WANT" >"$STAMP"
fi

say "Building the demo page (clients/js, then demo/web with Vite)"
command -v npm >/dev/null || die "npm is required (Node 20.19+); on Debian: sudo apt-get install -y nodejs npm"
for dir in clients/js demo/web; do
  stamp="$dir/node_modules/.demo-lock.sha256"
  want="$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)"
  if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
    printf '%s\n' "$want" >"$stamp"
  fi
done
(cd clients/js && npm run --silent build)
(cd demo/web && npm run --silent build >"$LOG_DIR/web-build.log" 2>&1) \
  || { tail -n 30 "$LOG_DIR/web-build.log" >&2; die "the demo page did not build"; }

trap stop_all EXIT
trap 'exit 130' INT TERM

say "Starting the demo API on 127.0.0.1:${API_PORT} (log: target/demo/api.log)"
.venv/bin/python -m uvicorn app:app --app-dir demo --host 127.0.0.1 --port "$API_PORT" \
  >"$LOG_DIR/api.log" 2>&1 &
API_PID=$!

say "Starting syncgate with demo/syncgate.yaml (log: target/demo/syncgate.log)"
# The defaults (listen 0.0.0.0:8080, admin 127.0.0.1:9901, upstream http://127.0.0.1:8000) plus
# auth.mode upstream, so the demo logins, notifications and rooms work.
env -u SYNCGATE_CONFIG target/release/syncgate --config demo/syncgate.yaml >"$LOG_DIR/syncgate.log" 2>&1 &
SIDECAR_PID=$!

deadline=$((SECONDS + 30))
answers() {
  .venv/bin/python -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=1)' "$1" 2>/dev/null
}
until answers "$READY_URL"; do
  kill -0 "$API_PID" 2>/dev/null || { tail -n 30 "$LOG_DIR/api.log" >&2; die "the demo API exited"; }
  kill -0 "$SIDECAR_PID" 2>/dev/null || { tail -n 30 "$LOG_DIR/syncgate.log" >&2; die "syncgate exited"; }
  ((SECONDS < deadline)) || die "nothing answered $READY_URL within 30s (logs in target/demo/)"
  sleep 0.2
done

cat <<EOF

  Open http://127.0.0.1:${PUBLIC_PORT}/ in two browser windows (sign in as Alice in one, Bob in the other)
  Watch the events: target/release/syncgate tail --url http://127.0.0.1:${PUBLIC_PORT} --token alice-token projects

  Ctrl-C stops both processes.
EOF

# Wait for Ctrl-C, or for either process to die; the EXIT trap then stops what still runs.
# A terminal's Ctrl-C also reaches uvicorn, which may exit before this shell runs its trap, so the
# trap only records the interruption and the check below tells the two endings apart.
interrupted=""
trap 'interrupted=1' INT TERM
set +e
wait -n "$API_PID" "$SIDECAR_PID"
status=$?
set -e
if [[ -n "$interrupted" ]]; then
  say "Stopping"
  exit 0
fi
die "a process stopped unexpectedly (exit $status); see target/demo/api.log and target/demo/syncgate.log"
