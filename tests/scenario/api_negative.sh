#!/usr/bin/env bash
# Scenario: the table-driven negative test of both HTTP APIs (issue 5, Tests). One real
# dmnode; API keys made through POST /v1/apikeys on the internal API: one valid, one that
# expires a few seconds later (and is used after that), one revoked with DELETE. Every row
# of tests/scenario/api_negative.table is sent with curl (or raw over bash /dev/tcp) and
# must answer its status with a JSON body (Content-Type application/json, nosniff) whose
# error code is the expected one; 401s carry WWW-Authenticate, 405s Allow; no row reflects
# its injection markers unescaped. Slow clients run meanwhile: a half-sent head and a silent
# connection are cut off after the 10 s head timeout, a trickling body after the 30 s body
# timeout (408 ETIMEDOUT). Afterwards the state holds only the deliberate submissions:
# shares.stored, the API-key listing, the auth-failure metric, no secret in the daemon's
# log, and `dmnode audit verify` on the stopped node.
# The rate limits are lifted for this test (api_ratelimit.sh tests them). DM_API_TABLE names
# another table (e.g. a few rows while debugging).
set -uo pipefail
dmnode=${1:?usage: api_negative.sh path/to/dmnode}
here=$(cd "$(dirname "$0")" && pwd)
table=${DM_API_TABLE:-$here/api_negative.table}
work=$(mktemp -d "${DM_TEST_TMP:-/tmp}/scenario-apineg.XXXXXX")
source "$here/lib/nodes.bash"
bg_pids=()
trap 'for p in "${bg_pids[@]}"; do kill "$p" 2>/dev/null; done; cleanup_nodes; rm -rf "$work"' EXIT

for t in curl jq base64; do
  command -v "$t" >/dev/null || { echo "1..0 # SKIP $t not installed"; exit 77; }
done

export DMNODE_API_INTERNAL_RATE_PER_SEC=100000 DMNODE_API_INTERNAL_RATE_BURST=100000
export DMNODE_API_EXTERNAL_RATE_PER_SEC=100000 DMNODE_API_EXTERNAL_RATE_BURST=100000
make_node 1 || exit 1
start_node 1 || { bad "start"; finish; exit 1; }
dir=$(node_dir 1)
iport=$(jq -r .api_port "$dir.status")
eport=$(jq -r .external_api_port "$dir.status")
token=$(cat "$dir/admin.token")
[ "$eport" -gt 0 ] 2>/dev/null && ok "external API on port $eport" || { bad "no external API"; finish; exit 1; }

# iapi METHOD PATH [curl args]: the internal API as the admin
iapi() {
  local m=$1 p=$2; shift 2
  curl -sS --noproxy '*' -m 30 -X "$m" -H "Authorization: Bearer $token" "$@" "http://127.0.0.1:$iport$p"
}
mkkey() { # NAME [EXPIRES_AT]: create a key, print the 201 body
  local body="{\"name\":\"$1\"${2:+,\"expires_at\":$2}}"
  iapi POST /v1/apikeys -H 'Content-Type: application/json' --data-binary "$body"
}
# ecode KEY-HEADER PATH: status of an external GET with that header
ecode() { curl -sS --noproxy '*' -m 30 -o /dev/null -w '%{http_code}' -H "$1" "http://127.0.0.1:$eport$2"; }

# ---- setup: a stored share, three keys ----
ADDR=0x742d35Cc6634C0532925a3b844Bc454e4438f44e
SID=$(iapi POST /v1/shares -H 'Content-Type: application/json' \
  --data-binary "{\"recipient\":\"$ADDR\",\"amount\":\"1\",\"data\":\"c2V0dXA=\"}" | jq -r .id)
[ "${#SID}" -eq 64 ] && ok "setup share $SID" || { bad "setup share: '$SID'"; finish; exit 1; }

k=$(mkkey "neg valid"); KEY=$(jq -r .key <<<"$k"); KID=$(jq -r .id <<<"$k")
exp_at=$(($(date +%s) + 3))
k=$(mkkey "neg expiring" "$exp_at"); KEY_EXP=$(jq -r .key <<<"$k")
k=$(mkkey "neg revoked"); KEY_REV=$(jq -r .key <<<"$k"); KID_REVOKED=$(jq -r .id <<<"$k")
for v in "$KEY" "$KEY_EXP" "$KEY_REV"; do
  [ "${#v}" -eq 47 ] || { bad "key creation: '$v'"; finish; exit 1; }
