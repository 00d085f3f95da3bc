#!/usr/bin/env bash
# The README's main command: installs what is missing (Debian packages, the pinned npm
# anvil and solc), builds dmnode, and runs a local network on loopback: a pinned anvil
# chain, the audit contract deployed from node 1's account, three funded nodes that join
# from one bootstrap address, shares submitted at two of them, gossip to all, every share
# read back from every node, anchoring on the chain, and every share's proof bundle, as
# served by its origin and by node 3 (which has it from the origin's anchor notice),
# verified against the chain with nothing but the RPC endpoint; then a short report, and
# everything it started is stopped.
#   --keep        leave the network running and print how to talk to it
#   --shares N    shares to submit at each of the two publishing nodes (default 10)
#   --dir DIR     working directory (default: a new one under ./data/)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
keep=0 per=10 work=""
while [ $# -gt 0 ]; do
  case "$1" in
    --keep) keep=1 ;;
    --shares) per=$2; shift ;;
    --dir) work=$2; shift ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

step() { printf '\n==> %s\n' "$*"; }
die() { echo "run.sh: FAILED at step: $1 (log: $2)" >&2; [ -f "$2" ] && tail -n 20 "$2" >&2; exit 1; }

step "installing missing packages"
"$root/scripts/setup.sh"

step "installing the pinned anvil and solc (npm)"
"$root/scripts/setup-node.sh" >/dev/null
anvil_bin="$root/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil"
[ -x "$anvil_bin" ] || die "anvil not installed" /dev/null

step "building"
mkdir -p "$root/data"
log="$root/data/build.log"
{ cmake -S "$root" -B "$root/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo &&
  cmake --build "$root/build" -j "$(nproc)" --target dmnode; } >"$log" 2>&1 || die build "$log"
dmnode="$root/build/dmnode"

[ -n "$work" ] || work=$(mktemp -d "$root/data/network.XXXXXX")
mkdir -p "$work"
pwfile="$work/master-password"
# a demo master password in a 0600 file, never printed
[ -s "$pwfile" ] || (umask 077; head -c 32 /dev/urandom | base64 >"$pwfile")
base=$((21000 + (RANDOM % 55) * 200)) # below the kernel's ephemeral ports (32768..)
rpc_port=$((base + 99))
rpc="http://127.0.0.1:$rpc_port"
declare -A pid=()
anvil_pid=""
stop_all() {
  for i in "${!pid[@]}"; do kill -TERM "${pid[$i]}" 2>/dev/null || true; done
  for i in "${!pid[@]}"; do wait "${pid[$i]}" 2>/dev/null || true; done
  [ -z "$anvil_pid" ] || { kill "$anvil_pid" 2>/dev/null; wait "$anvil_pid" 2>/dev/null || true; }
}
jsonrpc() { # jsonrpc METHOD PARAMS-JSON -> result
  curl -sS --noproxy '*' -m 10 -H 'Content-Type: application/json' \
    --data "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"$1\",\"params\":$2}" "$rpc" | jq -c .result
}
[ "$keep" -eq 1 ] || trap stop_all EXIT

step "starting anvil (pinned $("$anvil_bin" --version | head -1 | cut -d' ' -f2)) on $rpc"
"$anvil_bin" --host 127.0.0.1 --port "$rpc_port" --chain-id 31337 --block-time 1 --silent \
  >"$work/anvil.log" 2>&1 &
anvil_pid=$!
for _ in $(seq 1 100); do [ "$(jsonrpc eth_chainId '[]' 2>/dev/null)" = '"0x7a69"' ] && break; sleep 0.1; done
[ "$(jsonrpc eth_chainId '[]')" = '"0x7a69"' ] || die "anvil did not answer" "$work/anvil.log"
contract=""

