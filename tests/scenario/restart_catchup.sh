#!/usr/bin/env bash
# Scenario: kill -9 a node, submit 1000 shares elsewhere, restart it: it converges
# to the same set by anti-entropy, verifying every signature it receives once.
set -uo pipefail
dmnode=${1:?usage: restart_catchup.sh path/to/dmnode}
work=$(mktemp -d "${DM_TEST_TMP:-/tmp}/scenario-restart.XXXXXX")
source "$(dirname "$0")/lib/nodes.bash"
trap 'cleanup_nodes; rm -rf "$work"' EXIT

make_node 1 || exit 1
make_node 2 1 || exit 1
make_node 3 2 || exit 1
for i in 1 2 3; do start_node "$i" || { bad "start node$i"; finish; exit 1; }; done
submit_shares 1 20 256 >/dev/null && ok "20 shares before the crash" || bad "first submit"
wait_for 30 "all three hold 20" all_have 20 1 2 3

kill9_node 3
ok "node3 killed with SIGKILL"
submit_shares 1 1000 1024 >/dev/null && ok "1000 shares acknowledged while node3 is down" || bad "submit 1000"
wait_for 60 "node2 holds 1020" all_have 1020 2

start_node 3 || { bad "restart node3"; finish; exit 1; }
ok "node3 restarted"
wait_for 120 "node3 converges to 1020 shares" all_have 1020 3
st=$(api 3 /v1/status)
v=$(echo "$st" | jq .shares.verify_calls)
[ "$v" -eq 1000 ] && ok "node3 verified exactly the 1000 shares it lacked" || bad "node3 verify_calls=$v (want 1000)"
# the same set: compare node1's and node3's listings of node1's shares
origin=$(node_id 1)
list() { api "$1" "/v1/shares?origin=$origin&limit=1000&after=$2" | jq -r '.shares[].id'; }
if diff <(list 1 0; list 1 1000) <(list 3 0; list 3 1000) >/dev/null; then ok "node3 holds exactly node1's shares"; else bad "share sets differ"; fi
id=$(list 1 500 | head -1)
[ "$(api 3 "/v1/shares/$id" | jq -r .data_hash)" = "$(api 1 "/v1/shares/$id" | jq -r .data_hash)" ] && ok "a synced share reads back identically" || bad "synced share differs"
for i in 1 2 3; do stop_node "$i"; done
finish