done
ok "three API keys created"
# positive controls: each key works before it expires or is revoked
for v in "$KEY" "$KEY_EXP" "$KEY_REV"; do
  c=$(ecode "Authorization: Bearer $v" "/v1/shares/$SID")
  [ "$c" = 200 ] && ok "key ${v:0:8} works at first" || bad "key ${v:0:8} refused at first: $c"
done
c=$(iapi DELETE "/v1/apikeys/$KID_REVOKED" -o /dev/null -w '%{http_code}')
[ "$c" = 200 ] && ok "key revoked" || bad "revoke: $c"
c=$(ecode "Authorization: Bearer $KEY_REV" "/v1/shares/$SID")
[ "$c" = 401 ] && ok "revocation effective at once" || bad "revoked key: $c"

# ---- slow clients, in the background while the table runs ----
now_ms() { date +%s%3N; }
# slow_client NAME PRELUDE TRICKLE_SECONDS: connect, send PRELUDE, then one byte a second;
# records how long after the prelude the server answered/closed, and what it sent
slow_client() {
  local name=$1 prelude=$2 trickle=$3
  (
    exec 3<>"/dev/tcp/127.0.0.1/$eport" || exit 1
    printf "$prelude" >&3
    t0=$(now_ms)
    if [ "$trickle" -gt 0 ]; then
      (for _ in $(seq 1 "$trickle"); do sleep 1; printf a >&3 2>/dev/null || exit 0; done) &
    fi
    timeout 60 cat <&3 >"$work/slow.$name.out"
    echo $(($(now_ms) - t0)) >"$work/slow.$name.ms"
  ) 2>/dev/null &
  bg_pids+=($!)
}
slow_client head 'GET /v1/health HTTP/1.1\r\nHost: x\r\nX-Slow: ' 0
slow_client silent '' 0
slow_client body "POST /v1/shares HTTP/1.1\r\nHost: x\r\nX-API-Key: $KEY\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{" 45

# the expiring key is used only once it has expired
while [ "$(date +%s)" -le "$exp_at" ]; do sleep 0.2; done
c=$(ecode "X-API-Key: $KEY_EXP" "/v1/shares/$SID")
[ "$c" = 401 ] && ok "key refused once expired" || bad "expired key: $c"

metric() { # NAME API: a counter from /metrics
  iapi GET /metrics | awk -v n="$1{api=\"$2\"}" '$1 == n { print $2 }'
}
stored0=$(iapi GET /v1/status | jq .shares.stored)
keys0=$(iapi GET /v1/apikeys | jq '.api_keys | length')
af_int0=$(metric dmnode_api_auth_failures_total internal)
af_ext0=$(metric dmnode_api_auth_failures_total external)

# ---- body generators (write the body to $1) ----
json_share() { printf '{"recipient":"%s","amount":"%s","data":"%s"}' "$ADDR" "$1" "$2"; }
gen_huge_amount() { json_share "1$(printf '0%.0s' $(seq 1 1000))" "" >"$1"; }
gen_data_1mib() { json_share 8 "$(head -c 1048576 /dev/zero | base64 -w0)" >"$1"; }
gen_data_over() { json_share 9 "$(head -c 1048577 /dev/zero | base64 -w0)" >"$1"; }
gen_raw_nul() { printf '{"recipient":"%s","amount":"1","data":"A\0A="}' "$ADDR" >"$1"; }
gen_bad_utf8() { printf '{"recipient":"%s","amount":"1","data":"\xff\xfe"}' "$ADDR" >"$1"; }
gen_bom() { printf '\xef\xbb\xbf{"recipient":"%s","amount":"1","data":""}' "$ADDR" >"$1"; }
gen_deep() { { printf '{"data":'; head -c 100000 /dev/zero | tr '\0' '['; } >"$1"; }
gen_big_body() { head -c 2000000 /dev/zero | tr '\0' ' ' >"$1"; }
gen_big_body_chunked() { gen_big_body "$1"; }

