#!/usr/bin/env bash
# The README's test command: installs what is missing, then builds and runs every
# test twice (a normal build and an AddressSanitizer+UBSan build), then builds the
# libFuzzer targets and runs each for a bounded time on its committed seed corpus.
#   DM_FUZZ_SECONDS   seconds per fuzz target (default 30; 0 skips fuzzing)
#   DM_JOBS           parallel build jobs (default: nproc)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
jobs=${DM_JOBS:-$(nproc)}
fuzz_seconds=${DM_FUZZ_SECONDS:-30}

"$root/scripts/setup.sh"

run_suite() { # name, build dir, ctest label regex ("" = all), cmake args...
  local name=$1 dir=$2 label=$3; shift 3
  echo "==== $name build ($dir)"
  cmake -S "$root" -B "$dir" "$@" >/dev/null
  cmake --build "$dir" -j "$jobs"
  echo "==== $name tests"
  (cd "$dir" && ctest --output-on-failure --timeout 900 ${label:+-L "$label"})
}

run_suite normal "$root/build" "" -DCMAKE_BUILD_TYPE=RelWithDebInfo

# RocksDB is C++ built without ASan: its std containers cannot be checked
# (container-overflow annotations would be false positives), everything else is.
export ASAN_OPTIONS=detect_leaks=1:detect_container_overflow=0:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
run_suite asan+ubsan "$root/build-asan" "" -DCMAKE_BUILD_TYPE=Debug -DDM_SANITIZE=ON

if [ "$fuzz_seconds" != 0 ]; then
  run_suite fuzz "$root/build-fuzz" fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDM_FUZZ=ON \
    -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ -DDM_FUZZ_SECONDS="$fuzz_seconds"
fi
echo "==== all test suites passed"
