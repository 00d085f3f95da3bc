#!/usr/bin/env bash
# bench/crypto/run.sh: the project's crypto primitives against `openssl speed`, in one run.
#
# Builds bench_crypto (Release, in <root>/build-bench unless DM_BENCH_BUILD is set) if needed,
# then measures each primitive twice, back to back: once through the project's API
# (bench_crypto) and once with the openssl command-line tool on the same machine. The
# pairs are interleaved (project RSA, openssl RSA, project Fernet 1 KiB, openssl AES/HMAC
# 1 KiB, ...) so that load from other users of a shared VM hits both sides alike; the
# ratio project/openssl is the figure to read, not the absolute ops/s.
#
# Two ratios per primitive:
#   ratio      wall clock on both sides (CLOCK_MONOTONIC; `openssl speed -elapsed`)
#   cpu_ratio  ops per CPU second on both sides (CLOCK_PROCESS_CPUTIME_ID; the openssl
#              process's user+sys time from bash's `time`, or `openssl speed` without
#              -elapsed for RSA, whose one process runs two tests). Steadier than the wall
#              ratio when other processes compete for the cores (load average > nproc/2).
#
# stdout: JSON lines only.
#   {"bench":"crypto","op":...,"project_ops_per_s":...,"openssl_ops_per_s":...,"ratio":...}
#   one per primitive, then one {"bench":"crypto","summary":true,...} with the machine.
# stderr: progress and, at the end, a Markdown table of the same figures.
# Raw outputs of both tools are kept in bench/out/crypto-<time>/ (git-ignored).
#
# usage: bench/crypto/run.sh [--seconds N] [--repeat R] [--no-build]
#   --seconds N  seconds per measurement, an integer (openssl speed takes whole seconds);
#                default 1
#   --repeat R   run the whole interleaved sequence R times (default 1), alternating which
#                side of each pair goes first; each side then reports its best run (the
#                one least disturbed by other processes) and the ratio is best/best
#   --no-build   use the existing build dir as is
# environment: DM_BENCH_BUILD (build dir), DM_BENCH_OUT (raw output dir)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=${DM_BENCH_BUILD:-$ROOT/build-bench}
SECS=1
REPEAT=1
DO_BUILD=1

while [ $# -gt 0 ]; do
    case $1 in
    --seconds)
        [ $# -ge 2 ] || { echo "run.sh: --seconds needs a value" >&2; exit 2; }
        SECS=$2
        shift 2
        ;;
    --repeat)
        [ $# -ge 2 ] || { echo "run.sh: --repeat needs a value" >&2; exit 2; }
        REPEAT=$2
        shift 2
        ;;
    --no-build)
        DO_BUILD=0
        shift
        ;;
    -h | --help)
        sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "run.sh: unknown argument '$1' (try --help)" >&2
        exit 2
        ;;
    esac
done
if ! [[ $SECS =~ ^[1-9][0-9]*$ ]] || ! [[ $REPEAT =~ ^[1-9][0-9]*$ ]]; then
    echo "run.sh: --seconds and --repeat take positive integers" >&2
    exit 2
fi
command -v openssl >/dev/null || { echo "run.sh: openssl not found" >&2; exit 1; }

log() { echo "run.sh: $*" >&2; }

# ---- build ----
if [ "$DO_BUILD" = 1 ]; then
    if [ ! -f "$BUILD/CMakeCache.txt" ]; then
        log "configuring $BUILD (Release)"
        cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >&2
    fi
    log "building bench_crypto"
    cmake --build "$BUILD" --target bench_crypto -j "$(nproc)" >&2
fi
BIN=$BUILD/bench_crypto
[ -x "$BIN" ] || { echo "run.sh: $BIN missing (build failed?)" >&2; exit 1; }
BUILD_TYPE=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$BUILD/CMakeCache.txt" 2>/dev/null || true)
if [ "${BUILD_TYPE:-}" != "Release" ]; then
    log "warning: $BUILD is a '${BUILD_TYPE:-?}' build, not Release"
fi

