#!/usr/bin/env bash
# bench/api: the external API under load from wrk (Debian's), one dmnode daemon on
# loopback with the per-client limiter lifted, keep-alive connections:
#   post_share   authenticated POST /v1/shares, JSON bodies with S random bytes of data
#                (256 distinct bodies in turn), each one signed, sealed and committed
#   get_share    authenticated GET /v1/shares/{id} of a share of S bytes
#   health       GET /v1/health (no auth, no storage): the node's HTTP layer alone
#   nginx_static the bound, in the same run: nginx (one worker, access log off) answering
#                a static 200 JSON on loopback, driven by the same wrk script
# for storage.sync=true (the default) and =false, each case run back to back in that order.
# Also measured in the same run, right before each post_share: `openssl speed rsa2048`
# (every POST is one RSA-2048-PSS signature: the signing bound).
# One JSON line per case on stdout (requests/s, latency p50/p90/p99/max from wrk's
# histogram through a Lua done() hook, errors, the node's CPU per request and in cores, how
# busy the whole machine was: the VMs are shared), then a summary line
# with the machine and the ratios; a Markdown table on stderr; raw outputs in bench/out/.
#
# Usage: bench/api/run.sh [--duration S] [--threads T] [--connections C] [--size BYTES]
#                         [--sync true|false|both] [--repeat R] [--no-build]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
duration=10 threads=2 conns=16 size=1024 syncs="true false" repeat=1 do_build=1
while [ $# -gt 0 ]; do
  case $1 in
    --duration) duration=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --connections) conns=$2; shift 2 ;;
    --size) size=$2; shift 2 ;;
    --sync) case $2 in both) syncs="true false" ;; true | false) syncs=$2 ;; *) echo "--sync true|false|both" >&2; exit 2 ;; esac; shift 2 ;;
    --repeat) repeat=$2; shift 2 ;;
    --no-build) do_build=0; shift ;;
    -h | --help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "unknown option $1 (--help)" >&2; exit 2 ;;
  esac
done
for t in wrk jq curl openssl; do command -v "$t" >/dev/null || { echo "bench/api: $t is required (scripts/setup.sh)" >&2; exit 1; }; done

build=${DM_BENCH_BUILD:-$root/build-bench}
if [ "$do_build" = 1 ]; then
  [ -f "$build/CMakeCache.txt" ] || cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$build" -j "$(nproc)" --target dmnode >/dev/null
fi
dmnode="$build/dmnode"
[ -x "$dmnode" ] || { echo "bench/api: no $dmnode" >&2; exit 1; }
out="$root/bench/out/api-$(date -u +%Y%m%dT%H%M%S)"
mkdir -p "$out"
work=$(mktemp -d "${TMPDIR:-/tmp}/bench-api.XXXXXX")
DM_BUILD_DIR=$build DM_LOG_LEVEL=warning
source "$root/tests/scenario/lib/nodes.bash"
source "$root/tests/scenario/lib/nginx.bash"
trap 'cleanup_nginx; cleanup_nodes; rm -rf "$work"' EXIT
export DMNODE_API_EXTERNAL_RATE_PER_SEC=1000000 DMNODE_API_EXTERNAL_RATE_BURST=1000000
lua="$root/bench/api/wrk.lua"
log() { echo "bench/api: $*" >&2; }
loadavg_start=$(cut -d' ' -f1-3 /proc/loadavg)

# ---- the bodies: 256 shares of $size random bytes, distinct recipients and amounts ----
for i in $(seq 1 256); do
  printf '{"recipient":"0x%s","amount":"%d","data":"%s"}\n' "$(openssl rand -hex 20)" "$i" \
    "$(head -c "$size" /dev/urandom | base64 -w0)"
done >"$work/bodies"

# ---- bounds measured in this run ----
# RSA-2048 signs/s on one core (openssl speed, 1 s of signing), measured right before each
# post_share case; the summary takes the best (least disturbed) measurement
sign_rate() { openssl speed -seconds 1 -elapsed rsa2048 2>/dev/null | awk '/^rsa 2048/ {print $6}'; }
have_nginx=0
if find_nginx; then
  have_nginx=1
  static_port=$((port_base + 153))
  cat >"$work/static.conf" <<CONF