FUTURE=$(($(date +%s) + 86400))
NINES30=999999999999999999999999999999
subst() { # TEXT: the text with its placeholders replaced, in $S (no subshell: rows are many)
  S=$1
  S=${S//\{ADDR\}/$ADDR}; S=${S//\{SID\}/$SID}; S=${S//\{SID_UP\}/${SID^^}}
  S=${S//\{KID\}/$KID}; S=${S//\{KID_REVOKED\}/$KID_REVOKED}; S=${S//\{KEY\}/$KEY}
  S=${S//\{TOKEN\}/$token}; S=${S//\{NINES30\}/$NINES30}; S=${S//\{FUTURE\}/$FUTURE}
}

# auth_args API KIND: the credential headers for a row, into the array `args`
auth_args() {
  local api=$1 kind=$2
  [ "$kind" = auth ] && { [ "$api" = internal ] && kind=admin || kind=key; }
  case $kind in
    none) ;;
    admin) args+=(-H "Authorization: Bearer $token") ;;
    xadmin) args+=(-H "X-API-Key: $token") ;;
    key) args+=(-H "Authorization: Bearer $KEY") ;;
    xkey) args+=(-H "X-API-Key: $KEY") ;;
    lkey) args+=(-H "Authorization: bearer $KEY") ;;
    expired) args+=(-H "Authorization: Bearer $KEY_EXP") ;;
    xexpired) args+=(-H "X-API-Key: $KEY_EXP") ;;
    revoked) args+=(-H "Authorization: Bearer $KEY_REV") ;;
    xrevoked) args+=(-H "X-API-Key: $KEY_REV") ;;
    unknown) args+=(-H "Authorization: Bearer dmk_$(head -c 32 /dev/urandom | base64 -w0 | tr '+/' '-_' | tr -d '=')") ;;
    short) args+=(-H "Authorization: Bearer dmk_abc") ;;
    empty-bearer) args+=(-H "Authorization: Bearer") ;;
    bad-scheme) args+=(-H "Authorization: Basic $(printf 'admin:%s' "$KEY" | base64 -w0)") ;;
    token-scheme) args+=(-H "Authorization: Token $KEY") ;;
    no-scheme) args+=(-H "Authorization: $KEY") ;;
    sqli) args+=(-H "Authorization: Bearer ' OR '1'='1") ;;
    longkey) args+=(-H "Authorization: Bearer $(head -c 8192 /dev/zero | tr '\0' A)") ;;
    dup-auth) auth_args "$api" auth; args+=(-H "Authorization: Bearer x") ;;
    many-headers) auth_args "$api" auth; for h in $(seq 1 70); do args+=(-H "X-H$h: v"); done ;;
    big-head) auth_args "$api" auth; args+=(-H "X-Big: $(head -c 17000 /dev/zero | tr '\0' b)") ;;
    *) echo "table: unknown auth kind '$kind'" >&2; return 1 ;;
  esac
}

# Injection markers that must never come back unescaped (in $body or $head).
shopt -s nocasematch
reflected() {
  [[ $body =~ [\<]script|[\<]img|DROP\ TABLE|etc/passwd ]] || [[ $head =~ (^|$'\n')(set-cookie|x-injected): ]]
}