OUT=${DM_BENCH_OUT:-$ROOT/bench/out/crypto-$(date +%Y%m%dT%H%M%S)}
mkdir -p "$OUT"
rm -f "$OUT"/project.jsonl "$OUT"/results.jsonl "$OUT"/openssl-*.txt "$OUT"/table.md
: >"$OUT/project.jsonl"
: >"$OUT/openssl-kdf.txt"
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo unknown)

# bash's `time` keyword reports a child's CPU time in this format
TIMEFORMAT='%3U %3S'

# ---- measuring ----
# Every measurement is kept in $OUT; the figures are derived afterwards from all repetitions.

# project OPS: bench_crypto for the ops matching OPS (comma list of names/prefixes)
project() {
    log "[$REP/$REPEAT] project: $1"
    "$BIN" --seconds "$SECS" --only "$1" >>"$OUT/project.jsonl"
}

# ossl_speed TAG ARGS...: `openssl speed -mr -elapsed -seconds N ARGS` into
# openssl-TAG.REP.txt, and the process's "user sys" CPU seconds into openssl-TAG.REP.cpu
ossl_speed() {
    local tag=$1
    shift
    log "[$REP/$REPEAT] openssl speed -elapsed $*"
    { time openssl speed -mr -elapsed -seconds "$SECS" "$@" \
        >"$OUT/openssl-$tag.$REP.txt" 2>&1; } 2>"$OUT/openssl-$tag.$REP.cpu"
}

now_ns() { date +%s%N; }

# PBKDF2-HMAC-SHA256 through the openssl tool, with the password "x" and salt "y" that
# bench_crypto uses too.
kdf() {
    openssl kdf -keylen 32 -kdfopt digest:SHA256 -kdfopt pass:x -kdfopt salt:y \
        -kdfopt iter:"$1" PBKDF2
}

# cpu_sum FILE: user + sys seconds from a `time` report
cpu_sum() { awk '{ printf "%.4f\n", $1 + $2 }' "$1"; }

# ossl_kdf: time `openssl kdf ... iter:600000` until N seconds (and >= 3 runs) have
# passed, by wall clock and by CPU time. The process start-up, the mean of 10 runs with
# iter:1, is subtracted from both. Appends to openssl-kdf.txt:
#   <ops/s> <ops per CPU s> <ops/s without the start-up correction> <start-up ms> <runs>
ossl_kdf() {
    log "[$REP/$REPEAT] openssl kdf PBKDF2 iter:600000 (timed by the shell)"
    local t0 n el su_ns su_cpu cpu
    kdf 1 >/dev/null
    t0=$(now_ns)
    { time for _ in 1 2 3 4 5 6 7 8 9 10; do kdf 1 >/dev/null; done; } 2>"$OUT/kdf.cpu"
    su_ns=$((($(now_ns) - t0) / 10))
    su_cpu=$(awk '{ printf "%.6f\n", ($1 + $2) / 10 }' "$OUT/kdf.cpu")
    kdf 600000 >"$OUT/openssl-kdf-key.txt" # warm-up, and the derived key for the record
    n=0
    t0=$(now_ns)
    {
        time while :; do
            kdf 600000 >/dev/null
            n=$((n + 1))
            el=$(($(now_ns) - t0))
            if [ $n -ge 3 ] && [ $el -ge $((SECS * 1000000000)) ]; then break; fi
        done
    } 2>"$OUT/kdf.cpu"
    cpu=$(cpu_sum "$OUT/kdf.cpu")
    awk -v n=$n -v el="$el" -v su="$su_ns" -v cpu="$cpu" -v sucpu="$su_cpu" 'BEGIN {
            printf "%.4f %.4f %.4f %.3f %d\n", n / ((el - n * su) / 1e9),
                n / (cpu - n * sucpu), n / (el / 1e9), su / 1e6, n
        }' >>"$OUT/openssl-kdf.txt"
    rm -f "$OUT/kdf.cpu"
}

