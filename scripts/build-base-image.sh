#!/usr/bin/env bash
# Assemble local stand-ins for the Dockerfile's base images on a machine that cannot reach
# Docker Hub. Nothing is pulled: the images are made from this host's files and `docker import`ed.
#
#   ecr-auth-proxy-base:local   runtime: node (the host's binary, or $NODE_BIN) + the shared
#                               libraries ldd lists, /etc/passwd+group with user node (1000:1000),
#                               /tmp, /home/node, CA certificates. No shell, no package manager.
#   ecr-auth-proxy-build:local  the same + /bin/sh, /usr/bin/env, npm, and an npm cache primed for
#                               the current package-lock.json, with npm set to --offline: the
#                               Dockerfile's `npm ci` steps then run inside the build with no network.
#
# Then:  docker build --build-arg BASE_IMAGE=ecr-auth-proxy-base:local \
#                     --build-arg BUILD_IMAGE=ecr-auth-proxy-build:local -t ecr-auth-proxy:local .
#
# Priming the npm cache is the only step that talks to the npm registry (through npm itself, on
# the host); pass --no-build-image to make only the runtime image. An image already made from the
# same node binary (and, for the build image, the same package-lock.json) is kept; --force remakes
# it. Each image carries what it was made from as labels.
#
# Environment: NODE_BIN (default: `command -v node`), NPM_CLI (npm's package dir, default: found
# from `command -v npm`), BASE_TAG, BUILD_TAG, DOCKER (default: docker; honours DOCKER_HOST).
set -euo pipefail

ROOT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BASE_TAG=${BASE_TAG:-ecr-auth-proxy-base:local}
BUILD_TAG=${BUILD_TAG:-ecr-auth-proxy-build:local}
DOCKER=${DOCKER:-docker}
MAKE_BUILD_IMAGE=1
FORCE=0

while [ $# -gt 0 ]; do
  case "$1" in
    --no-build-image) MAKE_BUILD_IMAGE=0 ;;
    --force) FORCE=1 ;;
    --base-tag) BASE_TAG=$2; shift ;;
    --build-tag) BUILD_TAG=$2; shift ;;
    -h|--help) sed -n '2,20p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
  shift
done

log () { printf '[build-base-image] %s\n' "$*" >&2; }
die () { log "error: $*"; exit 1; }

command -v "$DOCKER" >/dev/null || die "docker CLI not found (apt-get install docker.io)"
"$DOCKER" info >/dev/null 2>&1 || die "no Docker engine reachable (DOCKER_HOST=${DOCKER_HOST:-unset}); scripts/test-image.sh starts a private one"
command -v ldd >/dev/null || die "ldd not found"

NODE_BIN=${NODE_BIN:-$(command -v node || true)}
[ -n "$NODE_BIN" ] || die "node not found; set NODE_BIN"
NODE_BIN=$(readlink -f "$NODE_BIN")
NODE_VERSION=$("$NODE_BIN" --version)
ARCH=$(uname -m)
log "node $NODE_VERSION from $NODE_BIN ($ARCH)"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/eap-base.XXXXXX")
cleanup () { rm -rf "$WORK"; }
trap cleanup EXIT

# copy_file SRC ROOT [DEST]: SRC (symlinks followed) to ROOT/DEST (default: the same path).
copy_file () {
  local src=$1 root=$2 dest=${3:-$1}
  mkdir -p "$root$(dirname "$dest")"
  cp -L --preserve=mode "$src" "$root$dest"
}

