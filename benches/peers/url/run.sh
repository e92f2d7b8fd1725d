#!/usr/bin/env bash
# Dragnet's HTTP proxy beside squid, on the data and load of ../shared/peers/url/run_anchors.sh:
# the same generator (gen_blocklist.py: N dstdomain entries, fixed seed, 4096 blocked and 4096
# allowed host names, an /etc/hosts file mapping the allowed ones to 127.0.0.1), the same nginx
# origin, the same wrk runs with proxy_req.lua (absolute-form GETs rotating over the host lists),
# the same correctness check (check_proxy.py). Squid's figures come from running that script
# (SQUID=1 here runs it first). Reported: list compile and load time, RSS, requests per
# proxy-CPU-second (allowed over 4096 hosts, allowed to one host, blocked), wrk p99, and a reload
# under load (SIGHUP with a recompiled list while wrk runs: refused connections and errors).
#
#   N=1000000 DUR=10s CONNS=32 PROXY_CORE=0 LOAD_CORE=1 SQUID=0 benches/peers/url/run.sh
# Everything on 127.0.0.1; needs nginx (nginx-light), wrk, python3, and for SQUID=1 squid.
# Processes started here are stopped by PID.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd); ROOT=$(cd "$HERE/../../.." && pwd)
PEERS=${PEERS:-$ROOT/../shared/peers}
N=${N:-1000000}; DUR=${DUR:-10s}; CONNS=${CONNS:-32}; SEED=${SEED:-20240611}
PROXY_PORT=${PROXY_PORT:-3129}; ORIGIN_PORT=${ORIGIN_PORT:-18080}
PROXY_CORE=${PROXY_CORE:-0}; LOAD_CORE=${LOAD_CORE:-1}
OUTDIR=${OUTDIR:-${TMPDIR:-/tmp}/dragnet-peers/url}
W=$OUTDIR/work_${N}_403; D=$OUTDIR/dragnet_${N}; mkdir -p "$W" "$D"
RES=$OUTDIR/dragnet_results_${N}.txt
exec > >(tee "$RES") 2>&1
log() { echo "[$(date +%T)] $*"; }
for t in nginx wrk python3; do command -v $t >/dev/null || { echo "$t missing (apt-get install nginx-light wrk python3)"; exit 2; }; done

if [ "${SQUID:-0}" = 1 ]; then
  log "squid anchor first (shared script)"
  SKIP_INSTALL=1 bash "$PEERS/url/run_anchors.sh" "$N" "$DUR" "$CONNS" | grep '^\[' || true
fi

log "building dragnet (release)"
( cd "$ROOT" && cargo build --release --locked -q )
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/dragnet
[ -s "$W/blocklist.txt" ] || python3 "$PEERS/url/gen_blocklist.py" "$N" "$W" "$SEED"

# squid dstdomain semantics: "name" is that host only, ".name" the name and every name below it.
{ echo "# dragnet: kind=exact action=block category=scam"; cat "$W/blocklist.txt"; } > "$D/list.domains"
t0=$(date +%s.%N)
/usr/bin/time -f "%e s wall, %U s user, %M KiB max RSS" -o "$D/compile.time" \
  "$BIN" rules compile "domains:$D/list.domains" -o "$D/active.snap" --ruleset-version 1 > "$D/compile.log" 2>&1
log "compiled $N entries: $(cat "$D/compile.time")"

{ cat <<TOML
[rules]
snapshot = "$D/active.snap"
[admin]
listen = "127.0.0.1:0"
[log]
level = "warn"
[sip]
enabled = false
[dns]
enabled = false
[web.http]
enabled = true
listen = ["127.0.0.1:$PROXY_PORT"]
mode = "forward"
[web.http.hosts]
TOML
  awk '$1 ~ /^[0-9]/ { for (i = 2; i <= NF; i++) printf "\"%s\" = \"%s\"\n", $i, $1 }' "$W/hosts"
} > "$D/dragnet.toml"

cat > "$D/nginx.conf" <<EOF
worker_processes 1;
pid $D/nginx.pid;
error_log $D/nginx_error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$ORIGIN_PORT default_server;
    location / { default_type text/plain; return 200 "ok\n"; }
  }
}
EOF

