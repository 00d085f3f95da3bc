#!/usr/bin/env bash
# Scenario: five daemons in a line (each bootstraps only its left neighbour).
# A share submitted at one end reaches all; peer exchange fills in the mesh;
# every node verifies each share at most once.
set -uo pipefail
dmnode=${1:?usage: gossip_line.sh path/to/dmnode}
work=$(mktemp -d "${DM_TEST_TMP:-/tmp}/scenario-line.XXXXXX")
source "$(dirname "$0")/lib/nodes.bash"
trap 'cleanup_nodes; rm -rf "$work"' EXIT

make_node 1 || exit 1
for i in 2 3 4 5; do make_node "$i" $((i - 1)) || exit 1; done
for i in 1 2 3 4 5; do start_node "$i" || { bad "start node$i"; finish; exit 1; }; done
ok "five daemons started"

# one share at the far end
res=$(submit_shares 5 1 512 "$work/ids5")
echo "$res"
id=$(cut -d' ' -f1 "$work/ids5")
[ ${#id} -eq 64 ] && ok "share acknowledged with id $id" || bad "no id: $res"
wait_for 30 "the share reaches all five nodes" all_have 1 1 2 3 4 5
body=$(api 1 "/v1/shares/$id")
[ "$(echo "$body" | jq -r .id)" = "$id" ] && ok "node1 serves the share by id" || bad "node1 GET: $body"
[ "$(echo "$body" | jq -r .origin)" = "$(node_id 5)" ] && ok "origin is node5" || bad "origin: $body"

# peer exchange: node1 only knew nobody, node5 only node4; both learn the rest
peers_of() { api "$1" /v1/peers | jq '.peers | length'; }
meshed() { [ "$(peers_of 1)" -ge 3 ] && [ "$(peers_of 5)" -ge 3 ]; }
wait_for 40 "peer exchange connects the ends to the mesh" meshed

# a burst from the other end
submit_shares 1 300 1024 >/dev/null && ok "300 shares acknowledged at node1" || bad "burst submit failed"
wait_for 60 "all 301 shares reach every node" all_have 301 1 2 3 4 5

# at most one signature verification per share per node; duplicates dropped before crypto
for i in 2 3 4 5; do
  st=$(api "$i" /v1/status)
  v=$(echo "$st" | jq .shares.verify_calls); r=$(echo "$st" | jq .shares.stored)
  [ "$v" -le "$r" ] && ok "node$i verified $v signatures for $r shares" || bad "node$i verify_calls $v > stored $r"
done
dups=$(for i in 1 2 3 4 5; do api "$i" /v1/status | jq .shares.duplicates; done | jq -s add)
echo "# duplicates dropped across nodes: $dups"

for i in 1 2 3 4 5; do stop_node "$i"; done
for i in 1 2 3 4 5; do grep -q "stopped cleanly" "$(node_dir "$i").log" && ok "node$i stopped cleanly" || bad "node$i shutdown: $(tail -3 "$(node_dir "$i").log")"; done
finish
