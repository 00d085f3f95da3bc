#!/usr/bin/env bash
# Scenario: a node with an empty data directory joins late and catches up on
# 10 000 shares through paged anti-entropy.
set -uo pipefail
dmnode=${1:?usage: late_joiner.sh path/to/dmnode}
work=$(mktemp -d "${DM_TEST_TMP:-/tmp}/scenario-late.XXXXXX")
source "$(dirname "$0")/lib/nodes.bash"
trap 'cleanup_nodes; rm -rf "$work"' EXIT
N=${DM_LATE_SHARES:-10000}

make_node 1 || exit 1
make_node 2 1 || exit 1
start_node 1 && start_node 2 || { bad "start"; finish; exit 1; }
res=$(submit_shares 1 "$N" 1024)
echo "# $res"
[ "$(echo "$res" | jq .ok)" = "$N" ] && ok "$N shares acknowledged" || bad "submit: $res"
wait_for 120 "node2 holds $N" all_have "$N" 2

make_node 3 2 || exit 1
t0=$SECONDS
start_node 3 || { bad "start node3"; finish; exit 1; }
wait_for 300 "late joiner node3 catches up on $N shares" all_have "$N" 3
echo "# catch-up took $((SECONDS - t0)) s"
st=$(api 3 /v1/status)
[ "$(echo "$st" | jq .shares.verify_calls)" = "$N" ] && ok "one verification per share" || bad "verify_calls $(echo "$st" | jq .shares.verify_calls)"
[ "$(echo "$st" | jq .shares.synced_in)" -gt 0 ] && ok "shares arrived by sync" || bad "synced_in 0"
for i in 1 2 3; do stop_node "$i"; done
finish
