# Helpers for multi-process scenario tests: real dmnode daemons on loopback.
# Source it after setting: dmnode (path), work (a fresh directory).
# Every wait has a deadline; cleanup kills every daemon the test started.

export KEY_MASTER_PASSWORD="scenario master password, long enough"
unset DMNODE_CONFIG DMNODE_DATADIR DMNODE_KEYS_MASTER_PASSWORD_FILE
build_dir=${DM_BUILD_DIR:-$(dirname "$dmnode")}
submit="$build_dir/dm_submit"
# A per-run block of 200 ports (p2p +1.., internal API +51.., external API +101.., anvil
# +90), below the kernel's ephemeral range (32768..) so that no outgoing connection holds
# one of them, reserved by a directory under $TMPDIR/dmnode-ports so that runs in parallel
# on one machine take different blocks (a reservation older than an hour is stale).
port_reserved=""
pick_port_base() {
  local dir="${TMPDIR:-/tmp}/dmnode-ports" b i
  mkdir -p "$dir" 2>/dev/null
  find "$dir" -mindepth 1 -maxdepth 1 -mmin +60 -exec rmdir {} + 2>/dev/null
  for _ in $(seq 1 40); do
    b=$((20000 + (RANDOM % 63) * 200))
    for i in 1 51 90 101; do
      (exec 3<>"/dev/tcp/127.0.0.1/$((b + i))") 2>/dev/null && continue 2
    done
    if mkdir "$dir/$b" 2>/dev/null; then port_reserved="$dir/$b"; port_base=$b; return 0; fi
  done
  port_base=$((20000 + (RANDOM % 63) * 200)) # all busy: take a chance
}
if [ -n "${DM_PORT_BASE:-}" ]; then port_base=$DM_PORT_BASE; else pick_port_base; fi
declare -A node_pid=()
fails=0
passes=0

ok() { passes=$((passes + 1)); echo "ok - $*"; }
bad() { fails=$((fails + 1)); echo "not ok - $*"; }
finish() {
  echo "$passes passed, $fails failed"
  [ "$fails" -eq 0 ]
}

cleanup_nodes() {
  # wait for the daemons only: a bare `wait` would also wait for anvil or other helpers
  for i in "${!node_pid[@]}"; do kill -9 "${node_pid[$i]}" 2>/dev/null; done
  for i in "${!node_pid[@]}"; do wait "${node_pid[$i]}" 2>/dev/null; done
  [ -z "$port_reserved" ] || rmdir "$port_reserved" 2>/dev/null
  return 0
}

p2p_port() { echo $((port_base + $1)); }
api_port() { echo $((port_base + 50 + $1)); }
ext_port() { echo $((port_base + 100 + $1)); }
node_dir() { echo "$work/node$1"; }

# make_node I [bootstrap-index ...]: init node I with a config file
make_node() {
  local i=$1; shift
  local dir; dir=$(node_dir "$i")
  local boot=""
  for b in "$@"; do boot="$boot\"127.0.0.1:$(p2p_port "$b")\", "; done
  mkdir -p "$dir"
  cat >"$dir.toml" <<CONF
datadir = "$dir"
[network]
id = "scenario-net"
[p2p]
listen = "127.0.0.1:$(p2p_port "$i")"
bootstrap = [$boot]
[api.internal]
listen = "127.0.0.1:$(api_port "$i")"
rate_per_sec = ${DM_API_RATE:-1000000}
rate_burst = ${DM_API_BURST:-1000000}
[api.external]
listen = "127.0.0.1:$(ext_port "$i")"
[storage]
sync = false
[log]
level = "${DM_LOG_LEVEL:-info}"
CONF
  chmod 600 "$dir.toml"
  "$dmnode" --config "$dir.toml" init >"$dir.init" 2>&1 || { cat "$dir.init"; return 1; }
}

# start_node I: run the daemon in the background and wait for its status line
start_node() {
  local i=$1 dir; dir=$(node_dir "$i")
  : >"$dir.status"
  "$dmnode" --config "$dir.toml" run >"$dir.status" 2>>"$dir.log" &
  node_pid[$i]=$!
  for _ in $(seq 1 300); do
    grep -q '"status":"running"' "$dir.status" 2>/dev/null && return 0
    kill -0 "${node_pid[$i]}" 2>/dev/null || { echo "node$i died:"; tail -20 "$dir.log"; return 1; }
    sleep 0.05
  done
  echo "node$i: no status line within 15 s"; tail -20 "$dir.log"; return 1
}

stop_node() { # graceful
  local i=$1 pid=${node_pid[$1]}
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  unset "node_pid[$i]"
}

kill9_node() {
  local pid=${node_pid[$1]}
  kill -9 "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null || true
  unset "node_pid[$1]"
}

node_id() { sed -n 's/^node_id: //p' "$(node_dir "$1").init"; }

# api I PATH [curl args...]: GET from node I's internal API
api() {
  local i=$1 path=$2; shift 2
  local tok; tok=$(cat "$(node_dir "$i")/admin.token")
  curl -sS --noproxy '*' -m 30 -H "Authorization: Bearer $tok" "$@" "http://127.0.0.1:$(api_port "$i")$path"
}

# stored I: shares stored at node I
stored() { api "$1" /v1/status | jq -r '.shares.stored // 0' 2>/dev/null || echo 0; }

# submit I COUNT [SIZE]: submit shares to node I with dm_submit
submit_shares() {
  local i=$1 count=$2 size=${3:-1024}
  "$submit" --url "http://127.0.0.1:$(api_port "$i")" --token-file "$(node_dir "$i")/admin.token" \
    --count "$count" --size "$size" --concurrency "${DM_SUBMIT_CONCURRENCY:-16}" ${4:+--ids "$4"} \
    ${DM_SUBMIT_RATE:+--rate "$DM_SUBMIT_RATE"}
}

# wait_for SECONDS DESCRIPTION COMMAND...: poll until COMMAND succeeds
wait_for() {
  local secs=$1 what=$2; shift 2
  local deadline=$((SECONDS + secs))
  while [ $SECONDS -lt $deadline ]; do
    if "$@"; then ok "$what"; return 0; fi
    sleep 0.2
  done
  bad "$what (not within ${secs}s)"; return 1
}

all_have() { # all_have COUNT I...: every listed node stores COUNT shares
  local want=$1; shift
  for i in "$@"; do [ "$(stored "$i")" = "$want" ] || return 1; done
}
