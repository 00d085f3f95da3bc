#!/usr/bin/env bash
# Scenario: per-client token buckets on the external API (issue 5, Tests), measured with
# generous tolerances rather than tight timing. One real dmnode with the external limit set
# to RATE req/s burst BURST (api.external.rate_per_sec / rate_burst through the environment).
#  - burst: one keep-alive client (one curl over BURST+EXTRA URLs) with key A: the first
#    BURST answers are admitted, then 429 ERATELIMIT with Retry-After >= 1; at most the
#    tokens refilled during the measured send time are admitted beyond BURST;
#  - an independent client (key B) gets its full burst right after;
#  - requests without a key are limited per address: /v1/health from 127.0.0.2 runs out,
#    then an invalid key from 127.0.0.2 gets 429 too (same bucket), while 127.0.0.3 is
#    served;
#  - recovery: after waiting W seconds key A is admitted about RATE*W times again (bounded
#    below and above by the measured times), and after waiting Retry-After a request passes;
#  - the internal API (its own buckets) is unaffected;
#  - /metrics dmnode_api_rate_limited_total{api="external"} equals the 429s seen, and the
#    daemon's log has the reference's line "Rate limit exceeded for 127.0.0.x" for both
#    addresses; `dmnode audit verify` holds on the stopped node.
set -uo pipefail
dmnode=${1:?usage: api_ratelimit.sh path/to/dmnode}
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d "${DM_TEST_TMP:-/tmp}/scenario-apirl.XXXXXX")
source "$here/lib/nodes.bash"
trap 'cleanup_nodes; rm -rf "$work"' EXIT
for t in curl jq; do
  command -v "$t" >/dev/null || { echo "1..0 # SKIP $t not installed"; exit 77; }
done

RATE=${DM_RL_RATE:-5} BURST=${DM_RL_BURST:-10} EXTRA=15 W=1.2
export DMNODE_API_EXTERNAL_RATE_PER_SEC=$RATE DMNODE_API_EXTERNAL_RATE_BURST=$BURST
make_node 1 || exit 1
start_node 1 || { bad "start"; finish; exit 1; }
dir=$(node_dir 1)
iport=$(jq -r .api_port "$dir.status")
eport=$(jq -r .external_api_port "$dir.status")
token=$(cat "$dir/admin.token")
iapi() {
  local m=$1 p=$2; shift 2
  curl -sS --noproxy '*' -m 30 -X "$m" -H "Authorization: Bearer $token" "$@" "http://127.0.0.1:$iport$p"
}
mkkey() { iapi POST /v1/apikeys -H 'Content-Type: application/json' --data-binary "{\"name\":\"$1\"}"; }
ka=$(mkkey "rl a"); KEY_A=$(jq -r .key <<<"$ka"); KID_A=$(jq -r .id <<<"$ka")
KEY_B=$(mkkey "rl b" | jq -r .key)
SID=$(iapi POST /v1/shares -H 'Content-Type: application/json' \
  --data-binary '{"recipient":"0x742d35Cc6634C0532925a3b844Bc454e4438f44e","amount":"1","data":""}' | jq -r .id)
{ [ "${#KEY_A}" -eq 47 ] && [ "${#KEY_B}" -eq 47 ] && [ "${#SID}" -eq 64 ]; } &&
  ok "setup: two keys, one share; external limit $RATE/s burst $BURST" || { bad "setup"; finish; exit 1; }
metric() { iapi GET /metrics | awk -v n="$1{api=\"$2\"}" '$1 == n { print $2 }'; }
rl0=$(metric dmnode_api_rate_limited_total external)