n_rows=0 n_401_int=0 n_401_ext=0 want_shares=0 want_keys=0
# check_row NAME API STATUS CODE GOT [METHOD]: the response in $work/hdr (final head) and $work/resp.
# Plain bash matching, few processes: under load, forks dominate the run time.
check_row() {
  local name=$1 api=$2 status=$3 code=$4 got=$5 method=${6:-} why="" head="" body=""
  IFS= read -r -d '' head <"$work/hdr"
  IFS= read -r -d '' body <"$work/resp"
  local nl=$'\n'
  [ "$got" = 401 ] && { [ "$api" = internal ] && n_401_int=$((n_401_int + 1)) || n_401_ext=$((n_401_ext + 1)); }
  [ "$got" = "$status" ] || why="status $got, want $status"
  [[ $head =~ $nl"content-type: application/json" ]] || why="$why; not application/json"
  [[ $head =~ $nl"x-content-type-options: nosniff" ]] || why="$why; no nosniff"
  if [ "$method" = HEAD ]; then
    # curl -I writes the head to the output file: anything JSON there came as a body
    [[ $body != *'{'* ]] || why="$why; HEAD answered with a body"
  elif [ "$code" != - ]; then
    local c=none
    [[ $body =~ ^\{\"error\":\{\"code\":\"([A-Z]+)\" ]] && c=${BASH_REMATCH[1]}
    [ "$c" = "$code" ] || why="$why; code $c, want $code"
  else
    jq -e . "$work/resp" >/dev/null 2>&1 || why="$why; body not JSON"
  fi
  [ "$got" = 405 ] && ! [[ $head =~ $nl"allow: " ]] && why="$why; 405 without Allow"
  [ "$got" = 401 ] && ! [[ $head =~ $nl"www-authenticate: bearer" ]] && why="$why; 401 without WWW-Authenticate"
  reflected && why="$why; injection marker reflected"
  if [ -z "$why" ]; then
    ok "$name [$api] -> $got${code:+ $code}"
  else
    bad "$name [$api]: ${why#; }"
    printf '    %s\n' "${body:0:400}"
  fi
}

run_curl_row() { # NAME API METHOD PATH AUTH CTYPE BODY STATUS CODE
  local name=$1 api=$2 method=$3 path=$4 auth=$5 ctype=$6 body=$7 status=$8 code=$9
  local port; [ "$api" = internal ] && port=$iport || port=$eport
  args=(-sS --noproxy '*' -m 30 --path-as-is -o "$work/resp" -D "$work/hdr.all" -w '%{http_code} %{time_total}')
  [ "$method" = HEAD ] && args+=(-I) || args+=(-X "$method") # -X HEAD would wait for a body
  auth_args "$api" "$auth" || return
  case $ctype in
    json) args+=(-H 'Content-Type: application/json') ;;
    none) args+=(-H 'Content-Type:') ;;
    *) args+=(-H "Content-Type: $ctype") ;;
  esac
  case $body in
    -) ;;
    '<empty>') args+=(--data-binary '') ;;
    @*) "gen_${body#@}" "$work/body" || return
        [[ $body == *_chunked ]] && args+=(-H 'Transfer-Encoding: chunked')
        args+=(--data-binary "@$work/body") ;;
    *) subst "$body"; printf '%s' "$S" >"$work/body"; args+=(--data-binary "@$work/body") ;;
  esac
  : >"$work/resp"
  subst "$path"
  local got secs; read -r got secs < <(curl "${args[@]}" "http://127.0.0.1:$port$S" 2>"$work/curl.err")
  [ "${secs%.*}" -ge 2 ] && echo "# slow row: $name [$api] took $secs s; $(cat "$work/curl.err")"
  # the final head only (a 100 Continue may precede it)
  local all=""; IFS= read -r -d '' all <"$work/hdr.all"
  all=$'\n'${all//$'\r'/}
  printf 'HTTP/%s' "${all##*$'\n'HTTP/}" >"$work/hdr"
  check_row "$name" "$api" "$status" "$code" "$got" "$method"
}

run_raw_row() { # NAME API REQUEST STATUS CODE
  local name=$1 api=$2 req=$3 status=$4 code=$5
  local port; [ "$api" = internal ] && port=$iport || port=$eport
  : >"$work/raw"
  (
    exec 3<>"/dev/tcp/127.0.0.1/$port" || exit 1
    # shellcheck disable=SC2059
    subst "$req"
    printf "$S" >&3
    timeout 5 cat <&3 >"$work/raw"
  ) 2>/dev/null
  # split the first response into head and body
  tr -d '\r' <"$work/raw" | awk 'body{print; next} /^$/{body=1; next} {print > "/dev/stderr"}' \
    2>"$work/hdr" >"$work/resp"
  local got; got=$(head -1 "$work/hdr" | awk '{print $2}')
  # a keep-alive answer has no end: cut the body at its Content-Length
  local cl; cl=$(awk -F': ' 'tolower($1)=="content-length"{print $2}' "$work/hdr" | head -1)
  [ -n "$cl" ] && head -c "$cl" "$work/resp" >"$work/resp.cut" && mv "$work/resp.cut" "$work/resp"
  check_row "$name" "$api" "$status" "$code" "${got:-none}"
}

trim() { # NAME: strip blanks around the variable's value, in place
  local s=${!1}; s=${s#"${s%%[![:space:]]*}"}; printf -v "$1" '%s' "${s%"${s##*[![:space:]]}"}"
}

# ---- the table ----
while IFS= read -r line || [ -n "$line" ]; do
  case $line in '#'* | '') continue ;; esac
  IFS='|' read -r -a f <<<"$line"
  [ "${#f[@]}" -eq 9 ] || { bad "table row has ${#f[@]} fields: $line"; continue; }
  for i in "${!f[@]}"; do trim "f[$i]"; done
  name=${f[0]} api=${f[1]} method=${f[2]} path=${f[3]} auth=${f[4]} ctype=${f[5]} body=${f[6]} status=${f[7]} code=${f[8]}
  case $api in both) apis="internal external" ;; internal | external) apis=$api ;; *) bad "bad api '$api'"; continue ;; esac
  for a in $apis; do
    n_rows=$((n_rows + 1))
    if [ "$method" = RAW ]; then
      run_raw_row "$name" "$a" "$body" "$status" "$code"
    else
      run_curl_row "$name" "$a" "$method" "$path" "$auth" "$ctype" "$body" "$status" "$code"
    fi
    if [ "$status" = 201 ] && [ "$method" = POST ]; then
      [ "$path" = /v1/shares ] && want_shares=$((want_shares + 1))
      [ "$path" = /v1/apikeys ] && want_keys=$((want_keys + 1))
    fi
  done
