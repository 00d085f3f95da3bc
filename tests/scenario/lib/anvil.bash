# Helpers for scenario tests that need an Ethereum node: a real anvil from the pinned npm
# package (scripts/setup-node.sh installs it), on 127.0.0.1, chain id 31337, anvil's
# well-known test mnemonic. Source it after setting `work` (a fresh directory); nodes.bash
# may be sourced before or after. Every wait has a deadline; the caller's EXIT trap calls
# cleanup_anvil. anvil-only methods (anvil_*, evm_*) belong here, in tests, never in the node.
#
#   start_anvil [--port P] [--block-time S | --no-mining] [--state FILE] [-- ANVIL-ARGS...]
#   anvil_rpc METHOD [PARAMS-JSON]   prints the result (compact JSON); 1 on any error
#   fund ADDRESS WEI                 anvil_setBalance (WEI decimal or 0x-hex, any size)
#   anvil_snapshot / anvil_revert ID / anvil_mine [N]
#   stop_anvil (graceful: dumps --state) / kill_anvil (SIGKILL) / restart_anvil [secs down]
#   launch_anvil                     start again with the last start_anvil's port and args
#                                    (after kill_anvil: a crash; add `-- --state-interval 1`
#                                    to start_anvil so that a SIGKILL loses at most ~1 s)
#   deploy_anchor                    deploys contracts/AuditAnchor.json, prints its address
#   anvil_send_tx JSON               eth_sendTransaction from account 0, prints the receipt
#   anchor_tx CONTRACT ROOT COUNT    calls anchor(root, count), prints the receipt

ANVIL_CHAIN_ID=31337
ANVIL_CHAIN_ID_HEX=0x7a69
ANVIL_MNEMONIC="test test test test test test test test test test test junk"
# account 0 of that mnemonic: unlocked in anvil; its key is public test data (never real funds)
ANVIL_ACCOUNT0=0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266
ANVIL_KEY0=0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80

dm_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
anvil_bin=${DM_ANVIL:-$dm_root/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil}
anchor_artifact="$dm_root/contracts/AuditAnchor.json"
anvil_pid=""
anvil_port=""
anvil_url=""
anvil_state=""
anvil_log="${work:-${TMPDIR:-/tmp}}/anvil.log"
anvil_args=()

# port_in_use PORT: something accepts connections on 127.0.0.1:PORT
port_in_use() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# pick_anvil_port: the per-run block's slot 90 (nodes.bash uses slots 0..89), else a free
# port in a random block
pick_anvil_port() {
  local p
  if [ -n "${DM_ANVIL_PORT:-}" ]; then echo "$DM_ANVIL_PORT"; return 0; fi
  if [ -n "${port_base:-}" ] && ! port_in_use $((port_base + 90)); then
    echo $((port_base + 90)); return 0
  fi
  for _ in $(seq 1 50); do
    p=$((20000 + (RANDOM % 126) * 100 + 90)) # below the ephemeral range (32768..)
    port_in_use "$p" || { echo "$p"; return 0; }
  done
  return 1
}

# start_anvil [--port P] [--block-time S | --no-mining] [--state FILE] [-- ANVIL-ARGS...]
# Default: instant mining (a block per transaction). --block-time S mines every S seconds;
# --no-mining mines only on anvil_mine. --state FILE loads FILE if it exists and dumps the
# chain to it on a graceful stop (see restart_anvil). Sets anvil_pid, anvil_port, anvil_url.
start_anvil() {
  local port="" mining=() state=""
  while [ $# -gt 0 ]; do
    case $1 in
      --port) port=$2; shift 2 ;;
      --block-time) mining=(--block-time "$2"); shift 2 ;;
      --no-mining) mining=(--no-mining); shift ;;
      --state) state=$2; shift 2 ;;
      --) shift; break ;;
      *) echo "start_anvil: unknown option $1" >&2; return 2 ;;
    esac
  done
  [ -x "$anvil_bin" ] || { echo "start_anvil: no anvil at $anvil_bin (run scripts/setup-node.sh)" >&2; return 1; }
  [ -n "$port" ] || port=$(pick_anvil_port) || { echo "start_anvil: no free port" >&2; return 1; }
  anvil_port=$port
  anvil_url="http://127.0.0.1:$port"
  anvil_state=$state
  anvil_args=(--host 127.0.0.1 --port "$port" --chain-id "$ANVIL_CHAIN_ID"
    --mnemonic "$ANVIL_MNEMONIC" --silent "${mining[@]}")
  [ -z "$state" ] || anvil_args+=(--state "$state")
  anvil_args+=("$@")
  launch_anvil
}

