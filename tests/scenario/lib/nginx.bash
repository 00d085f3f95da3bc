# Helpers for scenario tests and benches that run a real nginx without touching the
# system's: its own prefix under $work/nginx (config, pid file, logs, temp dirs), master
# process with `daemon off` in the background, stopped by its pid with a deadline.
# Source it after setting `work` (a fresh directory); the caller's EXIT trap calls
# cleanup_nginx. Ports above 1024, so no privilege is needed; run as root, the workers
# drop to nobody as in production.
#
#   find_nginx                          0 if an nginx binary exists; sets nginx_bin
#   make_cert DIR                       self-signed P-256 certificate for localhost and
#                                       127.0.0.1: DIR/cert.pem, DIR/key.pem
#   dmnode_site HTTPS HTTP UPSTREAM CERT KEY
#                                       prints deploy/nginx/dmnode.conf with the ports, the
#                                       certificate, the upstream and the redirect target
#                                       substituted (IPv6 listens dropped); fails when a
#                                       substitution matches nothing
#   start_nginx FILE                    runs nginx with FILE as the content of http{}
#                                       (nginx -t first); waits for the pid file
#   stop_nginx / cleanup_nginx          QUIT, then TERM, then KILL of the master and its workers

nginx_dm_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
nginx_bin=""
nginx_pid=""
nginx_prefix=""

find_nginx() {
  nginx_bin=${DM_NGINX:-$(command -v nginx 2>/dev/null || true)}
  [ -n "$nginx_bin" ] || for p in /usr/sbin/nginx /usr/local/sbin/nginx /usr/local/nginx/sbin/nginx; do
    [ -x "$p" ] && { nginx_bin=$p; break; }
  done
  [ -n "$nginx_bin" ] && [ -x "$nginx_bin" ]
}

make_cert() {
  local dir=$1
  mkdir -p "$dir"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj "/CN=localhost" -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -keyout "$dir/key.pem" -out "$dir/cert.pem" 2>"$dir/openssl.err" || { cat "$dir/openssl.err"; return 1; }
  chmod 600 "$dir/key.pem"
}

# _subst TEXT FROM TO: replace every FROM (fixed string) in TEXT; fail if there is none
_nginx_subst() {
  local text=$1 from=$2 to=$3
  case $text in *"$from"*) ;; *) echo "dmnode_site: '$from' not found in deploy/nginx/dmnode.conf" >&2; return 1 ;; esac
  printf '%s' "${text//"$from"/"$to"}"
}

dmnode_site() {
  local https=$1 http=$2 upstream=$3 cert=$4 key=$5 c
  c=$(grep -v '^[[:space:]]*listen \[::\]:' "$nginx_dm_root/deploy/nginx/dmnode.conf") || return 1
  c=$(_nginx_subst "$c" "listen 443 ssl http2;" "listen 127.0.0.1:$https ssl http2;") || return 1
  c=$(_nginx_subst "$c" "listen 80;" "listen 127.0.0.1:$http;") || return 1
  c=$(_nginx_subst "$c" 'return 301 https://$host$request_uri;' "return 301 https://\$host:$https\$request_uri;") || return 1
  c=$(_nginx_subst "$c" "server 127.0.0.1:8081;" "server $upstream;") || return 1
  c=$(_nginx_subst "$c" "/etc/ssl/certs/datamgmt.crt;" "$cert;") || return 1
  c=$(_nginx_subst "$c" "/etc/ssl/private/datamgmt.key;" "$key;") || return 1
  printf '%s\n' "$c"
}

start_nginx() {
  local http_conf=$1
  nginx_prefix="$work/nginx"
  mkdir -p "$nginx_prefix/logs" "$nginx_prefix/tmp"
  local user_line=""
  # as root the workers must drop privileges (nginx's default group "nobody" is not
  # Debian's); they need no file access: the master opens logs and keys, and the site
  # keeps bodies in memory (no temp files)
  [ "$(id -u)" -eq 0 ] && user_line="user nobody $(id -gn nobody 2>/dev/null || echo nogroup);"
  cat >"$nginx_prefix/nginx.conf" <<CONF
$user_line
worker_processes ${DM_NGINX_WORKERS:-1};
pid $nginx_prefix/nginx.pid;
error_log $nginx_prefix/logs/error.log ${DM_NGINX_LOG_LEVEL:-warn};
events { worker_connections 1024; }
http {
    default_type application/octet-stream;
    access_log ${DM_NGINX_ACCESS_LOG:-$nginx_prefix/logs/access.log};
    client_body_temp_path $nginx_prefix/tmp/body;
    proxy_temp_path $nginx_prefix/tmp/proxy;
    fastcgi_temp_path $nginx_prefix/tmp/fastcgi;
    uwsgi_temp_path $nginx_prefix/tmp/uwsgi;
    scgi_temp_path $nginx_prefix/tmp/scgi;
    include $http_conf;
}
CONF
  "$nginx_bin" -t -p "$nginx_prefix" -e "$nginx_prefix/logs/error.log" -c "$nginx_prefix/nginx.conf" \
    >"$nginx_prefix/test.out" 2>&1 || { cat "$nginx_prefix/test.out"; return 1; }
  rm -f "$nginx_prefix/nginx.pid"
  "$nginx_bin" -p "$nginx_prefix" -e "$nginx_prefix/logs/error.log" -c "$nginx_prefix/nginx.conf" \
    -g "daemon off;" >>"$nginx_prefix/logs/stdout.log" 2>&1 &
  nginx_pid=$!
  # the master writes its pid file after it has bound every listener
  for _ in $(seq 1 200); do
    [ "$(cat "$nginx_prefix/nginx.pid" 2>/dev/null)" = "$nginx_pid" ] && return 0
    kill -0 "$nginx_pid" 2>/dev/null || { echo "nginx died:"; tail -20 "$nginx_prefix/logs/error.log"; nginx_pid=""; return 1; }
    sleep 0.05
  done
  echo "nginx: no pid file within 10 s"; tail -20 "$nginx_prefix/logs/error.log"; return 1
}

stop_nginx() {
  [ -n "$nginx_pid" ] || return 0
  local pid=$nginx_pid sig kids
  kids=$(pgrep -P "$pid" 2>/dev/null || true)
  for sig in QUIT TERM KILL; do
    kill -"$sig" "$pid" 2>/dev/null || break
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break 2; sleep 0.05; done
  done
  # workers of a killed master would keep serving: end them by their ids
  for k in $kids; do kill -9 "$k" 2>/dev/null || true; done
  wait "$pid" 2>/dev/null || true
  nginx_pid=""
}

cleanup_nginx() { stop_nginx; return 0; }
