#!/usr/bin/env bash
# Installs, from Debian's own packages, the real programs the end-to-end suite and the demo run
# against: the CNCF registry, skopeo, umoci, podman, the Docker engine (dockerd, containerd,
# ctr), htpasswd, curl and jq; and docker-compose 1.29, which test/deploy/compose.test.ts
# validates docker-compose.yml with. Idempotent: does nothing (not even `apt-get update`) when all are
# present. Works unattended (no standard input), as root or through password-less sudo.
#
# The suite starts its own instances on loopback ports; it needs none of the system services
# these packages come with, so they are not started during the installation (policy-rc.d).
# Set E2E_START_SERVICES=1 to let the packages start them as they normally would.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive

# package -> a command it provides, checked before and after.
declare -A PROVIDES=(
  [docker-registry]=docker-registry
  [skopeo]=skopeo
  [umoci]=umoci
  [podman]=podman
  [docker.io]=dockerd
  [containerd]=ctr
  [runc]=runc
  [apache2-utils]=htpasswd
  [curl]=curl
  [jq]=jq
  [docker-compose]=docker-compose
  # podman as root with vfs storage needs no fuse-overlayfs or slirp4netns (no containers run);
  # newuidmap/newgidmap are only for rootless use, but harmless and small.
  [uidmap]=newuidmap
)

installed () {
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

missing=()
for package in "${!PROVIDES[@]}"; do
  installed "$package" || missing+=("$package")
done

if [ "${#missing[@]}" -eq 0 ]; then
  echo "install-peers: all present (${!PROVIDES[*]})"
  exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
  as_root=()
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
  as_root=(sudo -n env DEBIAN_FRONTEND=noninteractive)
else
  echo "install-peers: missing ${missing[*]}; run this script as root (or with password-less sudo)" >&2
  exit 1
fi

policy=/usr/sbin/policy-rc.d
placed_policy=0
restore_policy () {
  if [ "$placed_policy" -eq 1 ]; then "${as_root[@]}" rm -f "$policy"; fi
}
trap restore_policy EXIT
if [ "${E2E_START_SERVICES:-0}" != 1 ] && [ ! -e "$policy" ]; then
  # 101 = "action forbidden": invoke-rc.d / deb-systemd-invoke skip starting the services.
  printf '#!/bin/sh\nexit 101\n' | "${as_root[@]}" tee "$policy" >/dev/null
  "${as_root[@]}" chmod 755 "$policy"
  placed_policy=1
fi

echo "install-peers: installing ${missing[*]}"
"${as_root[@]}" apt-get update -q
"${as_root[@]}" apt-get install -y -q --no-install-recommends \
  -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
  "${missing[@]}" </dev/null

failed=0
for package in "${!PROVIDES[@]}"; do
  if ! command -v "${PROVIDES[$package]}" >/dev/null && [ ! -x "/usr/sbin/${PROVIDES[$package]}" ]; then
    echo "install-peers: $package installed but ${PROVIDES[$package]} is not on PATH" >&2
    failed=1
  fi
done
exit "$failed"
