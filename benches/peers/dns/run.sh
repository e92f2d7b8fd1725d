#!/usr/bin/env bash
# Dragnet's DNS plane beside unbound and dnsdist on the same 10^6-name list and query mix,
# with the shared harness ../shared/peers/dns/run_anchors.sh (dnsperf, pinned cores, CPU per
# query, load time, RSS, reload under load). Forward mode: allowed names go to a local unbound
# backend, listed ones are answered NXDOMAIN by the server under test.
#   PEERS="dnsdist unbound dragnet" SIZE=1000000 REPS=3 benches/peers/dns/run.sh
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd); ROOT=$(cd "$HERE/../../.." && pwd)
SHARED=${SHARED_PEERS:-$ROOT/../shared/peers}
( cd "$ROOT" && cargo build --release --locked -q )
export DRAGNET=${CARGO_TARGET_DIR:-$ROOT/target}/release/dragnet
PEERS=${PEERS:-"dnsdist unbound dragnet"} MODES=forward RELOAD_MODES=forward LISTS=${LISTS:-full} \
CUSTOM_NAME=dragnet CUSTOM_START="$HERE/dragnet-peer.sh start" CUSTOM_RELOAD="$HERE/dragnet-peer.sh reload" \
  bash "$SHARED/dns/run_anchors.sh"
