#!/usr/bin/env bash
# The README's main command. Installs what is missing, builds dmnode, creates a
# node in a fresh data directory, shows its identity and keys, starts the daemon,
# shows that a second instance is refused, and stops it cleanly.
# (The multi-node network with anvil anchoring replaces this as it lands.)
#   --datadir DIR   use DIR instead of a new directory under ./data/
#   --keep          leave the daemon running and print how to talk to it
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
keep=0
datadir=""
while [ $# -gt 0 ]; do
  case "$1" in
    --keep) keep=1 ;;
    --datadir) datadir=$2; shift ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

step() { printf '\n==> %s\n' "$*"; }
die() { echo "run.sh: FAILED at step: $1 (log: $2)" >&2; [ -f "$2" ] && tail -n 20 "$2" >&2; exit 1; }

step "installing missing packages"
"$root/scripts/setup.sh"

step "building"
mkdir -p "$root/data"
log="$root/data/build.log"
{ cmake -S "$root" -B "$root/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo && cmake --build "$root/build" -j "$(nproc)" --target dmnode; } >"$log" 2>&1 || die build "$log"
dmnode="$root/build/dmnode"

if [ -z "$datadir" ]; then
  datadir=$(mktemp -d "$root/data/node.XXXXXX")
  rmdir "$datadir"
fi
if [ -z "${KEY_MASTER_PASSWORD:-}" ]; then
  # a demo password in a 0600 file; never printed
  pwfile="$root/data/demo-master-password"
  if [ ! -s "$pwfile" ]; then
    (umask 077; head -c 32 /dev/urandom | base64 >"$pwfile")
  fi
  export DMNODE_KEYS_MASTER_PASSWORD_FILE="$pwfile"
fi
export DMNODE_DATADIR="$datadir"

if [ ! -d "$datadir/db" ]; then
  step "initialising node in $datadir"
  "$dmnode" init || die "dmnode init" "$datadir"
fi

step "identity"
"$dmnode" id
step "data keys"
"$dmnode" keys list

step "starting daemon"
runlog="$datadir/dmnode.log"
"$dmnode" run >"$datadir/status.json" 2>"$runlog" &
pid=$!
for _ in $(seq 1 100); do
  [ -s "$datadir/status.json" ] && break
  kill -0 "$pid" 2>/dev/null || die "dmnode run" "$runlog"
  sleep 0.1
done
[ -s "$datadir/status.json" ] || die "dmnode run (no status within 10 s)" "$runlog"
echo "status: $(cat "$datadir/status.json")"

step "a second daemon on the same data directory is refused"
set +e
"$dmnode" run >/dev/null 2>"$datadir/second.log"
rc=$?
set -e
echo "second instance exit code $rc: $(cat "$datadir/second.log")"
[ "$rc" -eq 6 ] || die "second instance should exit 6" "$datadir/second.log"

step "reading identity while the daemon runs"
"$dmnode" id --json

if [ "$keep" -eq 1 ]; then
  cat <<MSG

The node is running (pid $pid), data directory $datadir, log $runlog.
  export DMNODE_DATADIR=$datadir${DMNODE_KEYS_MASTER_PASSWORD_FILE:+ DMNODE_KEYS_MASTER_PASSWORD_FILE=$DMNODE_KEYS_MASTER_PASSWORD_FILE}
  $dmnode id          # identity
  $dmnode keys list   # data-key versions (read-only beside the daemon)
  kill $pid           # stop it
MSG
  exit 0
fi

step "stopping daemon"
kill -TERM "$pid"
wait "$pid" || die "daemon exit status" "$runlog"
cat "$runlog"
step "done: node $(sed -n 's/.*"node_id":"\([0-9a-f]*\)".*/\1/p' "$datadir/status.json") ran and stopped cleanly"
