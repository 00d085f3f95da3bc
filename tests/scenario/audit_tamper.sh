#!/usr/bin/env bash
# Scenario: the audit log of a real node, tampered with in copies of its data
# directory. A daemon runs, records lifecycle, authentication and share entries
# (the share ones queued for anchoring), and stops; `dmnode audit verify` passes
# on the original and beside a running daemon, and in each copy where an entry
# was edited, deleted, swapped, its stored hash altered or the tail cut back past
# an anchored entry, it exits 5 and names the entry's seq. Cutting only entries
# that nothing anchored names is not detectable from the database (documented),
# and the scenario checks that it says so honestly (exit 0). Text log: the
# reference's line format, and no presented credential appears unmasked.
set -uo pipefail
dmnode=${1:?usage: audit_tamper.sh path/to/dmnode}
base=${DM_TEST_TMP:-/tmp}
mkdir -p "$base"
work=$(mktemp -d "$base/scenario-audit.XXXXXX")
# shellcheck source=lib/nodes.bash
source "$(dirname "$0")/lib/nodes.bash"
tool="$build_dir/dm_storetool"
trap 'cleanup_nodes; rm -rf "$work"' EXIT
[ -x "$tool" ] || { echo "missing $tool (build the dm_storetool target)"; exit 1; }

make_node 1 || exit 1
start_node 1 || exit 1
cfg="$(node_dir 1).toml"
log="$(node_dir 1).log"