conf() { # conf I: config file of node I; all join from node 1's address
  local i=$1 boot="" contract_line=""
  [ -z "$contract" ] || contract_line="contract = \"$contract\""
  [ "$i" -gt 1 ] && boot="\"127.0.0.1:$((base + 1))\""
  cat >"$work/node$i.toml" <<CONF
datadir = "$work/node$i"
[network]
id = "datamgmt-local"
[p2p]
listen = "127.0.0.1:$((base + i))"
bootstrap = [$boot]
[api.internal]
listen = "127.0.0.1:$((base + 50 + i))"
# the job submits through the admin API faster than its default 50 req/s
rate_per_sec = 100000
rate_burst = 100000
[api.external]
listen = "127.0.0.1:$((base + 100 + i))"
[keys]
master_password_file = "$pwfile"
[chain]
rpc_url = "$rpc"
chain_id = 31337
$contract_line
batch_max_events = 16
batch_max_delay_ms = 500
CONF
  chmod 600 "$work/node$i.toml"
}
dm() { local i=$1; shift; "$dmnode" --config "$work/node$i.toml" "$@"; }

for i in 1 2 3; do
  conf "$i"
  if [ ! -d "$work/node$i/db" ]; then
    step "initialising node $i"
    dm "$i" init >"$work/node$i.init" 2>"$work/node$i.log" || die "init node $i" "$work/node$i.log"
    cat "$work/node$i.init"
  fi
done

step "funding the nodes' accounts and deploying the audit contract from node 1"
for i in 1 2 3; do
  addr=$(sed -n 's/^eth_address: //p' "$work/node$i.init")
  jsonrpc anvil_setBalance "[\"$addr\",\"0x56BC75E2D63100000\"]" >/dev/null  # 100 ether
done
dm 1 chain deploy --json >"$work/deploy.json" 2>>"$work/node1.log" || die "contract deployment" "$work/node1.log"
contract=$(jq -r .contract "$work/deploy.json")
echo "AuditAnchor at $contract (tx $(jq -r .tx_hash "$work/deploy.json"))"
for i in 1 2 3; do conf "$i"; done

step "starting three daemons (nodes 2 and 3 know only node 1's address)"
for i in 1 2 3; do
  # started directly (not through the dm function) so that $! is dmnode itself
  "$dmnode" --config "$work/node$i.toml" run >"$work/node$i.status" 2>>"$work/node$i.log" &
  pid[$i]=$!
  for _ in $(seq 1 200); do
    grep -q running "$work/node$i.status" 2>/dev/null && break
    kill -0 "${pid[$i]}" 2>/dev/null || die "run node $i" "$work/node$i.log"
    sleep 0.05
  done
  grep -q running "$work/node$i.status" || die "run node $i (no status in 10 s)" "$work/node$i.log"
  echo "node $i: $(cat "$work/node$i.status")"
done

peers() { dm "$1" peers 2>/dev/null | jq '.peers | length'; }
for _ in $(seq 1 200); do
  [ "$(peers 2)" -ge 2 ] && [ "$(peers 3)" -ge 2 ] && break
  sleep 0.1
done
echo "peers: node1=$(peers 1) node2=$(peers 2) node3=$(peers 3) (2 and 3 found each other by peer exchange)"

step "submitting $per shares at node 1 and $per at node 2"
: >"$work/submitted"
for i in 1 2; do
  for k in $(seq 1 "$per"); do
    payload="share $k from node $i at $(date -u +%FT%TZ)"
    out=$(printf '%s' "$payload" | dm "$i" share submit --recipient 0x742d35Cc6634C0532925a3b844Bc454e4438f44e \
      --amount "$((k * 1000))" --data - 2>>"$work/node$i.log") || die "submit at node $i" "$work/node$i.log"
    echo "$(echo "$out" | jq -r .id) $i $(printf '%s' "$payload" | base64 -w0)" >>"$work/submitted"
  done
  printf 'node %s: %s shares acknowledged\n' "$i" "$per"
done
total=$((2 * per))

step "waiting for gossip to deliver all $total shares to every node"
for _ in $(seq 1 300); do
  done_all=1
  for i in 1 2 3; do
    n=$(dm "$i" status 2>/dev/null | jq .shares.stored)
    printf '\r  node1=%s node2=%s node3=%s ' "$(dm 1 status | jq .shares.stored)" "$(dm 2 status | jq .shares.stored)" "$(dm 3 status | jq .shares.stored)"
    [ "$n" -ge "$total" ] || { done_all=0; break; }
  done
  [ $done_all = 1 ] && break
  sleep 0.2
done
echo
[ $done_all = 1 ] || die "gossip (not all shares delivered in 60 s)" "$work/node3.log"