# copy_with_libs BIN ROOT [DEST]: the binary plus every shared object ldd resolves for it, each at
# the path ldd prints (the dynamic loader included), so the loader finds them without ld.so.cache.
copy_with_libs () {
  local bin=$1 root=$2 dest=${3:-$1} lib
  copy_file "$bin" "$root" "$dest"
  # "libx.so => /path/libx.so (0x…)" or "/lib64/ld-linux-x86-64.so.2 (0x…)"; vdso has no path.
  # A static binary makes ldd exit 1 ("not a dynamic executable"): nothing to copy then.
  while read -r lib; do
    [ -n "$lib" ] || continue
    [ -e "$root$lib" ] || copy_file "$lib" "$root"
  done < <( (ldd "$bin" 2>/dev/null || true) | awk '$2 == "=>" && $3 ~ /^\// { print $3; next } $1 ~ /^\// { print $1 }')
  if (ldd "$bin" 2>/dev/null || true) | grep -q 'not found'; then
    die "ldd reports a missing library for $bin"
  fi
}

# make_rootfs ROOT: the runtime layout shared by both images.
make_rootfs () {
  local root=$1
  mkdir -p "$root"/{etc,tmp,home/node,usr/local/bin,usr/local/share,app,etc/ssl/certs}
  chmod 1777 "$root/tmp"
  chmod 0755 "$root/home/node" "$root/app"
  copy_with_libs "$NODE_BIN" "$root" /usr/local/bin/node

  # Same user as the official node images (node, 1000:1000) so USER 1000 means the same everywhere.
  cat > "$root/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/usr/sbin/nologin
node:x:1000:1000::/home/node:/usr/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
EOF
  cat > "$root/etc/group" <<'EOF'
root:x:0:
node:x:1000:
nogroup:x:65534:
EOF
  # Without nsswitch.conf glibc asks DNS before /etc/hosts.
  printf 'passwd: files\ngroup: files\nhosts: files dns\n' > "$root/etc/nsswitch.conf"

  # CA bundle for TLS to ECR and S3 (node also carries its own roots; NODE_EXTRA_CA_CERTS adds more).
  local ca
  for ca in /etc/ssl/certs/ca-certificates.crt /etc/pki/tls/certs/ca-bundle.crt /etc/ssl/cert.pem; do
    if [ -r "$ca" ]; then copy_file "$ca" "$root" /etc/ssl/certs/ca-certificates.crt; break; fi
  done
  [ -e "$root/etc/ssl/certs/ca-certificates.crt" ] || log "warning: no CA bundle found on this host; the image relies on node's built-in roots"
}

# import_rootfs ROOT TAG CHANGE...: tar the tree (root-owned, /home/node owned by 1000) and import.
# The image TAG named before is removed unless something still uses it: no <none> left behind.
import_rootfs () {
  local root=$1 tag=$2; shift 2
  local tarball previous
  previous=$("$DOCKER" image inspect -f '{{.Id}}' "$tag" 2>/dev/null || true)
  tarball="$WORK/$(echo "$tag" | tr ':/' '__').tar"
  tar --numeric-owner --owner=0 --group=0 --exclude=./home/node -cf "$tarball" -C "$root" .
  tar --numeric-owner --owner=1000 --group=1000 -rf "$tarball" -C "$root" ./home/node
  local changes=() c
  for c in "$@"; do changes+=(--change "$c"); done
  "$DOCKER" import "${changes[@]}" "$tarball" "$tag" >/dev/null
  log "imported $tag ($(du -h "$tarball" | cut -f1) rootfs)"
  if [ -n "$previous" ] && [ "$previous" != "$("$DOCKER" image inspect -f '{{.Id}}' "$tag")" ]; then
    "$DOCKER" rmi "$previous" >/dev/null 2>&1 || log "kept the previous $tag ($previous): still in use"
  fi
}

COMMON_CHANGES=(
  'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
  "ENV NODE_VERSION=${NODE_VERSION#v}"
  'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt'
  'WORKDIR /app'
  'CMD ["node"]'
)

