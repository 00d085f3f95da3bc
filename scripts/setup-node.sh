#!/usr/bin/env bash
# Install the npm tools the tests and the main command use: solc-js (compiles
# contracts/AuditAnchor.sol) and anvil (the local Ethereum node), at the exact versions of
# package-lock.json, into this repository's node_modules/. Idempotent: node and npm come
# from Debian (nodejs, npm) only if missing, and `npm ci` runs only when node_modules/ is
# missing or package-lock.json changed since the last install (stamp:
# node_modules/.dm-stamp holds the lock's sha256). Prints the anvil path and version.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
lock="$root/package-lock.json"
stamp="$root/node_modules/.dm-stamp"
anvil="$root/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil"

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "setup-node: need root to install nodejs npm" >&2; exit 1; }
    SUDO="sudo"
  fi
  echo "setup-node: installing nodejs npm"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends nodejs npm
fi

# One installer at a time (two scripts starting together would both run npm ci); the lock
# file itself is the mutex, since npm ci removes node_modules/.
exec 9<"$lock"
flock -w 600 9 || { echo "setup-node: another install holds $lock for 10 minutes" >&2; exit 1; }

want=$(sha256sum "$lock" | cut -d' ' -f1)
have=$(cat "$stamp" 2>/dev/null || true)
if [ "$want" != "$have" ] || [ ! -x "$anvil" ] || [ ! -f "$root/node_modules/solc/package.json" ]; then
  echo "setup-node: npm ci (node $(node --version), npm $(npm --version))"
  # anvil's package declares node >= 20 but ships a native binary that node never runs,
  # so Debian 12's node 18 is enough: never let an engine-strict config refuse it.
  (cd "$root" && npm ci --no-audit --no-fund --engine-strict=false --loglevel=error)
  [ -x "$anvil" ] || { echo "setup-node: npm ci did not install $anvil" >&2; exit 1; }
  echo "$want" >"$stamp"
else
  echo "setup-node: node_modules up to date with package-lock.json"
fi

echo "setup-node: anvil $anvil"
"$anvil" --version | head -1
echo "setup-node: solc $(cd "$root" && node -p "require('solc').version()")"
