#!/usr/bin/env bash
# Scenario: anchoring end to end with real daemons and a real anvil. Two nodes; shares
# submitted at one; every share is anchored and its proof bundle verifies with nothing
# but the RPC endpoint (`dmnode verify proof`); a tampered bundle fails naming the check.
# Then faults: anvil killed mid-stream and restarted with its state; the node restarted
# while events are pending. In the end every share is anchored and verifies. Shares
# submitted at the other node too: through the origins' anchor notices every node serves
# a bundle for every share, and the bundles served by the node that is not the share's
# origin verify against the chain and name the origin. A node configured with the
# wrong chain id refuses to run.
set -uo pipefail
dmnode=${1:?usage: anchor_e2e.sh path/to/dmnode}
mkdir -p "${DM_TEST_TMP:-/tmp}"
work=$(mktemp -d "${DM_TEST_TMP:-/tmp}/scenario-anchor.XXXXXX") || exit 1
source "$(dirname "$0")/lib/nodes.bash"
source "$(dirname "$0")/lib/anvil.bash"
trap 'cleanup_anvil; cleanup_nodes; if [ "$fails" -eq 0 ]; then rm -rf "$work"; else echo "# kept $work"; fi' EXIT
if [ ! -x "$anvil_bin" ]; then echo "anvil missing: run scripts/setup-node.sh"; exit 1; fi

start_anvil --block-time 1 --state "$work/anvil.state" -- --state-interval 1 >/dev/null || { bad "anvil start"; finish; exit 1; }
rpc="http://127.0.0.1:$anvil_port"
ok "anvil on $rpc"

