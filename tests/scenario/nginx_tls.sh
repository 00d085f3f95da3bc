#!/usr/bin/env bash
# Scenario: deploy/nginx/dmnode.conf, run by a real nginx (its own prefix under
# $DM_TEST_TMP, a self-signed certificate made on the fly, loopback ports), in front of a
# real dmnode's external API; driven over HTTPS with curl --cacert:
#   health, an authenticated share POST and GET through the proxy, 401 without or with a
#   wrong key, HSTS on answers and errors, HTTP/2, no version in Server; TLS 1.2 (with one
#   of the reference's ciphers) and 1.3 accepted, TLS 1.1 and other TLS 1.2 ciphers refused
#   (against a control server in the same nginx that allows them, so the client is shown
#   able to speak them); body limit (a 1 MiB share passes, one byte over the node's limit
#   gets the proxy's JSON 413 and nothing is stored); the plain HTTP port redirects; nginx's
#   own rate limit admits the burst of 20 then answers JSON 429 with Retry-After; a stopped
#   node gives a JSON 503.
# Exit 77 (ctest SKIP) only when nginx is not installed (scripts/setup.sh installs it).
# Bounded: every wait has a deadline, every curl a timeout; the EXIT trap stops nginx and
# the node.
set -uo pipefail
dmnode=${1:?usage: nginx_tls.sh path/to/dmnode}
here=$(cd "$(dirname "$0")" && pwd)
base=${DM_TEST_TMP:-/tmp}
mkdir -p "$base"
work=$(mktemp -d "$base/scenario-nginx.XXXXXX")
source "$here/lib/nodes.bash"
source "$here/lib/nginx.bash"
trap 'cleanup_nginx; cleanup_nodes; rm -rf "$work"' EXIT

if ! find_nginx; then
  echo "SKIP: nginx is not installed (scripts/setup.sh installs it)"
  exit 77
fi
for t in openssl curl jq; do
  command -v "$t" >/dev/null || { echo "not ok - $t is required"; exit 1; }
done

https_port=$((port_base + 150))
http_port=$((port_base + 151))
control_port=$((port_base + 152))
ext="127.0.0.1:$(ext_port 1)"
url="https://127.0.0.1:$https_port"
cert="$work/tls/cert.pem"
C=(curl -sS --noproxy '*' -m 20 --cacert "$cert")

# ---- the node: the node's own limiter lifted, so every 429 below is nginx's ----
export DMNODE_API_EXTERNAL_RATE_PER_SEC=1000000 DMNODE_API_EXTERNAL_RATE_BURST=1000000
make_node 1 || exit 1
start_node 1 || exit 1
key=$(api 1 /v1/apikeys -X POST -H 'Content-Type: application/json' -d '{"name":"nginx-tls"}' | jq -r '.key // empty')
[ -n "$key" ] && ok "API key created on the internal API" || { bad "no API key from POST /v1/apikeys"; finish; exit 1; }

# ---- nginx with the deploy file, plus a control server that allows old TLS ----
make_cert "$work/tls" || exit 1
if dmnode_site "$https_port" "$http_port" "$ext" "$cert" "$work/tls/key.pem" >"$work/site.conf"; then
  ok "deploy/nginx/dmnode.conf adapted to loopback ports"
else
  bad "deploy/nginx/dmnode.conf: a substitution found nothing"; finish; exit 1
fi
cat >>"$work/site.conf" <<CONF
# control: the same certificate, TLS 1.0-1.2 and every cipher allowed
server {
    listen 127.0.0.1:$control_port ssl;
    ssl_certificate $cert;
    ssl_certificate_key $work/tls/key.pem;
    ssl_protocols TLSv1 TLSv1.1 TLSv1.2;
    ssl_ciphers DEFAULT:@SECLEVEL=0;
    return 200 "control\n";
}
CONF
if start_nginx "$work/site.conf"; then ok "nginx -t accepts the config and nginx runs"; else bad "nginx did not start"; finish; exit 1; fi

# ---- health, headers, HTTP/2 ----
"${C[@]}" -D "$work/h" -o "$work/b" -w '%{http_code} %{http_version}\n' "$url/v1/health" >"$work/st"
read -r code ver <"$work/st"
[ "$code" = 200 ] && [ "$(jq -r .status "$work/b")" = ok ] && ok "GET /v1/health over HTTPS: 200 status ok" ||
  bad "health: $code $(cat "$work/b")"
[ "$ver" = 2 ] && ok "HTTP/2 negotiated" || bad "HTTP version $ver, want 2"
grep -qi '^strict-transport-security: max-age=63072000' "$work/h" && ok "HSTS max-age=63072000" ||
  bad "no HSTS header: $(cat "$work/h")"
grep -qi '^server: nginx\s*$' "$work/h" && ok "Server header without version (server_tokens off)" ||
  bad "Server header: $(grep -i '^server:' "$work/h")"

