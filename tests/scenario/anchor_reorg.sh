#!/usr/bin/env bash
# Scenario: a reorg removes a node's anchoring transaction before it is final. A real
# dmnode and a real anvil mining a block a second; the node waits for 6 confirmations.
# As soon as the anchor is mined, evm_revert takes the chain back to a snapshot from
# before it (the transaction is gone from the chain and from the pool). The node notices,
# resends, and in the end every share is anchored exactly once: every proof bundle
# verifies against the chain alone, and the chain's trail (`dmnode audit trail`) holds
# each recorded root once, with the event counts adding up to the shares submitted.
set -uo pipefail
dmnode=${1:?usage: anchor_reorg.sh path/to/dmnode}
work=$(mktemp -d "${DM_TEST_TMP:-/tmp}/scenario-reorg.XXXXXX")
source "$(dirname "$0")/lib/nodes.bash"
source "$(dirname "$0")/lib/anvil.bash"
trap 'cleanup_anvil; cleanup_nodes; if [ "$fails" -eq 0 ]; then rm -rf "$work"; else echo "# kept $work"; fi' EXIT
if [ ! -x "$anvil_bin" ]; then echo "anvil missing: run scripts/setup-node.sh"; exit 1; fi

start_anvil --block-time 1 >/dev/null || { bad "anvil start"; finish; exit 1; }
rpc="http://127.0.0.1:$anvil_port"
ok "anvil on $rpc (a block a second)"

make_node 1 || exit 1
addr=$(sed -n 's/^eth_address: //p' "$(node_dir 1).init")
fund "$addr" 100000000000000000000 >/dev/null
contract=$("$dmnode" --config "$(node_dir 1).toml" chain deploy --rpc "$rpc" --json | jq -r .contract)
[ ${#contract} -eq 42 ] && ok "audit contract at $contract" || { bad "deploy"; finish; exit 1; }
cat >>"$(node_dir 1).toml" <<CONF
[chain]
rpc_url = "$rpc"
chain_id = 31337
contract = "$contract"
batch_max_events = 64
batch_max_delay_ms = 200
confirmations = 6
CONF
start_node 1 || { bad "start"; finish; exit 1; }
nonce() { echo $(($(anvil_rpc eth_getTransactionCount "[\"$addr\",\"latest\"]" | jq -r .))); }
n0=$(nonce) # the deployment used nonce 0

snap=$(anvil_snapshot)
submit_shares 1 12 128 "$work/ids" >/dev/null && ok "12 shares acknowledged" || bad "submit"
mined_once() { [ "$(nonce)" -gt "$n0" ]; }
wait_for 30 "the anchor mined" mined_once
final_now=$(api 1 /v1/status | jq '.chain.batches_final')
anvil_revert "$snap" && ok "evm_revert: the chain is back before the anchor (nonce $(nonce))" || bad "revert"
[ "$final_now" = 0 ] && ok "the anchor was not final when it was removed" || bad "the anchor was already final ($final_now): the test raced; raise confirmations"

pending() { api 1 /v1/status 2>/dev/null | jq '.chain.pending_events // -1' 2>/dev/null || echo -1; }
all_proven() {
  [ "$(pending)" -eq 0 ] || return 1
  local id
  while read -r id _; do
    [ "$(api 1 "/v1/shares/$id/proof" -o /dev/null -w '%{http_code}')" = 200 ] || return 1
  done <"$work/ids"
}
wait_for 90 "every share anchored after the reorg" all_proven
# the node saw its mined receipt vanish (a reorg) or, when the revert came before its next
# receipt poll, found the transaction gone and sent it again (a rebroadcast)
st=$(api 1 /v1/status)
reorgs=$(echo "$st" | jq '.chain.reorgs') resent=$(echo "$st" | jq '.chain.rebroadcasts')
[ $((reorgs + resent)) -ge 1 ] && ok "the node noticed and resent (reorgs=$reorgs, rebroadcasts=$resent)" || bad "reorgs=$reorgs rebroadcasts=$resent"

nv=0
while read -r id _; do
  api 1 "/v1/shares/$id/proof" >"$work/$id.json" &&
    "$dmnode" verify proof "$work/$id.json" --rpc "$rpc" --confirmations 6 >"$work/$id.out" 2>&1 ||
    { nv=$((nv + 1)); cat "$work/$id.out"; }
done <"$work/ids"
[ $nv -eq 0 ] && ok "all 12 proof bundles verify against the chain (6 confirmations)" || bad "$nv bundles fail"

# exactly once: the chain's trail names each recorded root once, and its counts add up
"$dmnode" --config "$(node_dir 1).toml" audit trail --from 0 --json >"$work/trail.json" 2>"$work/trail.err" ||
  { bad "audit trail"; cat "$work/trail.err"; }
roots=$(jq -r '.merkle.root' "$work"/*.json 2>/dev/null | grep -v null | sort -u)
dup=0
for r in $roots; do
  c=$(jq --arg r "$r" '[.[] | select((.root | ltrimstr("0x")) == ($r | ltrimstr("0x")))] | length' "$work/trail.json")
  [ "$c" -eq 1 ] || dup=$((dup + 1))
done
events=$(jq '[.[].count] | add // 0' "$work/trail.json")
[ $dup -eq 0 ] && ok "each recorded root is anchored exactly once on chain" || bad "$dup roots not anchored exactly once"
[ "$events" -eq 12 ] && ok "the chain's anchors count 12 events: none lost, none twice" || bad "the chain's anchors count $events events, want 12"
stop_node 1
finish
