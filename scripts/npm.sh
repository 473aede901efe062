#!/usr/bin/env bash
# Installs the npm packages the tests use (scripts/npm/package.json, exact
# versions, package-lock.json) into scripts/npm/node_modules, which is
# git-ignored. Tests read them from there and never reach the network.
# Does nothing when the installed tree matches the lock file.
set -euo pipefail
cd "$(dirname "$0")/npm"
stamp=node_modules/.installed-lock.json
if [ -f "$stamp" ] && cmp -s package-lock.json "$stamp"; then
  exit 0
fi
command -v npm >/dev/null 2>&1 || { echo "npm: command not found (scripts/deps.sh installs it)" >&2; exit 1; }
echo "installing npm packages: $(sed -n 's/^ *"\([^"]*\)": "\([0-9][^"]*\)",\{0,1\}$/\1@\2/p' package.json | tr '\n' ' ')" >&2
npm ci --no-audit --no-fund --ignore-scripts --loglevel=error >&2
cp package-lock.json "$stamp"