NG_PID=""; DP=""; WRK_PID=""
cleanup() {
  [ -n "$WRK_PID" ] && kill "$WRK_PID" 2>/dev/null || true
  [ -n "$DP" ] && kill "$DP" 2>/dev/null && wait "$DP" 2>/dev/null || true
  [ -n "$NG_PID" ] && kill "$NG_PID" 2>/dev/null && wait "$NG_PID" 2>/dev/null || true
}
trap cleanup EXIT
port_open() { (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null; }
cpu_ticks() { awk '{print $14+$15}' /proc/"$1"/stat; }
rss_kb() { awk '/VmRSS/{print $2}' /proc/"$1"/status; }
if port_open $ORIGIN_PORT || port_open $PROXY_PORT; then log "port $ORIGIN_PORT or $PROXY_PORT in use"; exit 1; fi

taskset -c "$LOAD_CORE" nginx -c "$D/nginx.conf" -g 'daemon off;' & NG_PID=$!
for _ in $(seq 1 100); do port_open $ORIGIN_PORT && break; sleep 0.05; done

t0=$(date +%s.%N)
taskset -c "$PROXY_CORE" "$BIN" run --config "$D/dragnet.toml" > "$D/dragnet.out" 2> "$D/dragnet.err" & DP=$!
for _ in $(seq 1 400); do grep -q '^ready' "$D/dragnet.out" 2>/dev/null && break; sleep 0.025; done
grep -q '^ready' "$D/dragnet.out" || { log "dragnet did not start"; cat "$D/dragnet.err"; exit 1; }
log "dragnet PID $DP ready after $(echo "$(date +%s.%N) - $t0" | bc) s wall, $(echo "scale=2; $(cpu_ticks $DP)/$(getconf CLK_TCK)" | bc) s CPU; RSS $(rss_kb $DP) kB; loadavg $(cut -d' ' -f1-3 /proc/loadavg)"

python3 "$PEERS/url/check_proxy.py" $PROXY_PORT $ORIGIN_PORT "$W/blocked_hosts.txt" "$W/allowed_hosts.txt" 403

run_wrk() { # name hosts-file
  local name=$1 hosts=$2 c0 c1 reqs cpu
  c0=$(cpu_ticks $DP)
  log "wrk [$name] -t1 -c$CONNS -d$DUR (loadavg before: $(cut -d' ' -f1-3 /proc/loadavg))"
  taskset -c "$LOAD_CORE" wrk -t1 -c"$CONNS" -d"$DUR" --latency "http://127.0.0.1:$PROXY_PORT/" \
    -s "$PEERS/url/proxy_req.lua" -- "$hosts" $ORIGIN_PORT > "$D/wrk_$name.txt"
  c1=$(cpu_ticks $DP)
  reqs=$(awk '/requests in/{print $1}' "$D/wrk_$name.txt")
  cpu=$(echo "scale=3; ($c1 - $c0)/$(getconf CLK_TCK)" | bc)
  log "[$name] $(awk '/Requests\/sec/{print $2}' "$D/wrk_$name.txt") req/s, p99 $(awk '$1=="99%"{print $2}' "$D/wrk_$name.txt"), $(grep -E 'Socket errors|Non-2xx' "$D/wrk_$name.txt" | tr '\n' ' ')"
  log "[$name] dragnet CPU ${cpu}s for $reqs requests => $(echo "scale=1; $reqs / ($cpu + 0.0001)" | bc) req per dragnet-CPU-second"
}
run_wrk allowed "$W/allowed_hosts.txt"
head -1 "$W/allowed_hosts.txt" > "$D/allowed_1host.txt"
run_wrk allowed_1host "$D/allowed_1host.txt"
run_wrk blocked "$W/blocked_hosts.txt"
log "dragnet RSS after load: $(rss_kb $DP) kB"

# Reload under load: recompile the list with one more entry and SIGHUP while wrk runs on
# allowed hosts; every request must still be answered (no refused connection, no error).
log "reload under load: wrk -c8 -d20s on allowed hosts, SIGHUP after 5 s"
taskset -c "$LOAD_CORE" wrk -t1 -c8 -d20s --timeout 30s --latency "http://127.0.0.1:$PROXY_PORT/" \
  -s "$PEERS/url/proxy_req.lua" -- "$W/allowed_hosts.txt" $ORIGIN_PORT > "$D/wrk_reload.txt" & WRK_PID=$!
sleep 5
{ cat "$D/list.domains"; echo "reload-canary.example"; } > "$D/next.domains"
t0=$(date +%s.%N)
"$BIN" rules compile "domains:$D/next.domains" -o "$D/next.snap" --ruleset-version 2 > /dev/null 2>&1
t1=$(date +%s.%N)
mv "$D/next.snap" "$D/active.snap"
kill -HUP "$DP"
until curl -s -o /dev/null -w '%{http_code}' -x "127.0.0.1:$PROXY_PORT" "http://reload-canary.example:$ORIGIN_PORT/" | grep -q 403; do
  sleep 0.02; kill -0 "$DP" || break
done
t2=$(date +%s.%N)
log "reload: recompile under load $(echo "$t1 - $t0" | bc) s; SIGHUP -> canary blocked $(echo "$t2 - $t1" | bc) s"
wait "$WRK_PID"; WRK_PID=""
log "reload window: $(awk '/requests in/{print $1" requests"}' "$D/wrk_reload.txt"), $(grep -E 'Socket errors|Non-2xx' "$D/wrk_reload.txt" | tr '\n' ' ' || true) (nothing = no error)"
log "dragnet RSS after reload: $(rss_kb $DP) kB"
log "done; results in $RES"