now_ms() { date +%s%3N; }
total_429=0
# fire NAME COUNT PATH [curl args]: COUNT sequential requests on one keep-alive connection
# (one curl, URL globbing); per answer a line "STATUS RETRY_AFTER CODE" in $work/NAME.
# Sets t_start/t_end (ms), admitted (count of 200), refused (429), conns (connections used).
fire() {
  local name=$1 count=$2 path=$3; shift 3
  rm -rf "$work/b.$name"; mkdir -p "$work/b.$name"
  t_start=$(now_ms)
  curl -sS --noproxy '*' -m 60 "$@" -o "$work/b.$name/#1" \
    -w '%{http_code} %header{retry-after} %{num_connects}\n' \
    "http://127.0.0.1:$eport$path?n=[1-$count]" >"$work/$name.w" 2>"$work/$name.err"
  t_end=$(now_ms)
  : >"$work/$name"
  local i=1 code ra nc
  conns=0
  while read -r code ra nc; do
    [ -z "$nc" ] && { nc=$ra; ra=-; }
    conns=$((conns + nc))
    local ec; ec=$(sed -n 's/.*"code":"\([A-Z]*\)".*/\1/p' "$work/b.$name/$i" 2>/dev/null)
    printf '%s %s %s\n' "$code" "${ra:--}" "${ec:--}" >>"$work/$name"
    i=$((i + 1))
  done <"$work/$name.w"
  admitted=$(awk '$1 == 200' "$work/$name" | wc -l)
  refused=$(awk '$1 == 429' "$work/$name" | wc -l)
  total_429=$((total_429 + refused))
  local other; other=$(awk '$1 != 200 && $1 != 429 && $1 != 401' "$work/$name" | wc -l)
  [ "$other" -eq 0 ] || bad "$name: $other answers neither 200 nor 429: $(awk '$1 != 200 && $1 != 429' "$work/$name" | sort | uniq -c | head -3)"
  echo "# $name: $count requests in $((t_end - t_start)) ms on $conns connection(s): $admitted admitted, $refused refused"
}
# refill MS: the most tokens RATE can add in MS milliseconds (rounded up)
refill() { echo $(((RATE * $1 + 999) / 1000)); }
check_429s() { # NAME: every 429 has Retry-After >= 1 and code ERATELIMIT
  local badn; badn=$(awk '$1 == 429 && !($2 >= 1 && $3 == "ERATELIMIT")' "$work/$1" | wc -l)
  [ "$badn" -eq 0 ] && ok "$1: every 429 has Retry-After >= 1 and code ERATELIMIT" ||
    bad "$1: $badn 429s without Retry-After >= 1 / ERATELIMIT: $(awk '$1 == 429' "$work/$1" | head -2)"
}

# ---- burst with key A ----
fire burst_a $((BURST + EXTRA)) "/v1/shares/$SID" -H "X-API-Key: $KEY_A"
ta0=$t_start ta1=$t_end admitted_a=$admitted
[ "$conns" -eq 1 ] && ok "burst_a used one keep-alive connection" || bad "burst_a used $conns connections"
hi=$((BURST + $(refill $((t_end - t_start)))))
[ "$admitted" -ge "$BURST" ] && [ "$admitted" -le "$hi" ] &&
  ok "burst_a: $admitted admitted (burst $BURST, at most $hi with the refill during the send)" ||
  bad "burst_a: $admitted admitted, want $BURST..$hi"
first=$(head -n "$BURST" "$work/burst_a" | awk '$1 == 200' | wc -l)
[ "$first" -eq "$BURST" ] && ok "burst_a: the first $BURST answers admitted" || bad "burst_a: only $first of the first $BURST admitted"
[ "$refused" -ge $((BURST + EXTRA - hi)) ] && ok "burst_a: then $refused refused with 429" || bad "burst_a: $refused refused"
check_429s burst_a
ra_a=$(awk '$1 == 429 { print $2; exit }' "$work/burst_a")

# ---- an independent client ----
fire burst_b "$BURST" "/v1/shares/$SID" -H "Authorization: Bearer $KEY_B"
[ "$admitted" -eq "$BURST" ] && ok "key B unaffected by key A: all $BURST admitted" || bad "key B: $admitted of $BURST admitted"

# ---- recovery at the configured rate ----
# key A's bucket was empty at the end of burst_a (ta1) and has not been used since
now=$(now_ms); wait_ms=$(awk -v w="$W" 'BEGIN { printf "%d", w * 1000 }')
sleep "$(awk -v ms=$((ta1 + wait_ms - now)) 'BEGIN { printf "%.3f", (ms > 0 ? ms : 0) / 1000 }')"
fire recover_a $((BURST + 5)) "/v1/shares/$SID" -H "X-API-Key: $KEY_A"
# floor: the tokens surely back when the send began (less 50 ms of clock granularity);
# ceiling: burst_a and recover_a together took at most BURST plus the refill since burst_a
# began, plus one for granularity
lo=$((RATE * (t_start - ta1 - 50) / 1000)); [ "$lo" -gt "$BURST" ] && lo=$BURST
hi=$((BURST + $(refill $((t_end - ta0))) + 1 - admitted_a))
[ "$admitted" -ge "$lo" ] && [ "$admitted" -le "$hi" ] &&
  ok "recovery after $((t_start - ta1)) ms: $admitted admitted (rate $RATE/s: $lo..$hi)" ||
  bad "recovery after $((t_start - ta1)) ms: $admitted admitted, want $lo..$hi"
