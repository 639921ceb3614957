#!/usr/bin/env bash
# End-to-end suite (`npm run test:e2e`): real clients (docker, podman, skopeo, ctr, curl) against
# a real registry (Debian's docker-registry) through the proxy built from this checkout.
#
#   scripts/e2e.sh                         every test file in test/e2e
#   scripts/e2e.sh test/e2e/docker.test.ts one file (any tap arguments pass through)
#
# Environment: E2E_KEEP=1 keeps the temporary directories (logs of every peer) for a post-mortem;
# E2E_ROTATION_SECONDS (default 60) sets the length of the token-rotation run; E2E_DOCKER_CLI
# picks the docker client binary (default: `docker` on PATH); E2E_JOBS test files in parallel
# (default 2); E2E_SKIP_IMAGE=1 leaves out the container-image test (test/deploy/image.test.ts).
#
# Needs root: it runs its own dockerd, containerd and podman (as root, vfs storage), all on
# loopback ports, with state under one temporary directory that is removed at the end.
set -euo pipefail

cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "e2e: needs root (it starts its own dockerd, containerd and podman); try: sudo npm run test:e2e" >&2
  exit 1
fi

bash scripts/install-peers.sh

echo "e2e: building the proxy"
npm run build --silent

run_dir=$(mktemp -d "${TMPDIR:-/tmp}/ecr-e2e.XXXXXX")
export E2E_RUN_DIR="$run_dir"

# Stops whatever a test file left running (should it have died before its teardown), by the
# process-group ids the harness recorded, and only processes working inside our run directory.
cleanup () {
  local status=$?
  if [ -f "$run_dir/pgids" ]; then
    while read -r pgid; do
      for pid in $(ps -eo pid=,pgid= | awk -v g="$pgid" '$2 == g { print $1 }'); do
        cwd=$(readlink "/proc/$pid/cwd" 2>/dev/null || true)
        case "$cwd" in
          "$run_dir"/*) echo "e2e: stopping leftover process $pid ($(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | cut -c1-80))" >&2
                        kill -KILL "$pid" 2>/dev/null || true ;;
        esac
      done
    done <"$run_dir/pgids"
  fi
  if [ "${E2E_KEEP:-0}" = 1 ]; then
    echo "e2e: kept $run_dir"
  else
    rm -rf "$run_dir"
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

docker_cli=${E2E_DOCKER_CLI:-docker}
echo "e2e: peers under test:"
echo "  node $(node --version)"
echo "  docker-registry $(docker-registry --version 2>/dev/null | awk '{print $3}')"
echo "  skopeo $(skopeo --version | awk '{print $3}')"
echo "  podman $(podman --version | awk '{print $3}')"
echo "  docker client $("$docker_cli" --version | awk '{print $3}' | tr -d ,) ($(command -v "$docker_cli"))"
echo "  dockerd $(dockerd --version | awk '{print $3}' | tr -d ,)"
echo "  containerd $(containerd --version | awk '{print $3}'), ctr $(ctr --version | awk '{print $3}')"
echo "  umoci $(umoci --version | awk '{print $3}'), curl $(curl --version | head -1 | awk '{print $2}')"

if [ "$#" -eq 0 ]; then
  # The longest file (a minute of token rotation) first, so the others run beside it.
  set -- test/e2e/token-rotation.test.ts
  for file in test/e2e/*.test.ts; do
    [ "$file" = test/e2e/token-rotation.test.ts ] || set -- "$@" "$file"
  done
  # The container image: built offline from this host's node, run, and pulled through.
  if [ "${E2E_SKIP_IMAGE:-0}" != 1 ]; then
    export ECR_PROXY_IMAGE_TEST=1
    set -- "$@" test/deploy/image.test.ts
  fi
fi

# Each test file starts its own registry, ECR API stand-in, proxy and client daemons; a file
# that hangs is stopped after 10 minutes. Failures name the client, its command line and its
# stderr, followed by the registry's error responses and the proxy's log.
npx tap --disable-coverage --allow-incomplete-coverage --timeout=600 --jobs="${E2E_JOBS:-2}" "$@"