# launch_anvil: (re)start anvil with the arguments of the last start_anvil, same port
launch_anvil() {
  if port_in_use "$anvil_port"; then
    echo "start_anvil: port $anvil_port is in use" >&2; return 1
  fi
  "$anvil_bin" "${anvil_args[@]}" >>"$anvil_log" 2>&1 &
  anvil_pid=$!
  wait_anvil 30 || { kill -9 "$anvil_pid" 2>/dev/null; wait "$anvil_pid" 2>/dev/null; anvil_pid=""; return 1; }
}

# wait_anvil [SECONDS]: until eth_chainId answers 0x7a69 (or the process dies)
wait_anvil() {
  local deadline=$((SECONDS + ${1:-30})) id
  while [ $SECONDS -lt "$deadline" ]; do
    id=$(anvil_rpc eth_chainId 2>/dev/null) && [ "$id" = "\"$ANVIL_CHAIN_ID_HEX\"" ] && return 0
    if [ -n "$anvil_pid" ] && ! kill -0 "$anvil_pid" 2>/dev/null; then
      echo "anvil died:" >&2; tail -20 "$anvil_log" >&2; return 1
    fi
    sleep 0.1
  done
  echo "anvil: no eth_chainId within ${1:-30} s on $anvil_url" >&2; tail -20 "$anvil_log" >&2
  return 1
}

# anvil_rpc METHOD [PARAMS-JSON]: prints the JSON-RPC result, compact; a transport error,
# a non-JSON reply or an error object prints to stderr and returns 1
anvil_rpc() {
  local method=$1 params=${2:-[]} reply
  reply=$(curl -sS --noproxy '*' -m "${DM_ANVIL_RPC_TIMEOUT:-10}" -H 'Content-Type: application/json' \
    --data "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"$method\",\"params\":$params}" \
    "$anvil_url") || return 1
  if ! echo "$reply" | jq -e 'has("result")' >/dev/null 2>&1; then
    echo "anvil_rpc $method: $reply" >&2; return 1
  fi
  echo "$reply" | jq -c .result
}