step "reading every share back from every node"
bad=0
while read -r id origin data; do
  holders=0
  for i in 1 2 3; do
    got=$(dm "$i" share get "$id" 2>/dev/null | jq -r .data)
    if [ "$got" = "$data" ]; then holders=$((holders + 1)); else bad=$((bad + 1)); fi
  done
  printf '  %s  from node %s  held by %s/3 nodes  %s\n' "$id" "$origin" "$holders" "$([ "$holders" = 3 ] && echo OK || echo MISMATCH)"
done <"$work/submitted"

step "waiting for every share to be anchored on chain by its origin"
for _ in $(seq 1 300); do
  a1=$(dm 1 status | jq '.chain.events_anchored'); a2=$(dm 2 status | jq '.chain.events_anchored')
  printf '\r  anchored: node1 %s/%s  node2 %s/%s ' "$a1" "$per" "$a2" "$per"
  [ "$a1" -ge "$per" ] && [ "$a2" -ge "$per" ] && break
  sleep 0.2
done
echo
[ "$a1" -ge "$per" ] && [ "$a2" -ge "$per" ] || die "anchoring (not all shares anchored in 60 s)" "$work/node1.log"

step "verifying every share's proof bundle against the chain (RPC only), from its origin and from node 3"
unverified=0
: >"$work/verdicts"
# node 3 originated nothing: it serves each bundle from the origin's signed anchor notice
from_node3() { # from_node3 ID: node 3's bundle verifies and names the same origin
  dm 3 verify share "$1" --rpc "$rpc" --bundle-out "$work/$1.proof3.json" >"$work/$1.verify3" 2>&1 &&
    [ "$(jq -r .origin.node_id "$work/$1.proof3.json")" = "$(jq -r .origin.node_id "$work/$1.proof.json")" ] &&
    "$dmnode" verify proof "$work/$1.proof3.json" --rpc "$rpc" >/dev/null 2>&1
}
while read -r id origin data; do
  if dm "$origin" verify share "$id" --bundle-out "$work/$id.proof.json" >"$work/$id.verify" 2>&1 &&
     "$dmnode" verify proof "$work/$id.proof.json" --rpc "$rpc" >/dev/null 2>&1; then
    verdict=VERIFIED
    ok3=0 # the notice may trail the origin's records a little
    for _ in $(seq 1 50); do from_node3 "$id" && { ok3=1; break; }; sleep 0.2; done
    [ $ok3 = 1 ] || { verdict="NOT VERIFIED from node 3"; unverified=$((unverified + 1)); }
  else
    verdict="NOT VERIFIED"; unverified=$((unverified + 1))
  fi
  tx=$(jq -r .anchor.tx_hash "$work/$id.proof.json" 2>/dev/null)
  printf '  %s  tx %s  %s\n' "$id" "$tx" "$verdict" | tee -a "$work/verdicts"
done <"$work/submitted"

step "report"
for i in 1 2 3; do
  dm "$i" status | jq -c '{node: .node_id[0:16], peers, stored: .shares.stored, verify_calls: .shares.verify_calls, duplicates: .shares.duplicates}'
done
echo "shares: $total submitted, $([ $bad = 0 ] && echo "all held identically by all 3 nodes" || echo "$bad mismatches")"
echo "anchored and verified on chain, from the origin and from node 3: $((total - unverified))/$total (distinct anchoring transactions: $(awk '{print $3}' "$work/verdicts" | sort -u | wc -l))"
[ $bad = 0 ] || die "gossip verification" "$work/node1.log"
[ $unverified = 0 ] || die "proof verification" "$work/verdicts"

if [ "$keep" -eq 1 ]; then
  cat <<MSG

The network is running in $work (pids ${pid[*]}).
  $dmnode --config $work/node1.toml status
  $dmnode --config $work/node1.toml share submit --recipient 0x… --amount 1 --data hello
  $dmnode verify proof FILE --rpc $rpc
  kill ${pid[*]} $anvil_pid   # stop it
MSG
  exit 0
fi
step "stopping the network"
stop_all
trap - EXIT
for i in 1 2 3; do grep -q "stopped cleanly" "$work/node$i.log" && echo "node $i stopped cleanly" || die "shutdown of node $i" "$work/node$i.log"; done
