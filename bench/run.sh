#!/usr/bin/env bash
# syncgate's benchmark suite: syncgate against its peers, same machine, same run, same upstream.
#
#   bench/run.sh                 # every scenario, 3 rounds, writes bench/results/<time>/report.md
#   bench/run.sh --smoke         # tiny sizes on the debug build, a few seconds: checks the suite works
#   bench/run.sh --only rest     # one scenario: rest | fanout | latency (comma-separated)
#   bench/run.sh --sizes 1000,10000 --rounds 5
#
# Installs its peers from Debian's packages when missing (nginx, libnginx-mod-nchan, haproxy,
# pushpin, wrk), configures each on 127.0.0.1 ephemeral ports in a temporary directory, stops
# every process it started (by PID) on exit, and writes raw results (results.jsonl) plus the
# tables (report.md). See BENCHMARKS.md for what each scenario measures.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

SMOKE=0
ROUNDS=3
SIZES="1000,10000,50000"
ONLY="rest,fanout,latency"
DURATION=8
CONNS=32
LATENCY_MUTATIONS=1000
FANOUT_MUTATIONS=20
while [[ $# -gt 0 ]]; do
  case "$1" in
    --smoke) SMOKE=1 ;;
    --rounds) ROUNDS="$2"; shift ;;
    --sizes) SIZES="$2"; shift ;;
    --only) ONLY="$2"; shift ;;
    --duration) DURATION="$2"; shift ;;
    *) echo "bench/run.sh: unknown option $1 (see the header of this file)" >&2; exit 2 ;;
  esac
  shift
done
if [[ "$SMOKE" == 1 ]]; then
  ROUNDS=1; SIZES="20"; DURATION=1; LATENCY_MUTATIONS=20; FANOUT_MUTATIONS=3; CONNS=4
fi

# --- peers and build ------------------------------------------------------------------------------

