#!/usr/bin/env bash
# Install what DataMgmt Node needs to build, test and run, from Debian's archive.
# Idempotent: installs only what is missing. Needs root (or sudo).
set -euo pipefail

PACKAGES=(
  build-essential cmake pkg-config git ca-certificates
  clang libclang-rt-14-dev          # libFuzzer targets and sanitizer runtimes
  openssl libssl-dev                # OpenSSL 3 (and `openssl speed` for bench/)
  libuv1-dev libsecp256k1-dev libmsgpack-dev librocksdb-dev
  libcurl4-openssl-dev libhttp-parser-dev libjansson-dev libcmocka-dev
  procps curl jq                    # scenario tests: process control, HTTP, JSON
  nginx strace                      # deploy/ tests: TLS proxy, the unit's syscall filter
  wrk                               # bench/api: HTTP load generator
)
# Node.js and npm run solc-js and install anvil (scripts/setup-node.sh). A node that
# already brings its own npm (NodeSource's nodejs, which conflicts with Debian's npm) is kept.
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  PACKAGES+=(nodejs npm)
fi

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#PACKAGES[@]} Debian packages present"
else
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "setup: need root to install: ${missing[*]}" >&2; exit 1; }
    SUDO="sudo"
  fi
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# the npm tools (solc-js, anvil) at the versions of package-lock.json
"$(dirname "$0")/setup-node.sh"