# The pairs, one function per side. Odd repetitions run the project first, even ones
# openssl first, so neither side always gets the quieter slot.
p_rsa() { project rsa2048; }
o_rsa() {
    ossl_speed rsa rsa2048
    # the same without -elapsed: openssl then divides by its own user CPU time per test
    log "[$REP/$REPEAT] openssl speed rsa2048 (CPU time)"
    openssl speed -mr -seconds "$SECS" rsa2048 >"$OUT/openssl-rsacpu.$REP.txt" 2>&1
}
p_fernet_1k() { project fernet_encrypt_1k,fernet_decrypt_1k; }
o_fernet_1k() {
    ossl_speed aes-enc-1k -bytes 1024 -evp aes-128-cbc
    ossl_speed aes-dec-1k -bytes 1024 -decrypt -evp aes-128-cbc
    ossl_speed hmac-1k -bytes 1024 -hmac sha256
}
p_fernet_1m() { project fernet_encrypt_1m,fernet_decrypt_1m; }
o_fernet_1m() {
    ossl_speed aes-enc-1m -bytes 1048576 -evp aes-128-cbc
    ossl_speed aes-dec-1m -bytes 1048576 -decrypt -evp aes-128-cbc
    ossl_speed hmac-1m -bytes 1048576 -hmac sha256
}
# OpenSSL 3.0 has no Keccak-256; SHA3-256 is the same permutation and rate (136 B),
# only the domain/padding byte differs (0x06 vs 0x01), so the cost is the same
p_keccak() { project keccak256; }
o_keccak() {
    ossl_speed sha3-32 -bytes 32 -evp sha3-256
    ossl_speed sha3-1k -bytes 1024 -evp sha3-256
}
p_sha256() { project sha256_1k; }
o_sha256() { ossl_speed sha256-1k -bytes 1024 -evp sha256; }
p_pbkdf2() { project pbkdf2_sha256_600k; }
o_pbkdf2() { ossl_kdf; }

for REP in $(seq 1 "$REPEAT"); do
    for pair in rsa fernet_1k fernet_1m keccak sha256 pbkdf2; do
        if [ $((REP % 2)) = 1 ]; then
            "p_$pair"
            "o_$pair"
        else
            "o_$pair"
            "p_$pair"
        fi
    done
done

# ---- figures: best and worst of the repetitions ----

# best_worst: read numbers, one a line; print "<max> <min>"
best_worst() {
    awk 'NF { v = $1 + 0; if (!n || v > hi) hi = v; if (!n || v < lo) lo = v; n++ }
         END { if (n) printf "%.4f %.4f\n", hi, lo }'
}

# project_vals OP FIELD: FIELD of each of OP's lines in project.jsonl
project_vals() {
    awk -v op="\"op\":\"$1\"" -v key="\"$2\":" '
        index($0, op) && (i = index($0, key)) {
            s = substr($0, i + length(key)); sub(/[,}].*/, "", s); print s + 0
        }' "$OUT/project.jsonl"
}

# ossl_vals TAG wall|cpu: per repetition, ops/s of a one-test `openssl speed` run:
# count / elapsed from "+R:<count>:<name>:<seconds>", or count / (user + sys)
ossl_vals() {
    local r
    for r in $(seq 1 "$REPEAT"); do
        awk -F: -v basis="$2" -v cpuf="$OUT/openssl-$1.$r.cpu" '
            $1 == "+R" {
                if (basis == "wall") { printf "%.4f\n", $2 / $4; exit }
                getline line < cpuf; split(line, c, " ")
                printf "%.4f\n", $2 / (c[1] + c[2]); exit
            }' "$OUT/openssl-$1.$r.txt"
    done
}

# ossl_rsa_vals FILETAG COL: "+F2:<k>:<bits>:<sign/s>:<verify/s>"; COL 4 sign, 5 verify
ossl_rsa_vals() {
    awk -F: -v c="$2" '$1 == "+F2" { printf "%.4f\n", $c }' "$OUT"/openssl-"$1".*.txt
}

# kdf_vals COL: a column of openssl-kdf.txt
kdf_vals() { awk -v c="$1" '{ print $c }' "$OUT/openssl-kdf.txt"; }

calc() { awk "BEGIN { printf \"%.4f\", $1 }"; }

