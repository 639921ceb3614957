#!/usr/bin/env bash
# The README's install path, checked from this clone: `npm pack` (whose prepack script builds
# dist/) of a copy of the tracked files, then `npm install -g` of the tarball into a temporary
# prefix; the installed `ecr-auth-proxy` must then answer --version, --help and /healthz, and end on
# SIGTERM. Needs `npm ci` done (the copy borrows node_modules for the build) and the npm registry
# or a warm npm cache (a global install resolves the dependencies anew, without the lockfile).
#
# Prints one `ok N - …` / `not ok N - …` line per check and ends with `N passed, N failed`.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/eap-install.XXXXXX")
PROXY_PID=''
cleanup () {
  if [ -n "$PROXY_PID" ]; then kill -KILL "$PROXY_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

PASSED=0
FAILED=0
CHECK=0
ok () { CHECK=$((CHECK + 1)); PASSED=$((PASSED + 1)); printf 'ok %d - %s\n' "$CHECK" "$*"; }
not_ok () { CHECK=$((CHECK + 1)); FAILED=$((FAILED + 1)); printf 'not ok %d - %s\n' "$CHECK" "$*"; }
check () { local what=$1; shift; if "$@"; then ok "$what"; else not_ok "$what"; fi; }
die () { printf 'Bail out! %s\n' "$*"; exit 1; }

[ -d "$ROOT/node_modules" ] || die "run npm ci first"
VERSION=$(node -p 'require(process.argv[1]).version' "$ROOT/package.json")

# A clean copy of what git tracks (the working tree's files, so uncommitted changes count): no
# dist/, so only the prepack script can put the built files into the package.
mkdir "$WORK/clone"
(cd "$ROOT" && git ls-files -z --cached --others --exclude-standard | xargs -0 tar --ignore-failed-read -cf - 2>/dev/null) | tar xf - -C "$WORK/clone"
rm -rf "$WORK/clone/dist"
ln -s "$ROOT/node_modules" "$WORK/clone/node_modules"

(cd "$WORK/clone" && npm pack --silent --pack-destination "$WORK" >"$WORK/pack.log" 2>&1) || { cat "$WORK/pack.log"; die "npm pack failed"; }
TARBALL="$WORK/ecr-auth-proxy-$VERSION.tgz"
[ -f "$TARBALL" ] || die "npm pack made no $TARBALL"
contents=$(tar tzf "$TARBALL")
check "the package holds the built CLI (prepack ran)" grep -qx 'package/dist/src/cli.js' <<<"$contents"
check "… README.md, LICENSE and CHANGELOG.md" bash -c 'for f in README.md LICENSE CHANGELOG.md; do grep -qx "package/$f" <<<"$1" || exit 1; done' _ "$contents"
check "… and no tests or TypeScript sources" bash -c '! grep -qE "^package/(test|src)/|\.ts$" <<<"$1"' _ "$contents"

npm install --global --prefix "$WORK/prefix" --no-audit --no-fund --prefer-offline --loglevel=error "$TARBALL" >"$WORK/install.log" 2>&1 \
  || { cat "$WORK/install.log"; die "npm install -g of the package failed"; }
BIN="$WORK/prefix/bin/ecr-auth-proxy"
check "npm install -g puts ecr-auth-proxy in the prefix's bin" test -x "$BIN"
check "ecr-auth-proxy --version prints $VERSION" test "$("$BIN" --version 2>&1)" = "$VERSION"
check "ecr-auth-proxy --help starts with its usage" bash -c '"$1" --help | head -1 | grep -q "^Usage: ecr-auth-proxy"' _ "$BIN"

PORT=$(node -e "const s=require('net').createServer().listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})")
# No AWS credentials: it starts anyway and answers /healthz; the SDK never leaves the machine.
(cd "$WORK" && exec env -i PATH="$PATH" HOME="$WORK" AWS_EC2_METADATA_DISABLED=true AWS_REGION=us-east-2 \
  AWS_ENDPOINT_URL_ECR=http://127.0.0.1:9 "$BIN" --port "$PORT") >"$WORK/proxy.log" 2>&1 &
PROXY_PID=$!
healthz () {
  node -e 'fetch(process.argv[1],{signal:AbortSignal.timeout(2000)}).then((r)=>process.exit(r.status===200?0:1),()=>process.exit(1))' "http://127.0.0.1:$PORT/healthz"
}
answered=1
for _ in $(seq 1 50); do
  if healthz; then answered=0; break; fi
  sleep 0.2
done
check "the installed proxy answers GET /healthz 200" test "$answered" = 0
kill -TERM "$PROXY_PID" 2>/dev/null || true
code=0
wait "$PROXY_PID" || code=$?
PROXY_PID=''
check "… and exits 0 on SIGTERM" test "$code" = 0
[ "$FAILED" = 0 ] || sed 's/^/#   /' "$WORK/proxy.log"

printf '%d passed, %d failed\n' "$PASSED" "$FAILED"
[ "$FAILED" = 0 ]
