#!/usr/bin/env bash
# Scenario: GET /metrics on the internal API of two real daemons. The exposition is valid
# Prometheus text (every sample line parses, every family has one TYPE before its samples,
# histogram buckets are cumulative and end at +Inf = _count), needs the admin token, and
# its counters agree with what happened: shares out at the origin, in at the peer, one
# verification per share at the receiver, peers, API responses and 401s.
set -uo pipefail
dmnode=${1:?usage: metrics.sh path/to/dmnode}
work=$(mktemp -d "${DM_TEST_TMP:-/tmp}/scenario-metrics.XXXXXX")
source "$(dirname "$0")/lib/nodes.bash"
trap 'cleanup_nodes; if [ "$fails" -eq 0 ]; then rm -rf "$work"; else echo "# kept $work"; fi' EXIT

make_node 1 || exit 1
make_node 2 1 || exit 1
start_node 1 && start_node 2 || { bad "start"; finish; exit 1; }
peered() { [ "$(api 1 /v1/peers | jq '.peers | length')" -ge 1 ]; }
wait_for 20 "the two nodes peer" peered
submit_shares 1 25 512 "$work/ids" >/dev/null && ok "25 shares acknowledged at node1" || bad "submit"
wait_for 30 "node2 holds the 25 shares" all_have 25 2

code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$(api_port 1)/metrics")
[ "$code" = 401 ] && ok "/metrics without the admin token: 401" || bad "/metrics without token: $code"
for i in 1 2; do
  api "$i" /metrics -D "$work/h$i" >"$work/m$i" || bad "scrape node$i"
done
grep -qi '^content-type: text/plain; version=0.0.4' "$work/h1" && ok "content type text/plain; version=0.0.4" || bad "content type: $(grep -i content-type "$work/h1")"

# valid exposition text: comments are HELP/TYPE, samples are name{labels} value
bad_lines=$(grep -v -E '^# (HELP|TYPE) [a-zA-Z_:][a-zA-Z0-9_:]* ' "$work/m1" |
  grep -v -c -E '^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*",?)*\})? (-?[0-9.eE+-]+|NaN|\+Inf|-Inf)$')
[ "$bad_lines" -eq 0 ] && ok "every line is a HELP, TYPE or sample line" || bad "$bad_lines malformed lines"
dup_types=$(grep '^# TYPE' "$work/m1" | awk '{print $3}' | sort | uniq -d | wc -l)
[ "$dup_types" -eq 0 ] && ok "one TYPE per family" || bad "$dup_types families typed twice"
# every sample's family was typed before it
untyped=$(awk '/^# TYPE/ {t[$3]=1; next} /^#/ {next} {n=$1; sub(/\{.*/, "", n); b=n; sub(/_(bucket|sum|count)$/, "", b); if (!(n in t) && !(b in t)) print n}' "$work/m1" | wc -l)
[ "$untyped" -eq 0 ] && ok "every sample follows its family's TYPE" || bad "$untyped samples without a TYPE"

metric() { # metric FILE NAME [LABELS]: the sample's value
  awk -v k="$2${3:-}" '$1 == k {print $2}' "$1"
}
[ "$(metric "$work/m1" dmnode_shares_submitted_total)" = 25 ] && ok "node1: dmnode_shares_submitted_total 25" || bad "node1 submitted: $(metric "$work/m1" dmnode_shares_submitted_total)"
[ "$(metric "$work/m2" dmnode_shares_received_total)" = 25 ] && ok "node2: dmnode_shares_received_total 25" || bad "node2 received: $(metric "$work/m2" dmnode_shares_received_total)"
[ "$(metric "$work/m2" dmnode_verify_calls_total)" = 25 ] && ok "node2: one verification per share" || bad "node2 verify calls: $(metric "$work/m2" dmnode_verify_calls_total)"
[ "$(metric "$work/m1" dmnode_peers)" = 1 ] && ok "node1: dmnode_peers 1" || bad "node1 peers: $(metric "$work/m1" dmnode_peers)"
[ "$(metric "$work/m1" dmnode_api_auth_failures_total '{api="internal"}')" -ge 1 ] && ok "the 401 is counted" || bad "auth failures not counted"
ok2=$(metric "$work/m1" dmnode_api_responses_total '{api="internal",code="2xx"}')
[ "${ok2:-0}" -ge 25 ] && ok "node1: $ok2 internal 2xx responses counted" || bad "node1 2xx: $ok2"

# the latency histogram: cumulative buckets, +Inf bucket = _count
hist_ok=$(awk '/^dmnode_api_request_duration_seconds_bucket\{api="internal"/ {
    v=$2+0; if (v < prev) bad=1; prev=v; if ($1 ~ /le="\+Inf"/) inf=v }
  /^dmnode_api_request_duration_seconds_count\{api="internal"\}/ {cnt=$2+0}
  END { print (!bad && inf == cnt && cnt > 0) ? "yes" : "no" }' "$work/m1")
[ "$hist_ok" = yes ] && ok "latency histogram cumulative, +Inf bucket equals _count" || bad "histogram inconsistent"
finish
