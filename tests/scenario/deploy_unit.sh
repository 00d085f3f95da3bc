#!/usr/bin/env bash
# Scenario: deploy/systemd/dmnode.service without a running systemd.
#   - `systemd-analyze verify` accepts the unit (ExecStart pointed at the built dmnode);
#   - `systemd-analyze security --offline` rates its exposure at most 2.0 ("OK");
#   - the hardening the deployment notes promise is there;
#   - the sandbox would not break the daemon: a real daemon runs under strace through
#     start-up, both APIs (API key, share POST and GET, key rotation) and a graceful stop,
#     and every system call it made is in the unit's SystemCallFilter (@system-service less
#     the ~ groups, expanded by systemd-analyze), every socket family in
#     RestrictAddressFamilies, and no mapping was made writable+executable or made
#     executable later (MemoryDenyWriteExecute).
# Exit 77 (ctest SKIP) only when systemd-analyze is missing; without strace, or with a
# sanitizer build, the syscall part alone is skipped (scripts/setup.sh installs strace).
set -uo pipefail
dmnode=${1:?usage: deploy_unit.sh path/to/dmnode}
here=$(cd "$(dirname "$0")" && pwd)
unit_src="$here/../../deploy/systemd/dmnode.service"
base=${DM_TEST_TMP:-/tmp}
mkdir -p "$base"
work=$(mktemp -d "$base/scenario-unit.XXXXXX")
source "$here/lib/nodes.bash"
traced="" tracer=""
cleanup() {
  [ -n "$traced" ] && kill -9 "$traced" 2>/dev/null
  [ -n "$tracer" ] && { kill -9 "$tracer" 2>/dev/null; wait "$tracer" 2>/dev/null; }
  cleanup_nodes
  rm -rf "$work"
}
trap cleanup EXIT

command -v systemd-analyze >/dev/null || { echo "SKIP: systemd-analyze is not installed"; exit 77; }

# ---- static checks ----
unit="$work/dmnode.service"
sed "s#/usr/local/bin/dmnode#$dmnode#" "$unit_src" >"$unit"
if systemd-analyze verify "$unit" >"$work/verify" 2>&1 && ! grep -qi 'dmnode.service:' "$work/verify"; then
  ok "systemd-analyze verify: no complaint"
else
  bad "systemd-analyze verify: $(cat "$work/verify")"
fi
if systemd-analyze security --offline=true "$unit" >"$work/sec" 2>&1; then
  level=$(sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p' "$work/sec")
  awk -v l="$level" 'BEGIN { exit !(l != "" && l <= 2.0) }' && ok "exposure level $level (<= 2.0)" ||
    bad "exposure level '$level': $(grep '✗' "$work/sec" | head -20)"
else
  echo "# systemd-analyze security --offline unsupported here: $(head -2 "$work/sec")"
fi
for d in 'NoNewPrivileges=yes' 'ProtectSystem=strict' 'ProtectHome=yes' 'PrivateTmp=yes' \
  'PrivateDevices=yes' 'ReadWritePaths=/var/lib/dmnode' 'CapabilityBoundingSet=$' \
  'RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX$' 'SystemCallFilter=@system-service$' \
  'MemoryDenyWriteExecute=yes' 'LockPersonality=yes' 'RestrictNamespaces=yes' 'User=dmnode' \
  'LoadCredential=master-password:' 'DMNODE_KEYS_MASTER_PASSWORD_FILE=%d/master-password'; do
  grep -Eq "^(Environment=)?${d}" "$unit_src" && ok "unit has $d" || bad "unit lacks $d"
done

# ---- the syscall filter against a real daemon ----
if ! command -v strace >/dev/null; then
  echo "# strace is not installed: syscall check skipped"
  finish; exit
fi
if grep -q -a -e __asan_init -e __tsan_init "$dmnode"; then
  # a sanitizer runtime makes calls of its own (and LeakSanitizer cannot run under ptrace):
  # the unit runs production builds, so only those are traced
  echo "# $dmnode is a sanitizer build: syscall check skipped"
  finish; exit
fi
expand() { # names of a syscall group, nested groups expanded
  systemd-analyze syscall-filter "$1" | sed -n '2,$p' | sed 's/#.*//' | tr -s ' \t' '\n' | grep -v '^$' |
    while read -r x; do case $x in @*) expand "$x" ;; *) echo "$x" ;; esac; done
}
# allowed groups on SystemCallFilter= lines, denied ones after "~"
allow=$(sed -n 's/^SystemCallFilter=\([^~]\)/\1/p' "$unit_src")
deny=$(sed -n 's/^SystemCallFilter=~//p' "$unit_src")
for g in $allow; do expand "$g"; done | sort -u >"$work/allow"
for g in $deny; do expand "$g"; done | sort -u >"$work/deny"
[ -s "$work/allow" ] && ok "SystemCallFilter expands to $(wc -l <"$work/allow") allowed, $(wc -l <"$work/deny") denied calls" ||
  bad "could not expand the SystemCallFilter groups"