need=()
command -v nginx >/dev/null || need+=(nginx)
[[ -e /usr/lib/nginx/modules/ngx_nchan_module.so ]] || need+=(libnginx-mod-nchan)
command -v haproxy >/dev/null || need+=(haproxy)
command -v pushpin >/dev/null || need+=(pushpin)
command -v wrk >/dev/null || need+=(wrk)
if [[ ${#need[@]} -gt 0 ]]; then
  echo "installing peers: ${need[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}"
  # Debian starts the packaged services; the bench runs its own copies on ephemeral ports.
  for svc in nginx haproxy pushpin; do
    command -v systemctl >/dev/null && systemctl stop "$svc" 2>/dev/null || true
  done
fi

if [[ "$SMOKE" == 1 ]]; then
  cargo build -q -p syncgate -p syncgate-loadgen
  BIN="$ROOT/target/debug"
else
  cargo build -q --release -p syncgate -p syncgate-loadgen
  BIN="$ROOT/target/release"
fi
SYNCGATE="$BIN/syncgate"
LOADGEN="$BIN/syncgate-loadgen"

STAMP="$(date -u +%Y%m%d-%H%M%S)"
OUT="${BENCH_OUT:-$ROOT/bench/results/$STAMP}"
mkdir -p "$OUT"
RESULTS="$OUT/results.jsonl"
: >"$RESULTS"
WORK="$(mktemp -d /tmp/syncgate-bench.XXXXXX)"

# PIDS, cleanup, stop, free_port, wait_http, start_upstream, start_sidecar, hold_subscriber,
# tree_ticks, wrk_run, syncgate_yaml, start_nginx.
source "$ROOT/bench/lib.sh"

start_upstream

# Each start_* sets PID (the process tree to measure and stop) and PORT.

start_syncgate() { # [extra yaml]
  PORT="$(free_port)"
  local admin; admin="$(free_port)"
  syncgate_yaml "$PORT" "$admin" "$UP" "${1:-}" >"$WORK/syncgate-$PORT.yaml"
  ADMIN="$admin"
  SYNCGATE_WORKERS="${SG_WORKERS:-$(nproc)}" start_sidecar "$SYNCGATE" "$WORK/syncgate-$PORT.yaml" "$admin"
}

start_nchan() { # workers [extra ports, each listened on with reuseport]
  local extra="" p
  NCHAN_PORTS=()
  for _ in $(seq "${2:-0}"); do
    p="$(free_port)"
    NCHAN_PORTS+=("$p")
    extra+="
    listen 127.0.0.1:$p reuseport;"
  done
  start_nginx "$extra
    location = /sub/bench { nchan_subscriber websocket; nchan_channel_id bench; }
    location = /pub/bench { nchan_publisher; nchan_channel_id bench; nchan_message_buffer_length 1000; }" "${1:-1}" "${2:+reuseport}"
  wait_http "http://127.0.0.1:$PORT/pub/bench" nchan
}

start_haproxy() {
  PORT="$(free_port)"
  cat >"$WORK/haproxy-$PORT.cfg" <<EOF
global
  nbthread 2
  maxconn 9000
defaults
  mode http
  timeout connect 2s
  timeout client 60s
  timeout server 60s
  option http-keep-alive
  http-reuse always
frontend fe
  bind 127.0.0.1:$PORT
  default_backend api
backend api
  server s1 $UP
EOF
  haproxy -db -f "$WORK/haproxy-$PORT.cfg" >"$WORK/haproxy-$PORT.log" 2>&1 &
  PID=$!
  PIDS+=("$PID")
  wait_http "http://127.0.0.1:$PORT/api/projects" haproxy
}

start_pushpin() {
  PORT="$(free_port)"
  PUSH_PORT="$(free_port)"
  local dir="$WORK/pushpin-$PORT" in_port sub_port cmd_port
  in_port="$(free_port)"; sub_port="$(free_port)"; cmd_port="$(free_port)"
  mkdir -p "$dir/run" "$dir/log"
  echo "* $UP,over_http" >"$dir/routes"
  # The packaged config with our ports and directories, zurl (its HTTP client to the upstream)
  # started and reached in our run directory; message_rate and message_hwm raised from
  # 2500/25000 so Pushpin's own rate limit does not decide the fan-out figures.
  sed -e "s#^rundir=.*#rundir=$dir/run#" \
      -e "s#^logdir=.*#logdir=$dir/log#" \
      -e "s#^http_port=.*#http_port=127.0.0.1:$PORT#" \
      -e "s#^routesfile=.*#routesfile=$dir/routes\nzurl_out_specs=ipc://{rundir}/{ipc_prefix}zurl-in\nzurl_out_stream_specs=ipc://{rundir}/{ipc_prefix}zurl-in-stream\nzurl_in_specs=ipc://{rundir}/{ipc_prefix}zurl-out#" \
      -e "s#^push_in_spec=.*#push_in_spec=tcp://127.0.0.1:$in_port#" \
      -e "s#^push_in_sub_specs=.*#push_in_sub_specs=tcp://127.0.0.1:$sub_port#" \
      -e "s#^command_spec=tcp.*#command_spec=tcp://127.0.0.1:$cmd_port#" \
      -e "s#^push_in_http_port=.*#push_in_http_port=$PUSH_PORT#" \
      -e "s#^services=.*#services=condure,zurl,pushpin-proxy,pushpin-handler#" \
      -e "s#^client_maxconn=.*#client_maxconn=19000#" \
      -e "s#^message_rate=.*#message_rate=1000000#" \
      -e "s#^message_hwm=.*#message_hwm=1000000#" \
      -e "s#^ipc_prefix=.*#ipc_prefix=bench-$PORT-#" \
      /etc/pushpin/pushpin.conf >"$dir/pushpin.conf"
  pushpin --config "$dir/pushpin.conf" >"$dir/log/runner.log" 2>&1 &
  PID=$!
  PIDS+=("$PID")
  wait_http "http://127.0.0.1:$PORT/api/projects" pushpin
}

# The fan-out floor (bench/loadgen/src/floor.rs): one thread writing one frame to every socket.
start_floor() {
  PORT="$(free_port)"
  "$LOADGEN" floor --listen "127.0.0.1:$PORT" >"$WORK/floor-$PORT.log" 2>&1 &
  PID=$!
  PIDS+=("$PID")
  local i
  for i in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "bench/run.sh: the floor server did not come up; logs in $WORK" >&2
  exit 1
}

record() { # json line
  printf '%s\n' "$1" >>"$RESULTS"
}

record_as() { # scenario loadgen-json-line
  record "$(python3 -c 'import json,sys; d=json.loads(sys.argv[2]); d["scenario"]=sys.argv[1]; print(json.dumps(d))' "$1" "$2")"
}

# --- REST proxying --------------------------------------------------------------------------------

scenario_rest() {
  echo "== REST proxying: wrk -t1 -c$CONNS -d${DURATION}s, $ROUNDS rounds, interleaved"
  local round peer
  for round in $(seq "$ROUNDS"); do
    # nginx and syncgate back to back, in turn first, so drift between rounds cancels in the
    # paired ratios (see bench/report.py).
    local order="direct nginx syncgate haproxy pushpin"
    (( round % 2 == 0 )) && order="direct syncgate nginx haproxy pushpin"
    for peer in $order; do
      local sub=""
      case "$peer" in
        direct) PORT="$UP_PORT"; PID="" ;;
        nginx) start_nginx_proxy ;;
        haproxy) start_haproxy ;;
        pushpin) start_pushpin ;;
        syncgate)
          start_syncgate
          # With its event rules on and a subscriber connected, as in production.
          hold_subscriber "$PORT"
          sub="$SUB"
          ;;
      esac
      for method in GET POST GET-browser; do
        wrk_run "$peer" "$method" "http://127.0.0.1:$PORT/api/projects" "$PID"
      done
      echo "   round $round: $peer done"
      [[ -n "$sub" ]] && stop "$sub"
      [[ -n "$PID" ]] && stop "$PID"
    done
  done
}