check_429s recover_a
ra=$(awk '$1 == 429 { print $2; exit }' "$work/recover_a")
if [ -n "$ra" ] && [ "$ra" != - ]; then
  sleep "$ra"
  c=$(curl -sS --noproxy '*' -m 30 -o /dev/null -w '%{http_code}' -H "X-API-Key: $KEY_A" "http://127.0.0.1:$eport/v1/shares/$SID")
  [ "$c" = 200 ] && ok "admitted again after Retry-After ($ra s)" || bad "after Retry-After $ra s: $c"
else
  bad "recover_a: no 429 with Retry-After (first burst said ${ra_a:-none})"
fi

# ---- unauthenticated clients, limited per address ----
fire anon_2 $((BURST + 5)) /v1/health --interface 127.0.0.2
hi=$((BURST + $(refill $((t_end - t_start)))))
[ "$admitted" -ge "$BURST" ] && [ "$admitted" -le "$hi" ] && [ "$refused" -ge 1 ] &&
  ok "no key, 127.0.0.2: $admitted admitted then $refused refused" ||
  bad "no key, 127.0.0.2: $admitted admitted (want $BURST..$hi), $refused refused"
check_429s anon_2
# at once, an invalid key from the same address: refused by that address's bucket (429)
# before its key is even judged; only tokens refilled since anon_2 began may let a few
# through to their 401
t_anon=$t_start
fire anon_2_badkey $((BURST + 5)) "/v1/shares/$SID" --interface 127.0.0.2 -H "X-API-Key: dmk_not_a_key"
n401=$(awk '$1 == 401' "$work/anon_2_badkey" | wc -l)
hi=$(($(refill $((t_end - t_anon))) + 1))
if [ "$admitted" -eq 0 ] && [ "$refused" -ge 1 ] && [ "$n401" -le "$hi" ] && [ $((n401 + refused)) -eq $((BURST + 5)) ]; then
  ok "an invalid key from 127.0.0.2 shares that address's bucket: $refused x 429, $n401 x 401 (refill allows $hi)"
else
  bad "invalid key from 127.0.0.2: $(cut -d' ' -f1 "$work/anon_2_badkey" | sort | uniq -c | tr '\n' ' ')"
fi
fire anon_3 "$BURST" /v1/health --interface 127.0.0.3
[ "$admitted" -eq "$BURST" ] && ok "no key, 127.0.0.3: its own bucket, all $BURST admitted" ||
  bad "no key, 127.0.0.3: $admitted of $BURST admitted"

# ---- the internal API has its own buckets ----
c=$(iapi GET /v1/status -o /dev/null -w '%{http_code}')
[ "$c" = 200 ] && ok "internal API unaffected" || bad "internal API: $c"

# ---- counted and audited ----
rl1=$(metric dmnode_api_rate_limited_total external)
[ $((rl1 - rl0)) -eq "$total_429" ] && ok "dmnode_api_rate_limited_total{api=\"external\"} +$((rl1 - rl0)) = the $total_429 429s seen" ||
  bad "rate_limited_total +$((rl1 - rl0)), 429s seen: $total_429"
stop_node 1
log="$dir.log"
grep -q -- "- security - WARNING - Rate limit exceeded for 127.0.0.1 (api key $KID_A)" "$log" &&
  ok "log: Rate limit exceeded for 127.0.0.1 (api key $KID_A)" || bad "no rate-limit line for key A in the log"
grep -q -- "- security - WARNING - Rate limit exceeded for 127.0.0.2 on external API" "$log" &&
  ok "log: Rate limit exceeded for 127.0.0.2" || bad "no rate-limit line for 127.0.0.2 in the log"
grep -q "Rate limit exceeded for 127.0.0.3" "$log" && bad "127.0.0.3 was never limited but is logged" ||
  ok "log: nothing for 127.0.0.3"
grep -qF -- "$KEY_A" "$log" && bad "key A in the log" || ok "no key in the log"
if "$dmnode" --config "$dir.toml" audit verify >"$work/verify" 2>&1; then
  ok "audit verify: $(head -1 "$work/verify")"
else
  bad "audit verify failed:"; sed 's/^/    /' "$work/verify"
fi
finish
