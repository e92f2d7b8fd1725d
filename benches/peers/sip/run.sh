#!/usr/bin/env bash
# Dragnet's SIP plane beside Kamailio, on the same data and load: a thin wrapper around the shared
# peers harness (../shared/peers/sip/run_anchors.sh), which generates the 10^6-number list and the
# SIPp call mix (fixed seed), drives SIPp UAC -> proxy -> SIPp UAS at stepped rates on pinned cores,
# and measures the proxy's CPU per call, calls/s at < 1 % failures and response times.
#
# This script: builds Dragnet (release), compiles the harness's numbers.txt + prefixes.txt into a
# snapshot, starts `dragnet run` pinned to PROXY_CORE with one worker, runs the harness with
# TARGET=external against it, stops it by PID; then (PEER=1, default) runs the harness's own
# Kamailio on the same data. Results: $OUT/{dragnet,kamailio}/…/summary.md and results.tsv.
#
#   PEERS=/work/shared/peers  RATES="2000 4000 8000"  STEP_SECS=10  LIST_SIZE=1000000  PEER=1
#   benches/peers/sip/run.sh
# All traffic on 127.0.0.1; needs sipp (Debian sip-tester) and, for the peer, root for apt.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd); ROOT=$(cd "$HERE/../../.." && pwd)
PEERS=${PEERS:-$ROOT/../shared/peers}
LIST_SIZE=${LIST_SIZE:-1000000}; RATES=${RATES:-"2000 4000 8000"}; STEP_SECS=${STEP_SECS:-10}
PROXY_CORE=${PROXY_CORE:-0}; SIPP_CORE=${SIPP_CORE:-1}; PEER=${PEER:-1}
OUT=${OUT:-${TMPDIR:-/tmp}/dragnet-peers/sip-side-by-side/$(date +%Y%m%d-%H%M%S)}
DATA=${DATA:-${TMPDIR:-/tmp}/dragnet-peers/sip-data-$LIST_SIZE}
mkdir -p "$OUT" "$DATA"
log() { echo "[$(date +%H:%M:%S)] $*" | tee -a "$OUT/run.log"; }

command -v sipp >/dev/null || { echo "sipp not installed (apt-get install sip-tester)" >&2; exit 2; }
log "building dragnet (release)"
( cd "$ROOT" && cargo build --release --locked -q )
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/dragnet

if [ ! -s "$DATA/calls.csv" ]; then
  log "generating data ($LIST_SIZE numbers)"
  python3 "$PEERS/sip/gen_data.py" --size "$LIST_SIZE" --out-dir "$DATA" >> "$OUT/run.log"
  python3 "$PEERS/sip/mk_sqlite.py" "$DATA/db/blocklist.sqlite" "$DATA" >> "$OUT/run.log" 2>&1 || true
fi
# The same list as Dragnet rules: exact numbers block (callee and caller), prefixes block.
{ echo "number,kind,action,category"; sed 's/$/,number,block,fraud/' "$DATA/numbers.txt"
  sed 's/$/,prefix,block,fraud-range/' "$DATA/prefixes.txt"; } > "$DATA/dragnet-rules.csv"
log "compiling the snapshot"
/usr/bin/time -f "compile %e s, %M KiB max RSS" "$BIN" rules compile "$DATA/dragnet-rules.csv" \
  -o "$DATA/dragnet.snap" --ruleset-version 1 2>&1 | tail -3 | tee -a "$OUT/run.log"

cat > "$OUT/dragnet.toml" <<TOML
[rules]
snapshot = "$DATA/dragnet.snap"
[admin]
listen = "127.0.0.1:0"
[log]
level = "warn"
[sip]
mode = "proxy"
listen_udp = ["127.0.0.1:5060"]
listen_tcp = []
next_hop = "127.0.0.1:5070"
workers = 1
queue = 4096
[sip.block]
code = 608
TOML
log "starting dragnet on core $PROXY_CORE"
T0=$(date +%s.%N)
taskset -c "$PROXY_CORE" "$BIN" run --config "$OUT/dragnet.toml" > "$OUT/dragnet.out" 2> "$OUT/dragnet.err" &
DPID=$!
trap 'kill "$DPID" 2>/dev/null || true' EXIT
for _ in $(seq 1 600); do grep -q '^ready' "$OUT/dragnet.out" 2>/dev/null && break; sleep 0.05; done
grep -q '^ready' "$OUT/dragnet.out" || { log "dragnet did not become ready"; cat "$OUT/dragnet.err"; exit 1; }
log "dragnet ready in $(python3 -c "print(round($(date +%s.%N)-$T0,2))") s, RSS $(awk '/VmRSS/{print $2" "$3}' /proc/$DPID/status)"

log "harness against dragnet (pid $DPID)"
TARGET=external PROXY_PID=$DPID DO_INSTALL=0 DO_GENERATE=0 DATA="$DATA" RATES="$RATES" STEP_SECS="$STEP_SECS" \
  PROXY_CORE="$PROXY_CORE" SIPP_CORE="$SIPP_CORE" BISECT="${BISECT:-2}" CAPTURE_RATE="${CAPTURE_RATE:-}" \
  OUT="$OUT/dragnet" bash "$PEERS/sip/run_anchors.sh" 2>&1 | tail -5 | tee -a "$OUT/run.log"
log "dragnet RSS after: $(awk '/VmRSS/{print $2" "$3}' /proc/$DPID/status)"
kill "$DPID"; wait "$DPID" 2>/dev/null || true; trap - EXIT

if [ "$PEER" = 1 ]; then
  log "harness against kamailio (same data, same rates)"
  TARGET=kamailio DO_INSTALL="${DO_INSTALL:-1}" DO_GENERATE=0 DATA="$DATA" RATES="$RATES" STEP_SECS="$STEP_SECS" \
    PROXY_CORE="$PROXY_CORE" SIPP_CORE="$SIPP_CORE" BISECT="${BISECT:-2}" CAPTURE_RATE="${CAPTURE_RATE:-}" \
    FWD="${KAMAILIO_FWD:-stateless}" OUT="$OUT/kamailio" bash "$PEERS/sip/run_anchors.sh" 2>&1 | tail -5 | tee -a "$OUT/run.log"
fi
log "results: $OUT/dragnet/results.tsv ${PEER:+and $OUT/kamailio/results.tsv}"
for f in "$OUT"/*/results.tsv; do echo "== $f"; column -t -s $'\t' "$f"; done | tee -a "$OUT/run.log"