# fernet_bound AES_OPS HMAC_OPS: ops/s of doing both, one after the other
fernet_bound() { calc "1 / (1 / $1 + 1 / $2)"; }

# emit OP P_WALL O_WALL P_CPU O_CPU LABEL [EXTRA_JSON]; each figure "best worst"
emit() {
    local op=$1 label=$6 extra=${7:-}
    local p p_w o o_w pc pc_w oc oc_w
    read -r p p_w <<<"$2"
    read -r o o_w <<<"$3"
    read -r pc pc_w <<<"$4"
    read -r oc oc_w <<<"$5"
    for v in "$p" "$p_w" "$o" "$o_w" "$pc" "$pc_w" "$oc" "$oc_w"; do
        if [ -z "$v" ] || [ "$(calc "($v > 0)")" != 1.0000 ]; then
            log "error: missing figure for $op ('$2' '$3' '$4' '$5'); see $OUT"
            exit 1
        fi
    done
    printf '{"bench":"crypto","op":"%s","project_ops_per_s":%s,"openssl_ops_per_s":%s,"ratio":%s,"cpu_ratio":%s,"bytes":%s,"repeat":%s,"project_ops_per_cpu_s":%s,"openssl_ops_per_cpu_s":%s,"project_worst_ops_per_s":%s,"openssl_worst_ops_per_s":%s,"worst_ratio":%s,"openssl":"%s"%s}\n' \
        "$op" "$p" "$o" "$(calc "$p / $o")" "$(calc "$pc / $oc")" \
        "$(project_vals "$op" bytes | head -n1)" "$REPEAT" "$pc" "$oc" "$p_w" "$o_w" \
        "$(calc "$p_w / $o_w")" "$label" "$extra" | tee -a "$OUT/results.jsonl"
}

proj() { project_vals "$1" "$2" | best_worst; }

for op in sign verify; do
    if [ $op = sign ]; then col=4; else col=5; fi
    emit "rsa2048_$op" "$(proj "rsa2048_$op" ops_per_s)" "$(ossl_rsa_vals rsa $col | best_worst)" \
        "$(proj "rsa2048_$op" ops_per_cpu_s)" "$(ossl_rsa_vals rsacpu $col | best_worst)" \
        "speed rsa2048 $op, PKCS#1 v1.5 (PSS costs the same modexp)"
done

# Fernet = AES-128-CBC + HMAC-SHA256 (+ base64) at the same size. The bound is taken per
# basis from the best (worst) AES and HMAC runs.
for size in 1k 1m; do
    if [ $size = 1k ]; then bytes=1024; else bytes=1048576; fi
    for dir in encrypt decrypt; do
        if [ $dir = encrypt ]; then tag=aes-enc-$size; d=""; else tag=aes-dec-$size; d=" -decrypt"; fi
        op=fernet_${dir}_$size
        read -r aes aes_w <<<"$(ossl_vals "$tag" wall | best_worst)"
        read -r hmac hmac_w <<<"$(ossl_vals "hmac-$size" wall | best_worst)"
        read -r aesc aesc_w <<<"$(ossl_vals "$tag" cpu | best_worst)"
        read -r hmacc hmacc_w <<<"$(ossl_vals "hmac-$size" cpu | best_worst)"
        emit "$op" "$(proj "$op" ops_per_s)" \
            "$(fernet_bound "$aes" "$hmac") $(fernet_bound "$aes_w" "$hmac_w")" \
            "$(proj "$op" ops_per_cpu_s)" \
            "$(fernet_bound "$aesc" "$hmacc") $(fernet_bound "$aesc_w" "$hmacc_w")" \
            "bound 1/(1/aes-128-cbc$d + 1/hmac sha256) at $bytes B" \
            ",\"openssl_aes_ops_per_s\":$aes,\"openssl_hmac_ops_per_s\":$hmac"
    done
done