server {
    listen 127.0.0.1:$static_port;
    access_log off;
    location / { default_type application/json; return 200 '{"status":"ok"}\n'; }
}
CONF
  DM_NGINX_ACCESS_LOG=off start_nginx "$work/static.conf" >&2 || exit 1
else
  log "nginx not installed: no nginx_static bound (scripts/setup.sh installs it)"
fi

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
idle_total() { awk '/^cpu / {print $5 + $6, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9}' /proc/stat; }
hz=$(getconf CLK_TCK)

# run_case NAME SYNC PID URL METHOD PATH [KEY] [BODIES]: one wrk run, one JSON line
run_case() {
  local name=$1 sync=$2 pid=$3 url=$4 rep=$5; shift 5
  local raw="$out/$name-sync_$sync-$rep.txt" c0=0 c1=0 i0 t0 i1 t1
  [ "$pid" = - ] || c0=$(cpu_ticks "$pid")
  read -r i0 t0 < <(idle_total)
  wrk -t "$threads" -c "$conns" -d "${duration}s" --timeout 5s -s "$lua" "$url" -- "$@" >"$raw" 2>&1 ||
    { log "wrk failed: $(tail -3 "$raw")"; return 1; }
  [ "$pid" = - ] || c1=$(cpu_ticks "$pid")
  read -r i1 t1 < <(idle_total)
  tail -1 "$raw" | jq -c --arg name "$name" --argjson sync "$sync" --argjson rep "$rep" \
    --argjson cpu "$(((c1 - c0) * 1000000 / hz))" --argjson pidgiven "$([ "$pid" = - ] && echo false || echo true)" \
    --argjson busy "$((100 - (i1 - i0) * 100 / (t1 - t0 > 0 ? t1 - t0 : 1)))" \
    --argjson t "$threads" --argjson c "$conns" --argjson size "$size" '
    . as $w | ($w.duration_us / 1e6) as $s |
    {bench:"api", case:$name, sync:$sync, repeat:$rep, threads:$t, connections:$c, data_bytes:$size,
     seconds:($s*1000|round/1000), requests:$w.requests, rps:(($w.requests/$s)*10|round/10),
     p50_ms:($w.lat_p50_us/1000), p90_ms:($w.lat_p90_us/1000), p99_ms:($w.lat_p99_us/1000),
     max_ms:($w.lat_max_us/1000), mean_ms:(($w.lat_mean_us/10|round)/100),
     errors:($w.errors_connect + $w.errors_read + $w.errors_write + $w.errors_timeout),
     non_2xx:$w.errors_status, machine_busy_pct:$busy}
    + (if $pidgiven then {node_cpu_us_per_req:(if $w.requests > 0 then ($cpu/$w.requests*10|round/10) else null end),
                          node_cpu_cores:(($cpu/1e6/$s)*100|round/100)} else {} end)' |
    tee -a "$out/results.jsonl"
}

