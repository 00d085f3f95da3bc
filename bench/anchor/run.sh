#!/usr/bin/env bash
# bench/anchor: anchoring end to end on a real anvil (automine), one dmnode daemon.
# For each batch size B (default 1 16 256 4096): submit M shares (default max(4B, 64),
# at most 4096) and measure until every event is anchored and recorded:
#   events/s anchored (first submission -> last record), gas per event (sum of gasUsed of
#   the distinct anchoring transactions / events), transactions, and the anchoring latency
#   of the last batch (batch formed -> records written, from /v1/status).
# Prints one JSON line per batch size. Usage: bench/anchor/run.sh [B ...]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
sizes=("$@"); [ ${#sizes[@]} -gt 0 ] || sizes=(1 16 256 4096)
build=${DM_BENCH_BUILD:-$root/build-bench}
if [ ! -x "$build/dmnode" ] || [ ! -x "$build/dm_submit" ]; then
  cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$build" -j "$(nproc)" --target dmnode dm_submit >/dev/null
fi
dmnode="$build/dmnode"
work=$(mktemp -d "${TMPDIR:-/tmp}/bench-anchor.XXXXXX")
DM_BUILD_DIR=$build DM_LOG_LEVEL=warning
source "$root/tests/scenario/lib/nodes.bash"
source "$root/tests/scenario/lib/anvil.bash"
trap 'cleanup_nodes; cleanup_anvil; rm -rf "$work"' EXIT
start_anvil >/dev/null
rpc="http://127.0.0.1:$anvil_port"
n=0
for B in "${sizes[@]}"; do
  n=$((n + 1))
  M=$((B * 4)); [ $M -ge 64 ] || M=64; [ $M -le 4096 ] || M=4096
  make_node "$n" >/dev/null
  fund "$(sed -n 's/^eth_address: //p' "$(node_dir "$n").init")" 1000000000000000000000 >/dev/null
  contract=$("$dmnode" --config "$(node_dir "$n").toml" chain deploy --rpc "$rpc" --json 2>/dev/null | jq -r .contract)
  cat >>"$(node_dir "$n").toml" <<CONF
[chain]
rpc_url = "$rpc"
chain_id = 31337
contract = "$contract"
batch_max_events = $B
batch_max_delay_ms = 200
CONF
  start_node "$n" >/dev/null
  t0=$(date +%s%3N)
  submit_shares "$n" "$M" 256 "$work/ids$n" >/dev/null
  while :; do
    st=$(api "$n" /v1/status)
    [ "$(echo "$st" | jq .chain.events_anchored)" -ge "$M" ] && [ "$(echo "$st" | jq .chain.pending_events)" -eq 0 ] && break
    sleep 0.05
  done
  t1=$(date +%s%3N)
  # distinct anchoring transactions and their gas
  txs=$(while read -r id _; do api "$n" "/v1/shares/$id/proof" | jq -r .anchor.tx_hash; done <"$work/ids$n" | sort -u)
  gas=0; ntx=0
  for tx in $txs; do
    g=$(anvil_rpc eth_getTransactionReceipt "[\"$tx\"]" | jq -r .gasUsed)
    gas=$((gas + g)); ntx=$((ntx + 1))
  done
  jq -cn --argjson b "$B" --argjson m "$M" --argjson ms "$((t1 - t0))" --argjson gas "$gas" \
    --argjson ntx "$ntx" --argjson lat "$(echo "$st" | jq .chain.last_latency_ms)" \
    '{bench:"anchor", batch_max_events:$b, events:$m, seconds:($ms/1000), events_per_s:(($m*1000/$ms)*10|round/10),
      transactions:$ntx, gas_total:$gas, gas_per_event:(($gas/$m)*10|round/10), last_batch_latency_ms:$lat}'
  stop_node "$n"
done
