#!/usr/bin/env bash
# Scenario: a hostile peer (tests/tools/dm_hostile, raw TCP) sends garbage, an
# oversize length prefix, a truncated frame, an unknown type, a share with a bad
# signature, a replayed share, a conflicting share, and a handshake with someone
# else's key. Each time the node disconnects it (replays are dropped as
# duplicates), repeated offence bans its address, and the node keeps serving its
# honest peer and its API throughout. Each case comes from its own 127/8 address.
set -uo pipefail
dmnode=${1:?usage: hostile_peer.sh path/to/dmnode}
work=$(mktemp -d "${DM_TEST_TMP:-/tmp}/scenario-hostile.XXXXXX")
source "$(dirname "$0")/lib/nodes.bash"
trap 'cleanup_nodes; rm -rf "$work"' EXIT
hostile="$build_dir/dm_hostile"

make_node 1 || exit 1
make_node 2 1 || exit 1
start_node 1 && start_node 2 || { bad "start"; finish; exit 1; }
has_peer() { [ "$(api 1 /v1/peers | jq '.peers | length')" -ge 1 ]; }
wait_for 20 "honest peers connected" has_peer

attack() { # attack MODE SOURCE [extra args]: run one case, print its JSON
  local mode=$1 src=$2; shift 2
  "$hostile" --port "$(p2p_port 1)" --network scenario-net --mode "$mode" --source "$src" "$@"
}
expect_closed() {
  local mode=$1 src=$2; shift 2
  local out; out=$(attack "$mode" "$src" "$@")
  echo "# $out"
  if [ "$(echo "$out" | jq -r .closed)" = true ]; then
    ok "$mode: disconnected after $(echo "$out" | jq .closed_after_ms) ms"
  else
    bad "$mode: connection stayed open"
  fi
}

n=10
for mode in garbage oversize truncated unknown-type bad-signature; do
  n=$((n + 1))
  expect_closed "$mode" "127.0.1.$n"
done
expect_closed stolen-key 127.0.1.30 --victim-port "$(p2p_port 2)"

# a conflicting share (same origin and seq, another body, both validly signed): the
# first is kept, the second rejected and counted; the relaying peer is scored but
# not cut off, since an honest relay can forward an equivocating origin's share
before=$(stored 1)
out=$(attack conflict 127.0.1.31 --wait-ms 2000)
echo "# $out"
sleep 1
[ "$(stored 1)" -eq $((before + 1)) ] && ok "conflict: only the first body for (origin, seq) stored" || bad "conflict stored $(stored 1) (before $before)"
[ "$(api 1 /v1/status | jq .shares.conflicts)" -ge 1 ] && ok "conflict: counted" || bad "conflict not counted"

# the bad-signature and conflict shares were never stored: only the first
# (valid) share of the conflict case is
before=$(stored 1)
out=$(attack replay 127.0.1.40 --wait-ms 3000)
echo "# $out"
[ "$(echo "$out" | jq -r .closed)" = false ] && ok "replay: a valid peer that repeats a share stays connected" || bad "replay closed"
stored_is() { [ "$(stored 1)" -eq "$1" ]; }
wait_for 10 "the replayed share is stored" stored_is $((before + 1))
sleep 1
after=$(stored 1)
[ "$after" -eq $((before + 1)) ] && ok "replay: 6 copies stored once ($before -> $after)" || bad "replay stored $before -> $after"
dups=$(api 1 /v1/status | jq .shares.duplicates)
[ "$dups" -ge 5 ] && ok "replay: $dups duplicates dropped" || bad "duplicates $dups"

# repeated offence from one address: banned, then refused at accept
for k in 1 2 3; do attack garbage 127.0.2.7 >/dev/null; done
out=$(attack garbage 127.0.2.7)
echo "# $out"
if [ "$(echo "$out" | jq -r .greeted)" = false ] && [ "$(echo "$out" | jq -r .closed)" = true ]; then
  ok "repeat offender's address is banned (closed at accept, no HELLO)"
else
  bad "repeat offender not banned: $out"
fi
bans=$(api 1 /v1/status | jq .p2p.bans)
[ "$bans" -ge 1 ] && ok "node counts $bans bans" || bad "no ban counted"
grep -q "security - WARNING" "$(node_dir 1).log" && ok "misbehaviour logged in the security format" || bad "no security log lines"

# the node still serves its honest peer and its API
[ "$(api 1 /v1/peers | jq '[.peers[] | select(.node_id == "'"$(node_id 2)"'")] | length')" = 1 ] && ok "honest peer still connected" || bad "honest peer lost"
base=$(stored 1)
submit_shares 2 5 256 >/dev/null
wait_for 20 "gossip from the honest peer still flows" all_have $((base + 5)) 1
for i in 1 2; do stop_node "$i"; done
# the ban is an audit entry too, and the log still verifies
"$DM_BUILD_DIR/dm_storetool" "$(node_dir 1)/db" list audit >"$work/audit.txt" 2>&1
grep -q '"event":"peer_banned"' "$work/audit.txt" && grep -q '"remote":"127.0.2.7"' "$work/audit.txt" &&
  ok "the ban of 127.0.2.7 is in the audit log" || bad "no peer_banned audit entry"
"$dmnode" --config "$(node_dir 1).toml" audit verify >"$work/verify.txt" 2>&1 &&
  ok "audit log intact" || { bad "audit verify"; cat "$work/verify.txt"; }
finish
