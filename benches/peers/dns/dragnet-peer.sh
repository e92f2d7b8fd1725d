#!/usr/bin/env bash
# Dragnet as the custom peer of ../shared/peers/dns/run_anchors.sh (see run.sh here).
#   dragnet-peer.sh start   (env PORT BLOCKLIST MODE BACKEND from the harness): compile the
#                           blocklist to a snapshot, write a config, exec `dragnet run`
#   dragnet-peer.sh reload  (env SERVER_PID BLOCKLIST): recompile, rename into place, SIGHUP
# Only MODE=forward is meaningful for Dragnet (allowed names go to the upstream $BACKEND).
set -euo pipefail
DRAGNET=${DRAGNET:?path to the dragnet binary}
W=${DRAGNET_WORK:-${TMPDIR:-/tmp}/dragnet-peers/dns-dragnet}; mkdir -p "$W"
compile() {
  "$DRAGNET" rules compile "domains:$BLOCKLIST" -o "$W/next.snap" --lenient >"$W/compile.log" 2>&1
  mv "$W/next.snap" "$W/active.snap"
}
case "${1:-start}" in
  start)
    compile
    cat > "$W/dragnet.toml" <<TOML
[rules]
snapshot = "$W/active.snap"
[admin]
listen = ""
[check]
enabled = false
[log]
level = "warn"
[sip]
enabled = false
[dns]
listen_udp = ["127.0.0.1:$PORT"]
listen_tcp = []
upstreams = ["$BACKEND"]
workers = 1
block = "nxdomain"
# The same packet-cache size as the harness gives dnsdist (newPacketCache(500000)): the
# query mix asks for about 110 000 distinct allowed names, more than the default 100 000.
cache_entries = 500000
TOML
    exec "$DRAGNET" run --config "$W/dragnet.toml" ;;
  reload)
    compile
    kill -HUP "$SERVER_PID" ;;
esac