# up_to_date TAG LABEL VALUE: TAG exists, was made from VALUE, and --force was not given.
up_to_date () {
  [ "$FORCE" = 0 ] && [ "$("$DOCKER" image inspect -f "{{index .Config.Labels \"$2\"}}" "$1" 2>/dev/null)" = "$3" ]
}
NODE_ID="$NODE_VERSION $(sha256sum "$NODE_BIN" | cut -c1-16)"

# --- runtime image -------------------------------------------------------------------------------
if up_to_date "$BASE_TAG" ecr-auth-proxy.node "$NODE_ID"; then
  log "$BASE_TAG is up to date"
else
  RUNTIME_ROOT="$WORK/runtime"
  make_rootfs "$RUNTIME_ROOT"
  import_rootfs "$RUNTIME_ROOT" "$BASE_TAG" "${COMMON_CHANGES[@]}" \
    "LABEL ecr-auth-proxy.node=\"$NODE_ID\"" \
    "LABEL org.opencontainers.image.description=\"ecr-auth-proxy local runtime base (node ${NODE_VERSION})\""
fi
"$DOCKER" run --rm --network none --user 1000:1000 "$BASE_TAG" node -e 'process.stdout.write(process.version)' >/dev/null \
  || die "$BASE_TAG cannot run node"

[ "$MAKE_BUILD_IMAGE" = 1 ] || exit 0
LOCK_HASH=$(sha256sum "$ROOT_DIR/package-lock.json" | cut -c1-16)
if up_to_date "$BUILD_TAG" ecr-auth-proxy.build "$NODE_ID $LOCK_HASH"; then
  log "$BUILD_TAG is up to date"
  exit 0
fi

# --- build image ---------------------------------------------------------------------------------
command -v npm >/dev/null || die "npm not found"
NPM_CLI=${NPM_CLI:-$(cd "$(dirname "$(readlink -f "$(command -v npm)")")/.." && pwd)}
[ -f "$NPM_CLI/bin/npm-cli.js" ] || die "npm package not found at $NPM_CLI (set NPM_CLI)"

BUILD_ROOT="$WORK/build"
make_rootfs "$BUILD_ROOT"
# npm runs scripts with `sh -c`, and package bins start with `#!/usr/bin/env node`.
copy_with_libs "$(readlink -f /bin/sh)" "$BUILD_ROOT" /bin/sh
copy_with_libs "$(readlink -f "$(command -v env)")" "$BUILD_ROOT" /usr/bin/env
mkdir -p "$BUILD_ROOT/usr/local/lib/node_modules"
cp -a "$NPM_CLI" "$BUILD_ROOT/usr/local/lib/node_modules/npm"
ln -s ../lib/node_modules/npm/bin/npm-cli.js "$BUILD_ROOT/usr/local/bin/npm"
ln -s ../lib/node_modules/npm/bin/npx-cli.js "$BUILD_ROOT/usr/local/bin/npx"

# Prime a cache with everything `npm ci` needs for this lockfile (packuments and tarballs): a
# throw-away install on the host, into a staging dir, with an empty dedicated cache.
STAGE="$WORK/npm-stage"
mkdir -p "$STAGE"
cp "$ROOT_DIR/package.json" "$ROOT_DIR/package-lock.json" "$STAGE/"
[ -f "$ROOT_DIR/.npmrc" ] && cp "$ROOT_DIR/.npmrc" "$STAGE/"
CACHE="$BUILD_ROOT/usr/local/share/npm-cache"
log "priming the npm cache for package-lock.json (npm registry, through npm)"
(cd "$STAGE" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error --cache "$CACHE" --prefer-offline >/dev/null)
rm -rf "$STAGE" "$CACHE/_logs"

import_rootfs "$BUILD_ROOT" "$BUILD_TAG" "${COMMON_CHANGES[@]}" \
  'ENV npm_config_cache=/usr/local/share/npm-cache' \
  'ENV npm_config_offline=true' \
  'ENV npm_config_update_notifier=false' \
  "LABEL ecr-auth-proxy.build=\"$NODE_ID $LOCK_HASH\"" \
  "LABEL org.opencontainers.image.description=\"ecr-auth-proxy local build base (node ${NODE_VERSION}, npm, offline cache)\""
"$DOCKER" run --rm --network none "$BUILD_TAG" npm --version >/dev/null || die "$BUILD_TAG cannot run npm"
log "done: $BASE_TAG, $BUILD_TAG"