make_node 1 || exit 1
dir=$(node_dir 1)
# a master password file, as the unit hands it over (LoadCredential -> keys.master_password_file)
(umask 077; printf '%s' "$KEY_MASTER_PASSWORD" >"$work/master-password")
KEY_MASTER_PASSWORD="" DMNODE_KEYS_MASTER_PASSWORD_FILE="$work/master-password" \
  strace -f -qq -o "$work/strace.log" "$dmnode" --config "$dir.toml" run >"$dir.status" 2>>"$dir.log" &
tracer=$!
for _ in $(seq 1 600); do
  grep -q '"status":"running"' "$dir.status" 2>/dev/null && break
  kill -0 "$tracer" 2>/dev/null || break
  sleep 0.05
done
traced=$(pgrep -P "$tracer" | head -1)
if grep -q '"status":"running"' "$dir.status" && [ -n "$traced" ]; then
  ok "daemon runs under strace, master password from a file"
else
  bad "daemon did not start under strace: $(tail -5 "$dir.log")"; finish; exit 1
fi
node_pid[1]=$traced
code=$(api 1 /v1/status -o /dev/null -w '%{http_code}')
[ "$code" = 200 ] && ok "internal API status" || bad "status: $code"
code=$(api 1 /v1/keys/rotate -X POST -o /dev/null -w '%{http_code}')
[ "$code" = 200 ] && ok "data key rotated" || bad "rotate: $code"
key=$(api 1 /v1/apikeys -X POST -H 'Content-Type: application/json' -d '{"name":"unit"}' | jq -r '.key // empty' 2>/dev/null)
ext="http://127.0.0.1:$(ext_port 1)"
E=(curl -sS --noproxy '*' -m 30 -H "X-API-Key: $key")
if [ -n "$key" ]; then
  id=$("${E[@]}" -X POST -H 'Content-Type: application/json' \
    -d '{"recipient":"0x742d35Cc6634C0532925a3b844Bc454e4438f44e","amount":"5","data":"dW5pdA=="}' "$ext/v1/shares" | jq -r '.id // empty')
  [ -n "$id" ] && ok "share posted on the external API" || bad "external POST failed"
  code=$("${E[@]}" -o /dev/null -w '%{http_code}' "$ext/v1/shares/$id")
  [ "$code" = 200 ] && ok "share read back" || bad "external GET: $code"
else
  bad "no API key from the internal API"
fi
kill -TERM "$traced"
for _ in $(seq 1 300); do kill -0 "$tracer" 2>/dev/null || break; sleep 0.05; done
wait "$tracer"; rc=$?
traced="" tracer=""; unset 'node_pid[1]'
grep -q 'stopped cleanly' "$dir.log" && [ "$rc" -eq 0 ] && ok "graceful stop under strace" || bad "stop: exit $rc, $(tail -3 "$dir.log")"

sed -nE 's/^[0-9]+ +([a-z0-9_]+)\(.*/\1/p' "$work/strace.log" | sort -u >"$work/used"
echo "# $(wc -l <"$work/used") distinct system calls: $(tr '\n' ' ' <"$work/used")"
outside=$(comm -23 "$work/used" "$work/allow" | tr '\n' ' ')
denied=$(comm -12 "$work/used" "$work/deny" | tr '\n' ' ')
[ -s "$work/used" ] && [ -z "$outside" ] && ok "every system call is in @system-service" || bad "calls outside the filter: $outside"
[ -z "$denied" ] && ok "no call from the denied groups ($deny)" || bad "denied calls used: $denied"
families=$(grep -o 'socket(AF_[A-Z0-9]*' "$work/strace.log" | sed 's/socket(//' | sort -u | tr '\n' ' ')
case " $families " in *" AF_INET "*) ;; *) bad "no AF_INET socket seen: is the trace complete?" ;; esac
others=$(for f in $families; do case $f in AF_INET | AF_INET6 | AF_UNIX) ;; *) echo "$f" ;; esac; done)
[ -z "$others" ] && ok "socket families: $families" || bad "socket families outside RestrictAddressFamilies: $others"
wx=$(grep -E 'mmap\(.*PROT_WRITE\|PROT_EXEC|mprotect\(.*PROT_EXEC' "$work/strace.log" | head -3)
[ -z "$wx" ] && ok "no W+X mapping, nothing made executable later" || bad "MemoryDenyWriteExecute would refuse: $wx"

finish