# ---- authentication through the proxy ----
body='{"recipient":"0x742d35Cc6634C0532925a3b844Bc454e4438f44e","amount":"1000","data":"aGVsbG8gdGhyb3VnaCBuZ2lueA=="}'
post() { "${C[@]}" -D "$work/h" -o "$work/b" -w '%{http_code}' -X POST -H 'Content-Type: application/json' "$@" "$url/v1/shares"; }
code=$(post -d "$body")
[ "$code" = 401 ] && [ "$(jq -r .error.code "$work/b")" = EAUTH ] && ok "POST without a key: 401 EAUTH through the proxy" ||
  bad "POST without key: $code $(cat "$work/b")"
grep -qi '^strict-transport-security:' "$work/h" && ok "HSTS also on an error answer" || bad "no HSTS on 401"
code=$(post -H "Authorization: Bearer ${key}x" -d "$body")
[ "$code" = 401 ] && ok "POST with a wrong key: 401" || bad "POST with a wrong key: $code"
stored0=$(stored 1)
code=$(post -H "Authorization: Bearer $key" -d "$body")
id=$(jq -r '.id // empty' "$work/b")
[ "$code" = 201 ] && [ ${#id} -eq 64 ] && ok "POST /v1/shares with a Bearer key: 201, id" || bad "POST with key: $code $(cat "$work/b")"
code=$("${C[@]}" -o "$work/b" -w '%{http_code}' -H "X-API-Key: $key" "$url/v1/shares/$id")
[ "$code" = 200 ] && [ "$(jq -r .data "$work/b")" = aGVsbG8gdGhyb3VnaCBuZ2lueA== ] && [ "$(jq -r .amount "$work/b")" = 1000 ] &&
  ok "GET /v1/shares/{id} with X-API-Key: the share back" || bad "GET share: $code $(head -c 300 "$work/b")"

# ---- TLS versions and ciphers ----
tls() { "${C[@]}" -o /dev/null -w '%{http_code}' "$@" 2>"$work/tls.err"; }
code=$(tls --tlsv1.1 --tls-max 1.1 --ciphers 'DEFAULT:@SECLEVEL=0' "https://127.0.0.1:$control_port/")
if [ "$code" = 200 ]; then
  ok "control: the client speaks TLS 1.1"
  code=$(tls --tlsv1.1 --tls-max 1.1 --ciphers 'DEFAULT:@SECLEVEL=0' "$url/v1/health")
  [ "$code" = 000 ] && grep -q "protocol version" "$work/tls.err" && ok "TLS 1.1 refused by the proxy" ||
    bad "TLS 1.1: $code $(cat "$work/tls.err")"
else
  bad "control server did not accept TLS 1.1 ($code $(cat "$work/tls.err")): the refusal would prove nothing"
fi
code=$("${C[@]}" -o /dev/null -w '%{http_code} %{ssl_verify_result}' --tlsv1.2 --tls-max 1.2 "$url/v1/health" 2>"$work/tls.err")
[ "$code" = "200 0" ] && ok "TLS 1.2 accepted, certificate verified" || bad "TLS 1.2: $code $(cat "$work/tls.err")"
code=$(tls --tlsv1.3 "$url/v1/health")
[ "$code" = 200 ] && ok "TLS 1.3 accepted" || bad "TLS 1.3: $code $(cat "$work/tls.err")"
cipher=$(openssl s_client -connect "127.0.0.1:$https_port" -tls1_2 -CAfile "$cert" </dev/null 2>/dev/null |
  sed -n 's/^ *Cipher *: *//p')
case $cipher in
  ECDHE-ECDSA-AES128-GCM-SHA256 | ECDHE-RSA-AES128-GCM-SHA256) ok "TLS 1.2 cipher is one of the reference's ($cipher)" ;;
  *) bad "TLS 1.2 cipher '$cipher'" ;;
esac
for c in ECDHE-ECDSA-AES256-GCM-SHA384 ECDHE-ECDSA-CHACHA20-POLY1305 ECDHE-ECDSA-AES128-SHA256; do
  ctl=$(tls --tlsv1.2 --tls-max 1.2 --ciphers "$c" "https://127.0.0.1:$control_port/")
  code=$(tls --tlsv1.2 --tls-max 1.2 --ciphers "$c" "$url/v1/health")
  [ "$ctl" = 200 ] && [ "$code" = 000 ] && ok "TLS 1.2 with $c refused (control accepts it)" ||
    bad "TLS 1.2 with $c: proxy $code, control $ctl"
done

# ---- body size: the node's limit, enforced by nginx too ----
head -c 1048576 /dev/urandom | base64 -w0 >"$work/big.b64"
printf '{"recipient":"0x742d35Cc6634C0532925a3b844Bc454e4438f44e","amount":"7","data":"%s"}' "$(cat "$work/big.b64")" >"$work/big.json"
code=$(post -H "X-API-Key: $key" --data-binary "@$work/big.json")
[ "$code" = 201 ] && ok "a 1 MiB share ($(stat -c %s "$work/big.json") bytes of JSON) passes the proxy: 201" ||
  bad "1 MiB share: $code $(head -c 300 "$work/b")"