n=0
for sync in $syncs; do
  n=$((n + 1))
  make_node "$n" >/dev/null
  DMNODE_STORAGE_SYNC=$sync start_node "$n" >/dev/null
  pid=${node_pid[$n]}
  ext="http://127.0.0.1:$(ext_port "$n")"
  key=$(api "$n" /v1/apikeys -X POST -H 'Content-Type: application/json' -d '{"name":"bench"}' | jq -r .key)
  id=$(curl -sS --noproxy '*' -m 30 -X POST -H "X-API-Key: $key" -H 'Content-Type: application/json' \
    --data-binary "$(head -1 "$work/bodies")" "$ext/v1/shares" | jq -r .id)
  [ ${#id} -eq 64 ] || { log "could not post a share (sync=$sync)"; exit 1; }
  log "storage.sync=$sync: node $pid, ${duration}s per case, -t$threads -c$conns"
  for rep in $(seq 1 "$repeat"); do
    [ "$have_nginx" = 1 ] && run_case nginx_static "$sync" - "http://127.0.0.1:$static_port" "$rep" GET /v1/health
    run_case health "$sync" "$pid" "$ext" "$rep" GET /v1/health
    run_case get_share "$sync" "$pid" "$ext" "$rep" GET "/v1/shares/$id" "$key"
    sign=$(sign_rate)
    before=$(stored "$n")
    line=$(run_case post_share "$sync" "$pid" "$ext" "$rep" POST /v1/shares "$key" "$work/bodies")
    after=$(stored "$n")
    # every answered POST must be a stored share (plus at most the ones in flight at the end)
    ok_posts=$(echo "$line" | jq '.requests - .non_2xx')
    delta=$((after - before))
    if [ "$delta" -lt "$ok_posts" ] || [ "$delta" -gt $((ok_posts + conns)) ]; then
      log "post_share: $ok_posts answered 2xx but $delta shares stored"
    fi
    echo "$line" | jq -c --argjson d "$delta" --argjson sg "${sign:-0}" \
      '. + {stored_delta:$d, openssl_rsa2048_sign_per_s_per_core:$sg}' | tee -a "$out/post.jsonl"
  done
  stop_node "$n"
done
stop_nginx

# ---- summary: machine, bounds, ratios (best run of each case) ----
sign_best=$(jq -s 'map(.openssl_rsa2048_sign_per_s_per_core) | max // 0' "$out/post.jsonl")
jq -s -c --arg sign "$sign_best" --argjson nproc "$(nproc)" \
  --arg cpu "$(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -1)" --arg kernel "$(uname -r)" \
  --arg wrk "$(wrk -v 2>&1 | head -1)" --arg nginx "$( [ "$have_nginx" = 1 ] && "$nginx_bin" -v 2>&1 | head -1)" \
  --arg openssl "$(openssl version)" --arg commit "$(git -C "$root" rev-parse --short HEAD 2>/dev/null)" \
  --arg build_type "$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$build/CMakeCache.txt" 2>/dev/null)" \
  --arg la0 "$loadavg_start" --arg la1 "$(cut -d' ' -f1-3 /proc/loadavg)" --arg raw "$out" \
  --arg date "$(date -u +%Y-%m-%dT%H:%M:%SZ)" '
  . as $r | ($sign|tonumber) as $sg |
  def best(c; s): [$r[] | select(.case == c and .sync == s)] | max_by(.rps) | .rps // null;
  def ratio(a; b): if a == null or b == null or b == 0 then null else (a / b * 1000 | round / 1000) end;
  {bench:"api", summary:true, date:$date, commit:$commit, build_type:$build_type, nproc:$nproc,
   cpu:$cpu, kernel:$kernel, wrk:$wrk, nginx:$nginx, openssl:$openssl,
   loadavg_start:$la0, loadavg_end:$la1, raw_dir:$raw,
   openssl_rsa2048_sign_per_s_per_core:$sg,
   ratios: (([$r[].sync] | unique | map(. as $s | {key:("sync_" + ($s|tostring)), value:{
     health_over_nginx_static: ratio(best("health"; $s); best("nginx_static"; $s)),
     get_share_over_health: ratio(best("get_share"; $s); best("health"; $s)),
     post_share_over_health: ratio(best("post_share"; $s); best("health"; $s)),
     post_share_over_sign_bound: ratio(best("post_share"; $s); $sg * $nproc)}}) | from_entries)
   + {post_share_sync_true_over_false: ratio(best("post_share"; true); best("post_share"; false))})}' \
  "$out/results.jsonl" | tee "$out/summary.json"

# ---- Markdown table on stderr ----
{
  echo
  echo "| sync | case | req/s | p50 ms | p90 ms | p99 ms | max ms | node CPU µs/req | node cores | machine busy % | errors | non-2xx |"
  echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
  jq -r '"| \(.sync) | \(.case) | \(.rps) | \(.p50_ms) | \(.p90_ms) | \(.p99_ms) | \(.max_ms) | \(.node_cpu_us_per_req // "—") | \(.node_cpu_cores // "—") | \(.machine_busy_pct) | \(.errors) | \(.non_2xx) |"' "$out/results.jsonl"
  echo
  echo "openssl rsa2048 sign/s per core (best of $(wc -l <"$out/post.jsonl") measurements): $sign_best; nproc $(nproc)"
} | tee "$out/table.md" >&2