# emit_speed OP TAG LABEL: a primitive with a one-test `openssl speed` counterpart
emit_speed() {
    emit "$1" "$(proj "$1" ops_per_s)" "$(ossl_vals "$2" wall | best_worst)" \
        "$(proj "$1" ops_per_cpu_s)" "$(ossl_vals "$2" cpu | best_worst)" "$3"
}
emit_speed keccak256_32 sha3-32 "speed -evp sha3-256 at 32 B (same permutation, other padding)"
emit_speed keccak256_1k sha3-1k "speed -evp sha3-256 at 1024 B (same permutation, other padding)"
emit_speed sha256_1k sha256-1k "speed -evp sha256 at 1024 B"

read -r p_kdf _ <<<"$(proj pbkdf2_sha256_600k ops_per_s)"
read -r o_kdf _ <<<"$(kdf_vals 1 | best_worst)"
emit pbkdf2_sha256_600k "$(proj pbkdf2_sha256_600k ops_per_s)" "$(kdf_vals 1 | best_worst)" \
    "$(proj pbkdf2_sha256_600k ops_per_cpu_s)" "$(kdf_vals 2 | best_worst)" \
    "openssl kdf PBKDF2 iter:600000, timed by the shell, minus process start-up" \
    ",\"project_ms_per_op\":$(calc "1000 / $p_kdf"),\"openssl_ms_per_op\":$(calc "1000 / $o_kdf"),\"openssl_startup_ms\":$(kdf_vals 4 | best_worst | cut -d' ' -f2),\"openssl_ops_per_s_uncorrected\":$(kdf_vals 3 | best_worst | cut -d' ' -f1)"

# ---- summary ----
json_str() { printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g'; }
cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || true)
flags=$(awk -F': ' '/^flags/ { print $2; exit }' /proc/cpuinfo 2>/dev/null |
    tr ' ' '\n' | grep -xE 'aes|avx2|avx512f|sha_ni|bmi2|adx' | tr '\n' ' ' | sed 's/ $//' || true)
# ratios_of KEY: {"op":value,...} from results.jsonl
ratios_of() {
    awk -v key="\"$1\":" '{
            split($0, a, "\"op\":\""); split(a[2], b, "\"")
            v = substr($0, index($0, key) + length(key)); sub(/[,}].*/, "", v)
            printf "%s\"%s\":%s", (NR > 1 ? "," : ""), b[1], v
        }' "$OUT/results.jsonl"
}
summary=$(printf '{"bench":"crypto","summary":true,"date":"%s","seconds":%s,"repeat":%s,"nproc":%s,"cpu":"%s","cpu_flags":"%s","kernel":"%s","openssl":"%s","loadavg_start":"%s","loadavg_end":"%s","build_type":"%s","raw_dir":"%s","ratios":{%s},"cpu_ratios":{%s}}' \
    "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$SECS" "$REPEAT" "$(nproc)" "$(json_str "${cpu:-unknown}")" \
    "$flags" "$(uname -r)" "$(json_str "$(openssl version)")" "$LOAD_START" \
    "$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo unknown)" "${BUILD_TYPE:-unknown}" \
    "$(json_str "$OUT")" "$(ratios_of ratio)" "$(ratios_of cpu_ratio)")
echo "$summary" | tee -a "$OUT/results.jsonl"

# ---- human-readable table (stderr and table.md) ----
awk '
    function field(k,    v) { v = $0; sub(".*\"" k "\":", "", v); sub(/[,}].*/, "", v); return v + 0 }
    function num(v) { return v >= 100 ? sprintf("%.0f", v) : sprintf("%.2f", v) }
    !/"summary"/ {
        split($0, a, "\"op\":\""); split(a[2], b, "\""); op = b[1]
        if (NR == 1) {
            print "| primitive | project ops/s | openssl ops/s | ratio | ratio of worst runs | CPU-time ratio |"
            print "|---|---:|---:|---:|---:|---:|"
        }
        printf "| %s | %s | %s | %.2f | %.2f | %.2f |\n", op, num(field("project_ops_per_s")),
            num(field("openssl_ops_per_s")), field("ratio"), field("worst_ratio"),
            field("cpu_ratio")
    }' "$OUT/results.jsonl" | tee "$OUT/table.md" >&2
log "raw outputs in $OUT"