done <"$table"
echo "# $n_rows requests from $(basename "$table")"

# ---- slow clients ----
for p in "${bg_pids[@]}"; do wait "$p" 2>/dev/null; done
bg_pids=()
slow_check() { # NAME MIN_MS MAX_MS WANT (408 | eof)
  local name=$1 lo=$2 hi=$3 want=$4 ms out
  ms=$(cat "$work/slow.$name.ms" 2>/dev/null || echo -1)
  out=$(tr -d '\r' <"$work/slow.$name.out" 2>/dev/null)
  if [ "$want" = eof ]; then
    [ -z "$out" ] || { bad "slow $name: got a response: ${out:0:80}"; return; }
  else
    { head -1 <<<"$out" | grep -q "^HTTP/1.1 408" && grep -q '"ETIMEDOUT"' <<<"$out"; } ||
      { bad "slow $name: not a 408 ETIMEDOUT: ${out:0:120}"; return; }
  fi
  if [ "$ms" -ge "$lo" ] && [ "$ms" -le "$hi" ]; then
    ok "slow $name: cut off after $ms ms ($want)"
  else
    bad "slow $name: cut off after $ms ms, want $lo..$hi"
  fi
}
slow_check head 9000 14000 408
slow_check silent 9000 14000 eof
slow_check body 29000 36000 408

# ---- nothing stored but the deliberate submissions ----
stored1=$(iapi GET /v1/status | jq .shares.stored)
[ "$stored1" -eq $((stored0 + want_shares)) ] &&
  ok "shares.stored $stored0 -> $stored1: exactly the $want_shares deliberate submissions" ||
  bad "shares.stored $stored0 -> $stored1, want +$want_shares"
iapi GET /v1/apikeys >"$work/keys.json"
keys1=$(jq '.api_keys | length' "$work/keys.json")
[ "$keys1" -eq $((keys0 + want_keys)) ] && ok "API keys $keys0 -> $keys1 (+$want_keys deliberate)" ||
  bad "API keys $keys0 -> $keys1, want +$want_keys"
names=$(jq -r '[.api_keys[].name] | sort | join(",")' "$work/keys.json")
[[ ",$names," == *",neg expiring,"* && ",$names," == *",neg revoked,"* && ",$names," == *",neg valid,"* ]] && ok "key names: $names" ||
  bad "key names: $names"
[ "$(jq -r '.api_keys[] | select(.name=="neg revoked") | .revoked_at | type' "$work/keys.json")" = number ] &&
  ok "revoked key listed as revoked" || bad "revoked key not listed as revoked"
[ "$(jq -r '.api_keys[] | select(.name=="neg valid") | .revoked_at | type' "$work/keys.json")" = null ] &&
  ok "valid key not revoked" || bad "valid key revoked"
grep -q 'dmk_[A-Za-z0-9_-]\{43\}' "$work/keys.json" && bad "listing shows a key" || ok "listing shows no key"
af_int1=$(metric dmnode_api_auth_failures_total internal)
af_ext1=$(metric dmnode_api_auth_failures_total external)
[ $((af_int1 - af_int0)) -eq "$n_401_int" ] && [ $((af_ext1 - af_ext0)) -eq "$n_401_ext" ] &&
  ok "auth failures counted: internal +$n_401_int, external +$n_401_ext" ||
  bad "auth failures metric internal +$((af_int1 - af_int0)) (401s: $n_401_int), external +$((af_ext1 - af_ext0)) (401s: $n_401_ext)"
rl=$(metric dmnode_api_rate_limited_total external)
[ "${rl:-x}" = 0 ] && ok "no request was rate-limited (limits lifted)" || bad "rate limited: $rl"

stop_node 1
log="$dir.log"
grep -q "Failed authentication on external API" "$log" && ok "auth failures logged" || bad "no auth failure line in the log"
leak=0
for s in "$token" "$KEY" "$KEY_EXP" "$KEY_REV"; do grep -qF -- "$s" "$log" "$dir.status" && leak=1; done
[ "$leak" = 0 ] && ok "no key or token in the daemon's output" || bad "a secret appears in the daemon's output"
if "$dmnode" --config "$dir.toml" audit verify >"$work/verify" 2>&1; then
  ok "audit verify: $(head -1 "$work/verify")"
else
  bad "audit verify failed:"; sed 's/^/    /' "$work/verify"
fi
finish
