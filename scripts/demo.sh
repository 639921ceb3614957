#!/usr/bin/env bash
# `npm run demo`: see ecr-auth-proxy push and pull an image with no AWS account. Starts a real
# registry, a local stand-in for the ECR API and the proxy (all on 127.0.0.1), pushes and pulls
# a small image through the proxy with skopeo, explains each step, and cleans up.
# DEMO_KEEP=1 keeps everything running until Ctrl-C so you can try docker or podman by hand.
set -euo pipefail

cd "$(dirname "$0")/.."

need=()
for cmd in docker-registry skopeo umoci htpasswd; do
  command -v "$cmd" >/dev/null || need+=("$cmd")
done
if [ "${#need[@]}" -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then
    bash scripts/install-peers.sh
  else
    echo "demo: missing ${need[*]}; install them once with: sudo scripts/install-peers.sh" >&2
    exit 1
  fi
fi

if [ ! -d node_modules ]; then
  echo "demo: run npm ci first" >&2
  exit 1
fi

echo "demo: building the proxy (npm run build)"
npm run build --silent

# The demo is TypeScript; run it with the TypeScript loader tap already brings (no type check).
export TS_NODE_TRANSPILE_ONLY=1
exec node --no-warnings=ExperimentalWarning --import @tapjs/typescript/import scripts/demo.ts