# entries: node_start, authentication (admin token; one bogus credential), shares
bogus="BOGUSapikey0123456789abcdefXYZ"
code=$(curl -sS --noproxy '*' -m 10 -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $bogus" \
  "http://127.0.0.1:$(api_port 1)/v1/status")
[ "$code" = 401 ] && ok "bogus credential refused" || bad "bogus credential: HTTP $code"
for i in 1 2 3; do
  if "$dmnode" --config "$cfg" share submit --recipient 0x742d35Cc6634C0532925a3b844Bc454e4438f44e \
    --amount "$i" --data "share $i" >"$work/submit.out" 2>&1; then :; else
    bad "share submit $i"; cat "$work/submit.out"
  fi
done
if "$dmnode" --datadir "$(node_dir 1)" audit verify >"$work/out" 2>&1; then
  ok "verify beside the running daemon: $(cat "$work/out")"
else
  bad "verify beside the daemon: $(cat "$work/out")"
fi
stop_node 1

db() { echo "$1/db"; }
orig=$(node_dir 1)
list() { "$tool" "$(db "$1")" list audit; }
seqs_of() { list "$1" | grep "\"event\":\"$2\"" | cut -f1 | sed 's/^u64://'; }

list "$orig" >"$work/entries"
n=$(wc -l <"$work/entries")
last=$(tail -1 "$work/entries" | cut -f1 | sed 's/^u64://')
read -r -a shares <<<"$(seqs_of "$orig" data_share | tr '\n' ' ')"
[ "${#shares[@]}" -eq 3 ] && ok "three data_share entries (${shares[*]})" || bad "data_share entries: ${shares[*]:-none}"
grep -q '"event":"node_start"' "$work/entries" && ok "node_start recorded" || bad "no node_start entry"
grep -q '"event":"node_stop"' "$work/entries" && ok "node_stop recorded" || bad "no node_stop entry"
grep -q '"event":"auth_failure"' "$work/entries" && ok "auth failure recorded" || bad "no auth_failure entry"
outbox=$("$tool" "$(db "$orig")" list outbox | wc -l)
[ "$outbox" -ge 3 ] && ok "share events queued for anchoring ($outbox)" || bad "outbox holds $outbox"

# text log: the reference's line format; the bogus credential never in clear
grep -Eq '^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2} - security - INFO - data_share: share_id=' "$log" \
  && ok "data_share text lines in the reference's format" || bad "no data_share text line"
grep -Eq ' - security - WARNING - ' "$log" && ok "authentication failure logged as WARNING" || bad "no WARNING security line"
if grep -q "$bogus" "$log" || "$tool" "$(db "$orig")" list audit | grep -q "$bogus"; then
  bad "the presented credential appears unmasked"
else
  ok "the presented credential is never stored or logged in clear"
fi

verify() { # verify DIR: exit code in $vrc, output in $work/out
  "$dmnode" --datadir "$1" audit verify --json >"$work/out" 2>&1
  vrc=$?
}
verify "$orig"
[ "$vrc" -eq 0 ] && grep -q "\"entries\":$n" "$work/out" && ok "original intact ($n entries)" \
  || bad "original: exit $vrc $(cat "$work/out")"

# expect_named CASE SEQ: the copy fails verification naming SEQ
expect_named() {
  local what=$1 seq=$2 dir=$work/$1
  verify "$dir"
  if [ "$vrc" -eq 5 ] && grep -q "\"first_bad_seq\":${seq}[,}]" "$work/out"; then
    ok "$what: exit 5, names entry $seq"
  else
    bad "$what: exit $vrc, want 5 naming $seq: $(cat "$work/out")"
  fi
  "$dmnode" --datadir "$dir" audit verify >"$work/out.txt" 2>&1
  grep -q "entry $seq" "$work/out.txt" && ok "$what: text output names entry $seq" \
    || bad "$what: text output: $(cat "$work/out.txt")"
}
copy() { rm -rf "${work:?}/$1"; cp -a "$orig" "$work/$1"; }

# edit a field of the second share's entry (its amount)
s=${shares[1]}
copy edit
"$tool" "$(db "$work/edit")" get audit "u64:$s" | sed 's/"amount":"2"/"amount":"9"/' >"$work/v"
grep -q '"amount":"9"' "$work/v" || bad "edit: pattern not found"
"$tool" "$(db "$work/edit")" put audit "u64:$s" - <"$work/v"
expect_named edit "$s"

# delete an entry in the middle
copy delete
"$tool" "$(db "$work/delete")" delete audit "u64:$s"
expect_named delete "$s"

# swap two neighbours
copy swap
"$tool" "$(db "$work/swap")" get audit "u64:$s" >"$work/a"
"$tool" "$(db "$work/swap")" get audit "u64:$((s + 1))" >"$work/b"
"$tool" "$(db "$work/swap")" put audit "u64:$s" - <"$work/b"
"$tool" "$(db "$work/swap")" put audit "u64:$((s + 1))" - <"$work/a"
expect_named swap "$s"

# alter the stored hash of the first entry
copy hash
"$tool" "$(db "$work/hash")" get audit u64:1 >"$work/v"
h=$(jq -r .hash "$work/v")
flip=$(printf '%s' "${h:0:1}" | tr '0-9a-f' '1-9a0')
sed "s/\"hash\":\"$h\"/\"hash\":\"$flip${h:1}\"/" "$work/v" >"$work/v2"
"$tool" "$(db "$work/hash")" put audit u64:1 - <"$work/v2"
expect_named hash 1

# cut the tail: the entries after the last share carry nothing anchored, so removing
# them leaves a valid chain (only an anchored head reveals it: docs/STORAGE.md);
# removing the last share's entry too is named, its outbox entry outlives it
copy cut
s3=${shares[2]}
for ((q = last; q > s3; q--)); do "$tool" "$(db "$work/cut")" delete audit "u64:$q"; done
verify "$work/cut"
[ "$vrc" -eq 0 ] && ok "tail cut back to the last anchored entry: not detectable locally (documented)" \
  || bad "cut to $s3: exit $vrc $(cat "$work/out")"
"$tool" "$(db "$work/cut")" delete audit "u64:$s3"
expect_named cut "$s3"

# the original is untouched by all of this
verify "$orig"
[ "$vrc" -eq 0 ] && ok "original still intact" || bad "original after the copies: exit $vrc"

finish