# --- fan-out and memory ---------------------------------------------------------------------------

fanout() { # peer label sockets urls trigger publish pids [procs]
  local procs=()
  [[ -n "${8:-}" ]] && procs=(--procs "$8")
  local publish=()
  [[ -n "$6" ]] && publish=(--publish "$6")
  local line
  # Mutations far enough apart that each one's fan-out is measured alone (50 ms per 1,000 sockets).
  local interval=$(( $3 / 20 > 200 ? $3 / 20 : 200 ))
  if ! line="$("$LOADGEN" fanout --peer "$1" --label "$2" --sockets "$3" --urls "$4" --trigger "$5" \
      "${publish[@]}" --rss-pids "$7" --mutations "$FANOUT_MUTATIONS" --interval-ms "$interval" "${procs[@]}")"; then
    echo "   $1 at $3 sockets failed" >&2
    return 1
  fi
  record_as fanout "$line"
  echo "   $2: $(python3 "$ROOT/bench/report.py" --brief <<<"$line")"
}

scenario_fanout() {
  echo "== fan-out: $FANOUT_MUTATIONS mutations to N subscribed sockets, sizes $SIZES, $ROUNDS rounds"
  local round n
  for round in $(seq "$ROUNDS"); do
    for n in ${SIZES//,/ }; do
      if (( n <= 18000 )); then
        start_syncgate
        fanout syncgate "syncgate" "$n" "ws://127.0.0.1:$PORT/api/ws" \
          "http://127.0.0.1:$PORT/api/projects" "" "$PID" || true
        stop "$PID"
        start_nchan 1
        fanout nchan "nchan" "$n" "ws://127.0.0.1:$PORT/sub/bench" \
          "http://$UP/api/projects" "http://127.0.0.1:$PORT/pub/bench" "$PID" || true
        stop "$PID"
        start_pushpin
        fanout pushpin "pushpin" "$n" "ws://127.0.0.1:$PORT/grip/ws" \
          "http://$UP/api/projects" "http://127.0.0.1:$PUSH_PORT/publish/" "$PID" || true
        stop "$PID"
        start_floor
        fanout floor "floor (one thread, one send per socket)" "$n" "ws://127.0.0.1:$PORT/sub" \
          "http://$UP/api/projects" "http://127.0.0.1:$PORT/pub" "$PID" || true
        stop "$PID"
      else
        # Past one process's open-file cap (20,000 here): several sidecars sharing Redis, and
        # nginx with several workers; Pushpin holds every client socket in one process (condure).
        local shards=$(( (n + 16999) / 17000 )) urls="" pids="" i trigger=""
        local prefix="syncgate-bench-$$-$round-$n:"
        # One event loop per sidecar, as nginx runs one worker per port here: three sidecars with
        # a loop per core each would be six busy threads on two cores.
        for i in $(seq "$shards"); do
          SG_WORKERS=1 start_syncgate "broker:
  kind: redis
  redis: { url: \"redis://127.0.0.1:6379\", key_prefix: \"$prefix\" }"
          urls+="${urls:+,}ws://127.0.0.1:$PORT/api/ws"
          pids+="${pids:+,}$PID"
          [[ -z "$trigger" ]] && trigger="http://127.0.0.1:$PORT/api/projects"
        done
        fanout syncgate "syncgate ($shards sidecars, redis)" "$n" "$urls" "$trigger" "" "$pids" "$shards" || true
        for i in ${pids//,/ }; do stop "$i"; done
        redis-cli --scan --pattern "${prefix}*" | xargs -r redis-cli del >/dev/null || true
        # One listening port per worker: one destination port has only ~28,000 ephemeral
        # source ports on loopback.
        start_nchan "$shards" "$shards"
        local nport="$PORT" npid="$PID"
        urls=""
        for i in "${NCHAN_PORTS[@]}"; do urls+="${urls:+,}ws://127.0.0.1:$i/sub/bench"; done
        fanout nchan "nchan ($shards workers)" "$n" "$urls" "http://$UP/api/projects" \
          "http://127.0.0.1:$nport/pub/bench" "$npid" "$shards" || true
        stop "$npid"
        urls="" pids="" trigger=""
        for i in $(seq "$shards"); do
          start_floor
          urls+="${urls:+,}ws://127.0.0.1:$PORT/sub"
          trigger+="${trigger:+,}http://127.0.0.1:$PORT/pub"
          pids+="${pids:+,}$PID"
        done
        fanout floor "floor ($shards processes, one send per socket)" "$n" "$urls" "http://$UP/api/projects" \
          "$trigger" "$pids" "$shards" || true
        for i in ${pids//,/ }; do stop "$i"; done
        record "{\"scenario\":\"fanout\",\"peer\":\"pushpin\",\"label\":\"pushpin\",\"sockets\":$n,\"skipped\":\"one process (condure) holds every client socket; the open-file cap is 20,000 per process\"}"
      fi
    done
  done
}

# --- mutation-to-event latency --------------------------------------------------------------------

scenario_latency() {
  echo "== mutation to event: one subscriber, $LATENCY_MUTATIONS mutations, $ROUNDS rounds"
  local round line
  for round in $(seq "$ROUNDS"); do
    start_syncgate
    line="$("$LOADGEN" fanout --peer syncgate --label syncgate --sockets 1 --urls "ws://127.0.0.1:$PORT/api/ws" \
      --trigger "http://127.0.0.1:$PORT/api/projects" --rss-pids "$PID" \
      --mutations "$LATENCY_MUTATIONS" --interval-ms 2 --settle-ms 200 --grace-ms 1000)"
    record_as latency "$line"
    stop "$PID"
    # The upstream's own time for the same POST, straight (what syncgate adds on top).
    line="$("$LOADGEN" fanout --peer nchan --label direct --sockets 0 --urls "ws://127.0.0.1:1/unused" \
      --trigger "http://$UP/api/projects" --mutations "$LATENCY_MUTATIONS" --interval-ms 2 \
      --settle-ms 0 --grace-ms 0)"
    record_as latency "$line"
    start_nchan 1
    line="$("$LOADGEN" fanout --peer nchan --label nchan --sockets 1 --urls "ws://127.0.0.1:$PORT/sub/bench" \
      --trigger "http://$UP/api/projects" --publish "http://127.0.0.1:$PORT/pub/bench" --rss-pids "$PID" \
      --mutations "$LATENCY_MUTATIONS" --interval-ms 2 --settle-ms 200 --grace-ms 1000)"
    record_as latency "$line"
    stop "$PID"
    echo "   round $round done"
  done
}

# CPU time since boot from /proc/stat's first line, in ticks: the steal (time the host gave to
# other tenants of a shared VM) and the total. A run with much steal has noisy absolute figures.
cpu_ticks() { awk '/^cpu /{print $9, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat; }
read -r STEAL_START TICKS_START < <(cpu_ticks)
echo "bench: results in $OUT (machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg))"
[[ ",$ONLY," == *",rest,"* ]] && scenario_rest
[[ ",$ONLY," == *",fanout,"* ]] && scenario_fanout
[[ ",$ONLY," == *",latency,"* ]] && scenario_latency
read -r STEAL_END TICKS_END < <(cpu_ticks)
python3 "$ROOT/bench/report.py" "$RESULTS" | tee "$OUT/report.md"
awk -v s=$((STEAL_END - STEAL_START)) -v t=$((TICKS_END - TICKS_START)) \
  'BEGIN { printf "Machine: steal time %.1f%% of the CPU time during the run.\n", (t > 0 ? 100 * s / t : 0) }' |
  tee -a "$OUT/report.md"
if [[ "$SMOKE" == 1 ]]; then
  python3 "$ROOT/bench/report.py" --check-smoke "$RESULTS"
fi