# dec_to_hex N: decimal string of any size (or 0x-hex, returned as is) to 0x-hex
dec_to_hex() {
  local n=$1 hex="" q r d i
  case $n in 0x* | 0X*) echo "$n"; return 0 ;; esac
  [[ $n =~ ^[0-9]+$ ]] || { echo "dec_to_hex: not a number: $n" >&2; return 1; }
  while [ "${n:0:1}" = 0 ] && [ ${#n} -gt 1 ]; do n=${n:1}; done
  [ "$n" = 0 ] && { echo 0x0; return 0; }
  while [ -n "$n" ]; do # long division by 16
    q="" r=0
    for ((i = 0; i < ${#n}; i++)); do
      d=$((r * 10 + ${n:i:1}))
      q+=$((d / 16)) r=$((d % 16))
    done
    hex=$(printf '%x' "$r")$hex
    while [ "${q:0:1}" = 0 ]; do q=${q:1}; done
    n=$q
  done
  echo "0x$hex"
}

# fund ADDRESS WEI: set the balance of ADDRESS (anvil_setBalance)
fund() {
  local wei; wei=$(dec_to_hex "$2") || return 1
  anvil_rpc anvil_setBalance "[\"$1\",\"$wei\"]" >/dev/null
}

balance() { anvil_rpc eth_getBalance "[\"$1\",\"latest\"]" | jq -r .; }
block_number() { echo $(($(anvil_rpc eth_blockNumber | jq -r .))); }

# anvil_snapshot: prints a snapshot id; anvil_revert ID: back to it (the id is consumed)
anvil_snapshot() { anvil_rpc evm_snapshot | jq -r .; }
anvil_revert() {
  [ "$(anvil_rpc evm_revert "[\"$1\"]")" = true ] || { echo "anvil_revert $1 refused" >&2; return 1; }
}

# anvil_mine [N]: mine N blocks now (default 1)
anvil_mine() { anvil_rpc anvil_mine "[\"$(dec_to_hex "${1:-1}")\"]" >/dev/null; }

# stop_anvil: SIGTERM, then SIGKILL after 10 s; with --state the chain is dumped on the way
stop_anvil() {
  [ -n "$anvil_pid" ] || return 0
  kill -TERM "$anvil_pid" 2>/dev/null
  for _ in $(seq 1 100); do kill -0 "$anvil_pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$anvil_pid" 2>/dev/null
  wait "$anvil_pid" 2>/dev/null
  anvil_pid=""
  return 0
}

# kill_anvil: SIGKILL, nothing dumped (the chain goes back to the last dump, if any)
kill_anvil() {
  [ -n "$anvil_pid" ] || return 0
  kill -9 "$anvil_pid" 2>/dev/null
  wait "$anvil_pid" 2>/dev/null
  anvil_pid=""
}

# restart_anvil [SECONDS-DOWN]: stop gracefully (dumping --state), stay down a while (an RPC
# outage for the nodes), start again on the same port with the same arguments, loading the
# dumped chain: blocks, receipts, contracts and balances survive
restart_anvil() {
  stop_anvil
  [ -z "${1:-}" ] || sleep "$1"
  launch_anvil
}

cleanup_anvil() { kill_anvil; }

# anvil_receipt TXHASH [SECONDS]: wait for the receipt (bounded), print it
anvil_receipt() {
  local deadline=$((SECONDS + ${2:-30})) r
  while [ $SECONDS -lt "$deadline" ]; do
    r=$(anvil_rpc eth_getTransactionReceipt "[\"$1\"]") || return 1
    [ "$r" != null ] && { echo "$r"; return 0; }
    sleep 0.1
  done
  echo "anvil_receipt: $1 not mined within ${2:-30} s" >&2; return 1
}

# anvil_send_tx TX-JSON: eth_sendTransaction (from account 0 unless TX-JSON names "from"),
# wait for the receipt, print it; 1 if it reverted
anvil_send_tx() {
  local tx hash r
  tx=$(echo "$1" | jq -c --arg a "$ANVIL_ACCOUNT0" '{from: $a} + .') || return 1
  hash=$(anvil_rpc eth_sendTransaction "[$tx]" | jq -r .) || return 1
  r=$(anvil_receipt "$hash" "${DM_ANVIL_RECEIPT_WAIT:-30}") || return 1
  echo "$r"
  [ "$(echo "$r" | jq -r .status)" = 0x1 ] || { echo "anvil_send_tx: $hash reverted" >&2; return 1; }
}

# deploy_anchor: deploy contracts/AuditAnchor.json from account 0, print the address
deploy_anchor() {
  local code r
  code=$(jq -r .bytecode "$anchor_artifact") || return 1
  r=$(anvil_send_tx "{\"data\":\"$code\"}") || return 1
  echo "$r" | jq -r .contractAddress
}

# anchor_tx CONTRACT ROOT COUNT [FROM]: anchor(bytes32 ROOT, uint64 COUNT), print the receipt
anchor_tx() {
  local root=${2#0x} count
  count=$(dec_to_hex "$3") || return 1
  count=${count#0x}
  [[ $root =~ ^[0-9a-fA-F]{64}$ ]] || { echo "anchor_tx: root must be 32 bytes hex" >&2; return 1; }
  count=$(printf '%64s' "$count" | tr ' ' 0)
  anvil_send_tx "{\"to\":\"$1\",\"data\":\"0xdb2c4aca$root$count\"${4:+,\"from\":\"$4\"}}"
}
