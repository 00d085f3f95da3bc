#!/usr/bin/env bash
# Scenario: the dmnode CLI as an operator uses it, with real processes and a real
# data directory: init, id, keys list/rotate/reencrypt, the daemon's lock, the
# documented exit codes, strict configuration errors, and that no command prints
# private key material. Bounded: every daemon wait has a deadline.
set -uo pipefail
dmnode=${1:?usage: cli.sh path/to/dmnode}
base=${DM_TEST_TMP:-/tmp}
mkdir -p "$base"
work=$(mktemp -d "$base/scenario-cli.XXXXXX")
daemon=""
cleanup() { [ -n "$daemon" ] && kill -9 "$daemon" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

fails=0; passes=0
ok() { passes=$((passes + 1)); echo "ok - $*"; }
bad() { fails=$((fails + 1)); echo "not ok - $*"; }
# expect CODE DESCRIPTION -- command...   (stdout+stderr kept in $work/out)
expect() {
  local want=$1 what=$2; shift 3
  "$@" >"$work/out" 2>&1; local rc=$?
  cat "$work/out" >>"$work/all"
  if [ "$rc" -eq "$want" ]; then ok "$what (exit $rc)"; else bad "$what: exit $rc, want $want"; sed 's/^/    /' "$work/out"; fi
}
contains() { if grep -q -- "$2" "$work/out"; then ok "$1"; else bad "$1: output lacks '$2'"; sed 's/^/    /' "$work/out"; fi; }

export DMNODE_DATADIR="$work/node"
unset DMNODE_CONFIG DMNODE_KEYS_MASTER_PASSWORD_FILE
export KEY_MASTER_PASSWORD="scenario password that is long enough"

expect 0 "--help" -- "$dmnode" --help
contains "help lists commands" "keys rotate"
for c in init run id "keys list" "keys rotate" "keys reencrypt" "config show"; do
  # shellcheck disable=SC2086
  expect 0 "$c --help" -- "$dmnode" $c --help
  contains "$c help has usage" "usage: dmnode"
done
expect 2 "unknown command" -- "$dmnode" frobnicate
expect 2 "unknown option" -- "$dmnode" id --frob

expect 7 "id before init" -- "$dmnode" id
KEY_MASTER_PASSWORD="" expect 4 "init without password" -- "$dmnode" init
[ ! -d "$work/node/db" ] && ok "nothing created without password" || bad "db created without password"
KEY_MASTER_PASSWORD="too short" expect 4 "init with a short password" -- "$dmnode" init

expect 0 "init" -- "$dmnode" init
contains "init prints node id" "node_id: "
contains "init prints address" "eth_address: 0x"
node_id=$(sed -n 's/^node_id: //p' "$work/out")
[ "${#node_id}" -eq 64 ] && ok "node id is 64 hex" || bad "node id '$node_id'"
[ "$(stat -c %a "$work/node")" = 700 ] && ok "datadir mode 0700" || bad "datadir mode $(stat -c %a "$work/node")"
expect 7 "second init refused" -- "$dmnode" init

KEY_MASTER_PASSWORD="" expect 0 "id needs no password" -- "$dmnode" id --json
contains "id json" "\"node_id\":\"$node_id\""

expect 0 "keys list" -- "$dmnode" keys list
contains "keys list shows version 1 current" "^1 .*yes"
KEY_MASTER_PASSWORD="scenario password that is wrong!!!!!" expect 4 "keys list with wrong password" -- "$dmnode" keys list
contains "wrong password message" "wrong master password"
KEY_MASTER_PASSWORD="" expect 4 "keys list without password" -- "$dmnode" keys list

expect 0 "keys rotate" -- "$dmnode" keys rotate
contains "rotated to 2" "version 2"
expect 0 "keys list after rotate" -- "$dmnode" keys list --json
contains "current 2" '"current_version":2'
contains "v1 still holds the node keys" '"version":1,"created":"[^"]*","current":false,"records":2'
expect 0 "keys reencrypt" -- "$dmnode" keys reencrypt
contains "moved 2 records" "re-encrypted 2 records"
expect 0 "keys list after reencrypt" -- "$dmnode" keys list --json
contains "v2 holds both" '"version":2,"created":"[^"]*","current":true,"records":2'
expect 0 "reencrypt again is a no-op" -- "$dmnode" keys reencrypt
contains "moved 0" "re-encrypted 0 records"

# password from a file, with the mode checked
pw="$work/pw"; printf '%s\n' "$KEY_MASTER_PASSWORD" >"$pw"; chmod 644 "$pw"
KEY_MASTER_PASSWORD="" expect 4 "world-readable password file refused" -- "$dmnode" --keys.master_password_file="$pw" keys list
chmod 600 "$pw"
KEY_MASTER_PASSWORD="" expect 0 "password file" -- "$dmnode" --keys.master_password_file="$pw" keys list

# strict configuration: the message names the key and where it came from
expect 3 "misspelled flag" -- "$dmnode" --p2p.listn=127.0.0.1:9000 id
contains "names the key" "p2p.listn"
DMNODE_P2P_LISTN=x expect 3 "misspelled environment variable" -- "$dmnode" id
contains "names the variable" "DMNODE_P2P_LISTN"
expect 3 "public internal API bind" -- "$dmnode" --api.internal.listen=0.0.0.0:8080 id
contains "names api.internal.listen" "api.internal.listen"
printf 'datadir = "%s"\n[storage]\nsync = maybe\n' "$work/node" >"$work/bad.toml"
expect 3 "bad config file value" -- "$dmnode" --config "$work/bad.toml" id
contains "names file and line" "line 3"
printf '[p2p]\nlisten = "127.0.0.1:9100"\n' >"$work/good.toml"
DMNODE_P2P_LISTEN=127.0.0.1:9200 expect 0 "config show: env over file" -- "$dmnode" --config "$work/good.toml" config show
contains "env wins over file" "127.0.0.1:9200"
DMNODE_P2P_LISTEN=127.0.0.1:9200 expect 0 "config show: flag over env" -- "$dmnode" --config "$work/good.toml" --p2p.listen=127.0.0.1:9300 config show
contains "flag wins over env" "127.0.0.1:9300"

# the daemon holds the data directory; read-only commands still work beside it
"$dmnode" run >"$work/status" 2>"$work/daemon.log" &
daemon=$!
for _ in $(seq 1 200); do [ -s "$work/status" ] && break; sleep 0.05; done
if grep -q '"status":"running"' "$work/status"; then ok "daemon reports status"; else bad "daemon status: $(cat "$work/status" "$work/daemon.log")"; fi
expect 6 "second daemon refused" -- "$dmnode" run
contains "busy message" "in use by a running dmnode daemon"
expect 0 "id beside the daemon" -- "$dmnode" id
expect 0 "keys list beside the daemon" -- "$dmnode" keys list
expect 0 "rotate beside the daemon goes through its API" -- "$dmnode" keys rotate
contains "daemon rotated to 3" '"current_version": 3'
expect 0 "reencrypt beside the daemon goes through its API" -- "$dmnode" keys reencrypt
contains "daemon re-encrypted" '"reencrypted": 2'
expect 0 "status from the daemon" -- "$dmnode" status
contains "status names the node" "\"node_id\": \"$node_id\""
[ "$(stat -c %a "$work/node/admin.token")" = 600 ] && ok "admin token mode 0600" || bad "admin token mode"
expect 2 "share submit: bad recipient rejected" -- "$dmnode" share submit --recipient 0x123 --amount 5 --data hello
expect 0 "share submit" -- "$dmnode" share submit --recipient 0x742d35Cc6634C0532925a3b844Bc454e4438f44e --amount 1000000000000000000000000000 --data hello
share_id=$(jq -r .id "$work/out")
expect 0 "share get" -- "$dmnode" share get "$share_id"
contains "share data in base64" '"data": "aGVsbG8="'
contains "share amount kept exactly" '"amount": "1000000000000000000000000000"'
expect 2 "share get needs an id" -- "$dmnode" share get
kill -TERM "$daemon"
for _ in $(seq 1 200); do kill -0 "$daemon" 2>/dev/null || break; sleep 0.05; done
if kill -0 "$daemon" 2>/dev/null; then bad "daemon did not stop on SIGTERM"; else
  wait "$daemon"; rc=$?; daemon=""
  [ "$rc" -eq 0 ] && ok "daemon stopped cleanly on SIGTERM" || bad "daemon exit $rc"
fi
expect 0 "rotate after the daemon stopped" -- "$dmnode" keys rotate

# kill -9 leaves a usable directory; this start changes two settings: audited
"$dmnode" --p2p.max_inbound=7 --log.level=warning run >"$work/status2" 2>>"$work/daemon.log" &
daemon=$!
for _ in $(seq 1 200); do [ -s "$work/status2" ] && break; sleep 0.05; done
kill -9 "$daemon"; wait "$daemon" 2>/dev/null; daemon=""
expect 0 "keys list after kill -9" -- "$dmnode" keys list
contains "four versions" "^4 .*yes"
if [ -n "${DM_BUILD_DIR:-}" ] && [ -x "$DM_BUILD_DIR/dm_storetool" ]; then
  "$DM_BUILD_DIR/dm_storetool" "$work/node/db" list audit >"$work/out" 2>&1
  contains "first start: configuration recorded" '"event":"config_recorded"'
  contains "second start: config_changed names p2p.max_inbound 32 -> 7" '"p2p.max_inbound":{"from":"32","to":"7"}'
  contains "and log.level" '"log.level":{"from":"\\"info\\"","to":"\\"warning\\""}'
fi

# no command printed private key material: nothing that looks like a PEM/DER key
if grep -rqs -e "PRIVATE KEY" -e "MII" "$work/all" "$work/status" "$work/status2" "$work/daemon.log"; then bad "key material in output"; else ok "no key material in outputs"; fi

echo "$passes passed, $fails failed"
[ "$fails" -eq 0 ]
