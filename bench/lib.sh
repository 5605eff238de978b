# What bench/run.sh, bench/ab.sh and bench/pairs.sh share: the processes they started (stopped by
# PID on exit), ports, readiness, the upstream, the sidecar, the held subscriber, CPU time, a wrk
# run, nginx, and the sidecar's benchmark config. Sourced after WORK is set.

PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Forget a stopped process so cleanup does not signal a reused PID.
stop() {
  local pid="$1" keep=() p
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  for p in "${PIDS[@]}"; do [[ "$p" == "$pid" ]] || keep+=("$p"); done
  PIDS=("${keep[@]}")
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_http() { # url [what]
  local i
  for i in $(seq 200); do
    curl -s -o /dev/null --max-time 1 "$1" && return 0
    sleep 0.05
  done
  echo "$(basename "$0"): ${2:-$1} did not come up; logs in $WORK" >&2
  exit 1
}

# The sidecar's config in every scenario: the POST rule whose event carries the upstream's `t`
# (the subscribers' clock reference), any origin, room for the largest fan-out.
syncgate_yaml() { # port admin-port upstream-host:port [extra yaml]
  cat <<YAML
listen: "127.0.0.1:$1"
admin_listen: "127.0.0.1:$2"
upstream:
  url: "http://$3"
events:
  rules:
    - methods: [POST]
      path: "^/api/projects/?\$"
      type: project_created
      channels: ["projects"]
      invalidate: [["projects"]]
      id: "/id"
      data: ["id", "t"]
websocket:
  allowed_origins: ["*"]
limits:
  max_connections: 100000
  send_queue: 4096
${4:-}
YAML
}

# The fast upstream every scenario proxies to (LOADGEN's `upstream`, one thread): sets UP_PORT and
# UP (host:port).
start_upstream() {
  UP_PORT="$(free_port)"
  UP="127.0.0.1:$UP_PORT"
  "$LOADGEN" upstream --listen "$UP" --threads 1 >"$WORK/upstream.log" 2>&1 &
  PIDS+=($!)
  wait_http "http://$UP/api/projects" upstream
}

# A sidecar from BINARY with the config file CONFIG (its admin port ADMIN), once it is ready (PID).
start_sidecar() { # binary config admin
  RUST_LOG=warn "$1" --config "$2" >>"$WORK/syncgate.log" 2>&1 &
  PID=$!
  PIDS+=("$PID")
  wait_http "http://127.0.0.1:$3/readyz" syncgate
}

# The REST scenario's one subscriber on syncgate's socket at 127.0.0.1:PORT, held open (SUB),
# given a moment to subscribe before the load starts.
hold_subscriber() { # port
  "$LOADGEN" subscribe --peer syncgate --urls "ws://127.0.0.1:$1/api/ws" --sockets 1 --hold >/dev/null 2>&1 &
  SUB=$!
  PIDS+=("$SUB")
  sleep 0.3
}

# CPU time (user + system, clock ticks) of a process and all its descendants, from /proc alone
# (one pass over every process's stat line: pid, (command), state, parent, ..., utime, stime).
# A process that exits between the glob and the read makes `cat` fail; under pipefail that
# failure would end the whole run, so it is ignored (that process is not ours to count).
tree_ticks() { # pid
  { cat /proc/[0-9]*/stat 2>/dev/null || true; } | awk -v root="$1" '
    { pid = $1; sub(/^.*\) /, ""); parent[pid] = $2; ticks[pid] = $12 + $13 }
    END {
      n = 0
      for (p in parent) {
        q = p
        while (q != root && (q in parent) && q + 0 > 1) q = parent[q]
        if (q == root) n += ticks[p]
      }
      print n
    }'
}

# One REST run (wrk -t1 -cCONNS -dDURATION --latency; POST and GET-browser with their scripts,
# every method with bench/latency.lua's histogram), appended to RESULTS as bench/wrk_json.py's
# line, with the peer's CPU when its PID is given.
wrk_run() { # label method url [pid of the peer, for its CPU time]
  local label="$1" method="$2" url="$3" pid="${4:-}" script="$WORK/wrk-$2.lua" base=() text before=0 after=0
  if [[ ! -f "$script" ]]; then # made once per method and run of the suite
    [[ "$method" == POST ]] && base=("$ROOT/bench/post.lua")
    [[ "$method" == GET-browser ]] && base=("$ROOT/bench/browser.lua")
    cat "${base[@]}" "$ROOT/bench/latency.lua" >"$script"
  fi
  [[ -n "$pid" ]] && before="$(tree_ticks "$pid")"
  text="$(wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency -s "$script" "$url")"
  [[ -n "$pid" ]] && after="$(tree_ticks "$pid")"
  python3 "$ROOT/bench/wrk_json.py" "$label" "$method" "$(( after - before ))" "$(getconf CLK_TCK)" \
    <<<"$text" >>"$RESULTS"
}

# nginx with the given server block body, on a fresh port (PORT, PID); UP is the upstream.
start_nginx() { # conf-body workers
  PORT="$(free_port)"
  local dir="$WORK/nginx-$PORT"
  mkdir -p "$dir/logs"
  cat >"$dir/nginx.conf" <<EOF
load_module /usr/lib/nginx/modules/ngx_nchan_module.so;
daemon off;
worker_processes ${2:-2};
worker_rlimit_nofile 19900;
pid $dir/nginx.pid;
error_log $dir/logs/error.log warn;
events { worker_connections 19000; multi_accept on; }
http {
  access_log off;
  client_body_temp_path $dir/body;
  proxy_temp_path $dir/proxy;
  fastcgi_temp_path $dir/fastcgi;
  uwsgi_temp_path $dir/uwsgi;
  scgi_temp_path $dir/scgi;
  upstream api { server $UP; keepalive 64; }
  server {
    listen 127.0.0.1:$PORT ${3:-};
$1
  }
}
EOF
  nginx -p "$dir" -c "$dir/nginx.conf" &
  PID=$!
  PIDS+=("$PID")
}

start_nginx_proxy() {
  start_nginx '    location / { proxy_pass http://api; proxy_http_version 1.1; proxy_set_header Connection ""; }'
  wait_http "http://127.0.0.1:$PORT/api/projects" nginx
}