make_node 1 || exit 1
make_node 2 1 || exit 1
for i in 1 2; do fund "$(sed -n 's/^eth_address: //p' "$(node_dir "$i").init")" 100000000000000000000 >/dev/null; done
contract=$("$dmnode" --config "$(node_dir 1).toml" chain deploy --rpc "$rpc" --json | jq -r .contract)
[ ${#contract} -eq 42 ] && ok "audit contract deployed by node1 at $contract" || { bad "deploy"; finish; exit 1; }
for i in 1 2; do
  cat >>"$(node_dir "$i").toml" <<CONF
[chain]
rpc_url = "$rpc"
chain_id = 31337
contract = "$contract"
batch_max_events = 8
batch_max_delay_ms = 300
CONF
done
start_node 1 && start_node 2 || { bad "start"; finish; exit 1; }

anchored() { api 1 /v1/status 2>/dev/null | jq '.chain.events_anchored // -1' 2>/dev/null || echo -1; }
pending() { api 1 /v1/status 2>/dev/null | jq '.chain.pending_events // -1' 2>/dev/null || echo -1; }
# all_proven FILE...: every share id listed has a proof record at node1 (counters in
# /v1/status restart with the daemon, the records do not)
all_proven() {
  [ "$(pending)" -eq 0 ] || return 1
  local f id
  for f in "$@"; do
    while read -r id _; do
      [ "$(api 1 "/v1/shares/$id/proof" -o /dev/null -w '%{http_code}')" = 200 ] || return 1
    done <"$work/$f"
  done
}

submit_shares 1 20 256 "$work/ids-a" >/dev/null && ok "20 shares acknowledged" || bad "submit"
wait_for 60 "all 20 anchored" all_proven ids-a

verify_id() { # verify_id ID: fetch the bundle from node1, verify it against the chain alone
  api 1 "/v1/shares/$1/proof" >"$work/$1.json" &&
    "$dmnode" verify proof "$work/$1.json" --rpc "$rpc" >"$work/$1.out" 2>&1
}
nv=0
while read -r id _; do verify_id "$id" || { nv=$((nv + 1)); cat "$work/$id.out"; }; done <"$work/ids-a"
[ $nv -eq 0 ] && ok "every proof bundle verifies against the chain" || bad "$nv bundles failed"

# a tampered bundle names what did not match
id=$(head -1 "$work/ids-a" | cut -d' ' -f1)
jq '.event.recipient = "0x0000000000000000000000000000000000000001"' "$work/$id.json" >"$work/t1.json"
"$dmnode" verify proof "$work/t1.json" --rpc "$rpc" >"$work/t1.out" 2>&1; rc=$?
[ $rc -eq 5 ] && grep -q "leaf.*FAIL" "$work/t1.out" && ok "tampered event: exit 5, leaf check fails" || { bad "tampered event rc=$rc"; cat "$work/t1.out"; }
jq '.anchor.tx_hash = "0x'"$(printf '%064d' 1)"'"' "$work/$id.json" >"$work/t2.json"
"$dmnode" verify proof "$work/t2.json" --rpc "$rpc" >"$work/t2.out" 2>&1; rc=$?
[ $rc -ne 0 ] && grep -q "receipt.*FAIL" "$work/t2.out" && ok "tampered tx hash: receipt check fails" || { bad "tampered tx rc=$rc"; cat "$work/t2.out"; }

# fault 1: anvil killed mid-stream, shares keep being acknowledged, anvil comes back
submit_shares 1 10 256 "$work/ids-b" >/dev/null &
sub=$!
sleep 0.3
kill_anvil
ok "anvil killed with SIGKILL"
wait $sub && ok "shares acknowledged while the chain is down" || bad "submit during outage"
sleep 2
launch_anvil >/dev/null && ok "anvil restarted with its state" || bad "anvil restart"
wait_for 90 "everything anchored after the outage" all_proven ids-a ids-b

# fault 2: the node restarted while events are pending
submit_shares 1 10 256 "$work/ids-c" >/dev/null
stop_node 1
start_node 1 || bad "node1 restart"
wait_for 60 "pending events anchored after the node restart" all_proven ids-a ids-b ids-c

# (A reorg that removes an anchoring transaction before it is final is exercised against
# a real anvil by tests/unit/chain/test_anchor.c with evm_revert and anvil_reorg, with
# exact confirmation counts; with one confirmation, as here, an anchor is final at once.)
nv=0
for f in ids-a ids-b ids-c; do
  while read -r id _; do verify_id "$id" || nv=$((nv + 1)); done <"$work/$f"
done
[ $nv -eq 0 ] && ok "after the chain outage and the node restart: all 40 shares verify" || bad "$nv of 40 do not verify"
ntx=$(for f in "$work"/*.json; do jq -r '.anchor.tx_hash // empty' "$f" 2>/dev/null; done | sort -u | wc -l)
echo "# anchoring transactions across the run: $ntx"

# anchor notices: shares of node2 too; every node serves a bundle for every share, also
# for those the other node anchored (its signed notice), and such a bundle verifies
# against the chain alone and names the share's origin, not the node that served it
served() { # served I FILE...: node I answers 200 for the proof of every share listed
  local i=$1 f id; shift
  for f in "$@"; do
    while read -r id _; do
      [ "$(api "$i" "/v1/shares/$id/proof" -o /dev/null -w '%{http_code}')" = 200 ] || return 1
    done <"$work/$f"
  done
}
served_everywhere() { served 1 ids-a ids-b ids-c ids-d && served 2 ids-a ids-b ids-c ids-d; }
submit_shares 2 8 256 "$work/ids-d" >/dev/null && ok "8 shares acknowledged at node2" || bad "submit at node2"
wait_for 60 "both nodes serve a proof bundle for all 48 shares" served_everywhere
nv=0 no=0
for f in ids-a ids-b ids-c ids-d; do
  if [ "$f" = ids-d ]; then at=1 from=2; else at=2 from=1; fi
  while read -r id _; do
    if ! api "$at" "/v1/shares/$id/proof" >"$work/n$at-$id.json" ||
      ! "$dmnode" verify proof "$work/n$at-$id.json" --rpc "$rpc" >"$work/n$at-$id.out" 2>&1; then
      nv=$((nv + 1)); cat "$work/n$at-$id.out"
    fi
    [ "$(jq -r .origin.node_id "$work/n$at-$id.json")" = "$(node_id "$from")" ] || no=$((no + 1))
  done <"$work/$f"
done
[ $nv -eq 0 ] && ok "all 48 bundles served by the non-origin node verify against the chain" || bad "$nv bundles served by the non-origin node fail"
[ $no -eq 0 ] && ok "they name the share's origin, not the node that served them" || bad "$no bundles name the wrong origin"
id=$(head -1 "$work/ids-a" | cut -d' ' -f1)
"$dmnode" --config "$(node_dir 2).toml" verify share "$id" --rpc "$rpc" >"$work/vs.out" 2>&1 &&
  ok "dmnode verify share at node2 for a share node1 anchored" || { bad "verify share at node2"; cat "$work/vs.out"; }
jq '.origin.eth_binding = "'"$(jq -r .origin.eth_binding "$work/n1-$(head -1 "$work/ids-d" | cut -d' ' -f1).json")"'"' "$work/n2-$id.json" >"$work/t3.json"
"$dmnode" verify proof "$work/t3.json" --rpc "$rpc" >"$work/t3.out" 2>&1; rc=$?
[ $rc -ne 0 ] && grep -q "eth_binding.*FAIL" "$work/t3.out" && ok "a served bundle with another node's binding fails the binding check" || { bad "foreign binding rc=$rc"; cat "$work/t3.out"; }

# the trail read back from the chain alone (`dmnode audit trail`): node1's anchors are
# exactly the anchors its proof records name, field for field; node1's and node2's anchors
# make up the contract's whole trail
trail() { "$dmnode" --config "$(node_dir 1).toml" audit trail --from 0 "$@" 2>>"$work/trail.err"; }
addr1=$(sed -n 's/^eth_address: //p' "$(node_dir 1).init")
addr2=$(sed -n 's/^eth_address: //p' "$(node_dir 2).init")
if trail --json >"$work/trail-1.json" && trail --all --json >"$work/trail-all.json" &&
  trail --node "$addr2" --json >"$work/trail-2.json" && trail >"$work/trail-1.txt"; then
  for f in ids-a ids-b ids-c; do while read -r id _; do cat "$work/$id.json"; done <"$work/$f"; done |
    jq -s -c '[.[] | {tx_hash: .anchor.tx_hash, block_number: .anchor.block_number,
      log_index: .anchor.log_index, root: .merkle.root, count: .merkle.count}] | unique' >"$work/recorded.json"
  jq -c '[.[] | {tx_hash, block_number, log_index, root, count}] | unique' "$work/trail-1.json" >"$work/onchain.json"
  n1=$(jq length "$work/trail-1.json") n2=$(jq length "$work/trail-2.json") nall=$(jq length "$work/trail-all.json")
  nrec=$(jq length "$work/recorded.json") ev1=$(jq '[.[].count] | add // 0' "$work/trail-1.json")
  others=$(jq --arg a "$addr1" '[.[] | select((.sender | ascii_downcase) != ($a | ascii_downcase))] | length' "$work/trail-1.json")
  if [ "$nrec" -gt 0 ] && cmp -s "$work/recorded.json" "$work/onchain.json" && [ "$others" -eq 0 ]; then
    ok "audit trail: node1's $n1 anchors on chain ($ev1 events) are the $nrec its records name"
  else
    bad "audit trail: node1 has $n1 anchors on chain ($others from other senders), its records name $nrec"
    diff <(jq . "$work/recorded.json") <(jq . "$work/onchain.json") | head -20
  fi
  [ $((n1 + n2)) -eq "$nall" ] && ok "audit trail --all: $nall anchors = node1's $n1 + node2's $n2" || bad "audit trail --all: $nall anchors, node1 $n1 + node2 $n2"
  grep -q "^anchors: $n1, events: $ev1 " "$work/trail-1.txt" && ok "audit trail text summary: anchors: $n1, events: $ev1" || { bad "audit trail text output"; tail -2 "$work/trail-1.txt"; }
else
  bad "dmnode audit trail failed"; cat "$work/trail.err"
fi

# a wrong chain id refuses to run
stop_node 2
sed -i 's/^chain_id = 31337/chain_id = 1/' "$(node_dir 2).toml"
"$dmnode" --config "$(node_dir 2).toml" run >/dev/null 2>"$work/wrong.log" &
p=$!
for _ in $(seq 1 100); do kill -0 $p 2>/dev/null || break; sleep 0.1; done
if kill -0 $p 2>/dev/null; then kill -9 $p; bad "wrong chain id: node kept running"; else
  wait $p; rc=$?
  [ $rc -ne 0 ] && grep -qi "chain id" "$work/wrong.log" && ok "wrong chain id: refused (exit $rc)" || { bad "wrong chain id exit $rc"; tail -3 "$work/wrong.log"; }
fi
stop_node 1
finish