big_id=$(jq -r '.id // empty' "$work/b")
code=$("${C[@]}" -o "$work/b" -w '%{http_code}' -H "X-API-Key: $key" "$url/v1/shares/$big_id")
[ "$code" = 200 ] && [ "$(jq -r .data "$work/b")" = "$(cat "$work/big.b64")" ] &&
  ok "the 1 MiB share read back through the proxy" || bad "1 MiB GET: $code $(head -c 300 "$work/b")"
limit=$(sed -n 's/^ *client_max_body_size \([0-9]*\);.*/\1/p' "$here/../../deploy/nginx/dmnode.conf")
n1=$(stored 1)
head -c $((limit + 1)) /dev/zero | tr '\0' 'A' >"$work/over"
code=$(post -H "X-API-Key: $key" --data-binary "@$work/over")
[ "$code" = 413 ] && [ "$(jq -r .error.code "$work/b")" = ETOOBIG ] &&
  ok "a body of client_max_body_size+1 ($((limit + 1)) bytes): JSON 413 from the proxy" || bad "oversize body: $code $(head -c 300 "$work/b")"
[ "$(stored 1)" = "$n1" ] && [ "$n1" = $((stored0 + 2)) ] && ok "exactly the two accepted shares stored" ||
  bad "stored: before $stored0, after the shares $n1, now $(stored 1)"

# ---- plain HTTP redirects ----
code=$(curl -sS --noproxy '*' -m 10 -o /dev/null -D "$work/h" -w '%{http_code}' "http://127.0.0.1:$http_port/v1/health?x=1")
loc=$(sed -n 's/^[Ll]ocation: *\([^[:space:]]*\).*/\1/p' "$work/h")
[ "$code" = 301 ] && [ "$loc" = "$url/v1/health?x=1" ] && ok "HTTP port: 301 to $loc" || bad "HTTP: $code '$loc'"
code=$("${C[@]}" -L -o /dev/null -w '%{http_code}' "http://127.0.0.1:$http_port/v1/health")
[ "$code" = 200 ] && ok "following the redirect reaches the node over HTTPS" || bad "redirect followed: $code"

# ---- nginx's rate limit: 10 r/s per address, burst 20, nodelay ----
sleep 2.5 # the bucket drains at 10 r/s: empty again after 2 s
n=60 args=()
for i in $(seq 1 $n); do args+=(-o "$work/burst.$i" "$url/v1/health"); done
t0=$(date +%s%N)
# one connection, requests back to back; headers of all answers in one file
"${C[@]}" -m 60 -D "$work/burst.h" -w '%{http_code}\n' "${args[@]}" >"$work/codes"
t1=$(date +%s%N)
admitted=$(grep -c '^200$' "$work/codes"); limited=$(grep -c '^429$' "$work/codes")
# 1 + burst at once, plus what refills at 10/s while the requests ran
most=$((21 + (t1 - t0) / 100000000 + 1))
[ $((admitted + limited)) -eq $n ] && [ "$admitted" -ge 21 ] && [ "$admitted" -le "$most" ] &&
  ok "rate limit: $admitted of $n admitted in $(((t1 - t0) / 1000000)) ms (21..$most), $limited answered 429" ||
  bad "rate limit: $admitted admitted, $limited limited of $n: $(sort "$work/codes" | uniq -c | tr '\n' ' ')"
last429=$(grep -n '^429$' "$work/codes" | tail -1 | cut -d: -f1)
[ -n "$last429" ] && [ "$(jq -r .error.code "$work/burst.$last429")" = ERATELIMIT ] &&
  [ "$(grep -ci '^retry-after: 1' "$work/burst.h")" -eq "$limited" ] &&
  [ "$(grep -ci '^strict-transport-security:' "$work/burst.h")" -eq "$n" ] &&
  ok "each 429 is JSON ERATELIMIT with Retry-After; HSTS on all $n answers" ||
  bad "429 answers: $(cat "$work/burst.${last429:-1}") $(grep -ci '^retry-after' "$work/burst.h") Retry-After"
grep -q 'limiting requests' "$nginx_prefix/logs/error.log" && ok "nginx logged the rejections" ||
  bad "no 'limiting requests' in nginx's error log"

# ---- the node gone: JSON 503 ----
stop_node 1
sleep 2.5
code=$("${C[@]}" -o "$work/b" -w '%{http_code}' "$url/v1/health")
[ "$code" = 503 ] && [ "$(jq -r .error.code "$work/b")" = ECONN ] && ok "node stopped: JSON 503 ECONN from the proxy" ||
  bad "node stopped: $code $(cat "$work/b")"

stop_nginx
finish
