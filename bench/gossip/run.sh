#!/usr/bin/env bash
# bench/gossip: N dmnode daemons on loopback in a ring-plus-chords topology (each
# dials up to D others), P publishers submitting M shares of S random bytes as fast
# as the nodes accept them. Reports, as JSON lines:
#   - shares/s fully delivered (first submission until every node holds all M)
#   - p50/p99 publish-to-receive latency (origin timestamp -> received at each node)
#   - duplicates received per node, signature verifications per share per node
#   - CPU seconds and peak RSS per node, and their sum; and the PSS sum (proportional set
#     size: shared library pages counted once across the nodes), which is what "memory of
#     all nodes together" means, since every node maps the same librocksdb/libcrypto pages
#   - the RSA-2048 sign/verify bound from `openssl speed` measured in the same run
# Usage: bench/gossip/run.sh [--nodes N] [--degree D] [--messages M] [--size S]
#                            [--publishers P] [--rate R (shares/s per publisher, 0 = max)]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
N=4 D=3 M=5000 S=1024 P=1 RATE=0
while [ $# -gt 0 ]; do
  case "$1" in
    --nodes) N=$2; shift ;;
    --degree) D=$2; shift ;;
    --messages) M=$2; shift ;;
    --size) S=$2; shift ;;
    --publishers) P=$2; shift ;;
    --rate) RATE=$2; shift ;;
    *) echo "run.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
build=${DM_BENCH_BUILD:-$root/build-bench}
if [ ! -x "$build/dmnode" ] || [ ! -x "$build/dm_submit" ]; then
  cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$build" -j "$(nproc)" --target dmnode dm_submit >/dev/null
fi
dmnode="$build/dmnode"
work=$(mktemp -d "${TMPDIR:-/tmp}/bench-gossip.XXXXXX")
DM_BUILD_DIR=$build
DM_LOG_LEVEL=warning
source "$root/tests/scenario/lib/nodes.bash"
trap 'cleanup_nodes; rm -rf "$work"' EXIT

# the crypto bound, measured now on this machine
speed=$(openssl speed -seconds 2 -elapsed rsa2048 2>/dev/null | awk '/^rsa 2048/ {print $6, $7}')
sign_bound=${speed%% *}; verify_bound=${speed##* }

# ring plus chords: node i dials i+1, i+N/2, i+2, ... (up to D distinct others)
for ((i = 1; i <= N; i++)); do
  targets=()
  for step in 1 $((N / 2)) 2 3 $((N / 2 + 1)); do
    [ ${#targets[@]} -ge "$D" ] && break
    t=$(( (i - 1 + step) % N + 1 ))
    [ "$t" -eq "$i" ] && continue
    [[ " ${targets[*]} " == *" $t "* ]] && continue
    targets+=("$t")
  done
  make_node "$i" "${targets[@]}" >/dev/null
  sed -i "s/^\[p2p\]/[p2p]\nmax_outbound = $D/" "$(node_dir "$i").toml"
done
for ((i = 1; i <= N; i++)); do start_node "$i" >/dev/null; done
connected() { for ((i = 1; i <= N; i++)); do [ "$(api "$i" /v1/peers | jq '.peers|length')" -ge 1 ] || return 1; done; }
for _ in $(seq 1 100); do connected && break; sleep 0.1; done

per=$((M / P))
[ "$RATE" != 0 ] && export DM_SUBMIT_RATE=$RATE DM_SUBMIT_CONCURRENCY=4
t0=$(date +%s%3N)
pids=()
for ((p = 1; p <= P; p++)); do
  submit_shares "$p" "$per" "$S" "$work/ids$p" >"$work/submit$p.json" &
  pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid"; done
total=$((per * P))
deadline=$((SECONDS + 600))
while :; do
  done_all=1
  for ((i = 1; i <= N; i++)); do [ "$(stored "$i")" -ge "$total" ] || { done_all=0; break; }; done
  [ $done_all = 1 ] && break
  [ $SECONDS -gt $deadline ] && { echo '{"bench":"gossip","error":"not delivered within 600 s"}'; exit 1; }
  sleep 0.05
done
t1=$(date +%s%3N)

# latency: every (share, node) pair, received_ms - origin timestamp_ms
for ((i = 1; i <= N; i++)); do
  for ((p = 1; p <= P; p++)); do
    origin=$(node_id "$p"); after=0
    while :; do
      page=$(api "$i" "/v1/shares?origin=$origin&after=$after&limit=1000&detail=1")
      echo "$page" | jq -r '.shares[] | (.received_ms - .timestamp_ms)' >>"$work/lat"
      next=$(echo "$page" | jq -r .next_after)
      [ "$next" = null ] && break
      after=$next
    done
  done
done
read -r p50 p99 < <(sort -n "$work/lat" | awk '{a[NR]=$1} END {i50=int(NR*0.50); i99=int(NR*0.99); if(i50<1)i50=1; if(i99<1)i99=1; print a[i50], a[i99]}')

cpu_total=0; rss_total=0; pss_total=0; hz=$(getconf CLK_TCK)
for ((i = 1; i <= N; i++)); do
  pid=${node_pid[$i]}
  st=$(api "$i" /v1/status)
  cpu=$(awk -v hz="$hz" '{printf "%.2f", ($14 + $15) / hz}' "/proc/$pid/stat")
  rss=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
  pss=$(awk '/^Pss:/ {print $2}' "/proc/$pid/smaps_rollup")
  pss_total=$((pss_total + pss))
  cpu_total=$(echo "$cpu_total $cpu" | awk '{printf "%.2f", $1 + $2}')
  rss_total=$((rss_total + rss))
  echo "$st" | jq -c --arg cpu "$cpu" --arg rss "$rss" --arg pss "$pss" --argjson n "$i" \
    '{bench:"gossip", node:$n, stored:.shares.stored, duplicates:.shares.duplicates,
      verify_calls:.shares.verify_calls, received:.shares.received, synced_in:.shares.synced_in,
      peers:.peers, cpu_s:($cpu|tonumber), peak_rss_kib:($rss|tonumber), pss_kib:($pss|tonumber)}'
done
secs=$(echo "$t0 $t1" | awk '{printf "%.3f", ($2 - $1) / 1000}')
rate=$(echo "$total $secs" | awk '{printf "%.1f", $1 / $2}')
jq -cn --argjson n "$N" --argjson d "$D" --argjson m "$total" --argjson s "$S" --argjson p "$P" \
  --argjson secs "$secs" --argjson rate "$rate" --argjson p50 "$p50" --argjson p99 "$p99" \
  --argjson cpu "$cpu_total" --argjson rss "$rss_total" --argjson pss "$pss_total" \
  --arg sign "$sign_bound" --arg verify "$verify_bound" --arg cpus "$(nproc)" \
  '{bench:"gossip", nodes:$n, degree:$d, messages:$m, size:$s, publishers:$p, seconds:$secs,
    delivered_per_s:$rate, latency_ms:{p50:$p50, p99:$p99}, cpu_s_total:$cpu,
    peak_rss_kib_total:$rss, pss_kib_total_at_end:$pss, openssl_rsa2048_sign_per_s_per_core:($sign|tonumber),
    openssl_rsa2048_verify_per_s_per_core:($verify|tonumber), nproc:($cpus|tonumber),
    delivered_vs_sign_bound:(($rate / (($sign|tonumber) * ($cpus|tonumber))) * 1000 | round / 1000)}'
for ((i = 1; i <= N; i++)); do stop_node "$i"; done
