#!/usr/bin/env bash
# Builds the container image offline (scripts/build-base-image.sh + Dockerfile) and checks it by
# running it. Every socket stays on loopback: containers run with --network none (their own
# namespace, which has only lo) or --network host bound to 127.0.0.1.
#
# Environment:
#   ECR_API_PORT    port of a stand-in ECR API on 127.0.0.1 (AWS_ENDPOINT_URL_ECR for the proxy)
#   REGISTRY_PORT   port of a registry on 127.0.0.1 that accepts the tokens that API issues
#                   (the proxy's --upstream). Both set: the containerised proxy is also checked
#                   end to end (ready, /v2/ through it, an image pushed and read back with skopeo).
#                   Neither set: only the checks that need no peer.
#   PROXY_PORT      port for the proxy on the host's 127.0.0.1 in that end-to-end check (default: free)
#   IMAGE           image to test (default ecr-auth-proxy:local)
#   SKIP_BUILD=1    test IMAGE as it is instead of building base images and the image first
#   DOCKER_HOST     engine to use; when none answers, a private dockerd (no bridge, no iptables)
#                   is started under a temporary directory and stopped at the end.
#   DOCKERD_STORAGE_DRIVER  storage driver(s) for that dockerd, tried in order (default: overlay2 vfs)
#   KEEP_DOCKERD=1  leave that private dockerd running (its DOCKER_HOST is printed)
#
# Prints one `ok N - …` / `not ok N - …` line per check and ends with `N passed, N failed`;
# exits non-zero when a check failed or the image could not be built.
set -euo pipefail

ROOT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
IMAGE=${IMAGE:-ecr-auth-proxy:local}
RUN_ID=eap-test-$$-$RANDOM
WORK=$(mktemp -d "${TMPDIR:-/tmp}/eap-image-test.XXXXXX")
chmod 0755 "$WORK"
PRIVATE_DOCKERD_PID=''
PRIVATE_DOCKERD_DIR=''
PASSED=0
FAILED=0
CHECK=0

log () { printf '# %s\n' "$*"; }
die () { printf 'Bail out! %s\n' "$*"; exit 1; }
ok () { CHECK=$((CHECK + 1)); PASSED=$((PASSED + 1)); printf 'ok %d - %s\n' "$CHECK" "$*"; }
not_ok () { CHECK=$((CHECK + 1)); FAILED=$((FAILED + 1)); printf 'not ok %d - %s\n' "$CHECK" "$*"; }
# check DESCRIPTION COMMAND...: one check, passing when COMMAND succeeds.
check () { local what=$1; shift; if "$@"; then ok "$what"; else not_ok "$what"; fi; }

if [ -n "${ECR_API_PORT:-}" ] || [ -n "${REGISTRY_PORT:-}" ]; then
  [ -n "${ECR_API_PORT:-}" ] && [ -n "${REGISTRY_PORT:-}" ] || die "set both ECR_API_PORT and REGISTRY_PORT, or neither"
  PEERS=1
else
  PEERS=0
fi

# --- tools -------------------------------------------------------------------------------------
need_packages=()
command -v docker >/dev/null || need_packages+=(docker.io)
command -v curl >/dev/null || need_packages+=(curl)
command -v htpasswd >/dev/null || need_packages+=(apache2-utils)
command -v openssl >/dev/null || need_packages+=(openssl)
if [ "$PEERS" = 1 ]; then
  command -v skopeo >/dev/null || need_packages+=(skopeo)
  command -v umoci >/dev/null || need_packages+=(umoci)
fi
if [ ${#need_packages[@]} -gt 0 ]; then
  log "installing ${need_packages[*]}"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_packages[@]}" >/dev/null
fi

cleanup () {
  local status=$?
  docker ps -aq --filter "name=$RUN_ID" 2>/dev/null | xargs -r docker rm -f >/dev/null 2>&1 || true
  if [ -n "$PRIVATE_DOCKERD_PID" ] && [ "${KEEP_DOCKERD:-0}" != 1 ]; then
    kill -TERM "$PRIVATE_DOCKERD_PID" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$PRIVATE_DOCKERD_PID" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$PRIVATE_DOCKERD_PID" 2>/dev/null || true
    # dockerd can leave mounts under its directories (e.g. exec/netns/default): ours only, deepest first.
    awk -v d="$PRIVATE_DOCKERD_DIR/" 'index($2, d) == 1 { print $2 }' /proc/mounts | sort -r | xargs -r -n1 umount 2>/dev/null || true
    rm -rf "$PRIVATE_DOCKERD_DIR" 2>/dev/null || log "could not remove $PRIVATE_DOCKERD_DIR entirely"
  fi
  rm -rf "$WORK"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- engine ------------------------------------------------------------------------------------
# start_dockerd DRIVER: a private engine under PRIVATE_DOCKERD_DIR; fails when it does not answer
# within 60 s (then it is stopped again).
start_dockerd () {
  setsid dockerd --data-root "$PRIVATE_DOCKERD_DIR/data" --exec-root "$PRIVATE_DOCKERD_DIR/exec" \
    --pidfile "$PRIVATE_DOCKERD_DIR/pid" -H "$DOCKER_HOST" --storage-driver="$1" \
    --iptables=false --ip6tables=false --bridge=none >>"$PRIVATE_DOCKERD_DIR/log" 2>&1 &
  PRIVATE_DOCKERD_PID=$!
  for _ in $(seq 1 120); do
    docker info >/dev/null 2>&1 && return 0
    kill -0 "$PRIVATE_DOCKERD_PID" 2>/dev/null || break
    sleep 0.5
  done
  kill -TERM "$PRIVATE_DOCKERD_PID" 2>/dev/null || true
  wait "$PRIVATE_DOCKERD_PID" 2>/dev/null || true
  PRIVATE_DOCKERD_PID=''
  return 1
}

if ! docker info >/dev/null 2>&1; then
  command -v dockerd >/dev/null || die "dockerd not found"
  PRIVATE_DOCKERD_DIR=$(mktemp -d "${TMPDIR:-/tmp}/eap-dockerd.XXXXXX")
  export DOCKER_HOST="unix://$PRIVATE_DOCKERD_DIR/docker.sock"
  # overlay2 builds ~3.5x faster than vfs here; vfs works everywhere (e.g. inside a container).
  for driver in ${DOCKERD_STORAGE_DRIVER:-overlay2 vfs}; do
    log "starting a private dockerd ($DOCKER_HOST, storage driver $driver)"
    start_dockerd "$driver" && break
  done
  [ -n "$PRIVATE_DOCKERD_PID" ] || { tail -20 "$PRIVATE_DOCKERD_DIR/log"; die "dockerd did not come up"; }
fi

# --- build -------------------------------------------------------------------------------------
NEW_DANGLING=''
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  dangling_before=$(docker images -q --no-trunc -f dangling=true | sort)
  log "building base images"
  bash "$ROOT_DIR/scripts/build-base-image.sh" >"$WORK/base.log" 2>&1 || { cat "$WORK/base.log"; die "base images failed"; }
  log "building $IMAGE"
  started=$(date +%s)
  # The classic builder (the engine here has no buildx); it runs every stage, none needs network.
  DOCKER_BUILDKIT=0 docker build --network none \
    --build-arg BASE_IMAGE=ecr-auth-proxy-base:local --build-arg BUILD_IMAGE=ecr-auth-proxy-build:local \
    -t "$IMAGE" "$ROOT_DIR" >"$WORK/build.log" 2>&1 || { tail -40 "$WORK/build.log"; die "docker build failed"; }
  log "built in $(($(date +%s) - started)) s"
  # As the docs say to: the classic builder's untagged stage images (and a replaced $IMAGE) go.
  docker image prune -f --filter label=ecr-auth-proxy.stage >/dev/null
  NEW_DANGLING=$(comm -13 <(echo "$dangling_before") <(docker images -q --no-trunc -f dangling=true | sort) | tr '\n' ' ')
fi
docker image inspect "$IMAGE" >/dev/null 2>&1 || die "no image $IMAGE"
log "image $IMAGE: $(docker image inspect -f '{{.Size}}' "$IMAGE" | awk '{ printf "%.0f MB", $1 / 1e6 }')"

# --- helpers -----------------------------------------------------------------------------------
inspect () { docker image inspect -f "$1" "$IMAGE"; }
free_port () { node -e "const s=require('net').createServer().listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})"; }
# wait_until SECONDS COMMAND...: polls COMMAND every 0.5 s, at most SECONDS.
wait_until () {
  local deadline=$(($(date +%s) + $1)); shift
  until "$@"; do [ "$(date +%s)" -lt "$deadline" ] || return 1; sleep 0.5; done
}
# status_inside CONTAINER PATH [USER:PASSWORD]: HTTP status of GET http://127.0.0.1:5000PATH, asked
# from inside the container with node (the image has no shell and no curl).
status_inside () {
  docker exec "$1" node -e '
    const [path, creds] = process.argv.slice(1)
    const headers = creds ? { authorization: "Basic " + Buffer.from(creds).toString("base64") } : {}
    fetch("http://127.0.0.1:5000" + path, { headers, signal: AbortSignal.timeout(5000) })
      .then((r) => console.log(r.status), () => console.log("error"))' "$2" "${3:-}" 2>/dev/null
}
status_is () { [ "$(status_inside "$1" "$2" "${4:-}")" = "$3" ]; }
health_is () { [ "$(docker inspect -f '{{.State.Health.Status}}' "$1" 2>/dev/null)" = "$2" ]; }
running () { [ "$(docker inspect -f '{{.State.Running}}' "$1" 2>/dev/null)" = true ]; }
exited () { [ "$(docker inspect -f '{{.State.Status}}' "$1" 2>/dev/null)" = exited ]; }
host_status () { curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$@" || true; }
show_logs () { docker logs "$1" 2>&1 | tail -"${2:-15}" | sed 's/^/#   /'; }
# contains HAYSTACK NEEDLE...: every NEEDLE occurs in HAYSTACK.
contains () { local hay=$1 needle; shift; for needle in "$@"; do [[ "$hay" == *"$needle"* ]] || return 1; done; }
status_is_not () { [ "$(status_inside "$1" "$2" "${4:-}")" != "$3" ]; }
host_status_is () { local want=$1; shift; [ "$(host_status "$@")" = "$want" ]; }
one_of () { local v=$1; shift; local x; for x in "$@"; do [ "$v" = "$x" ] && return 0; done; return 1; }

# The hardening every deployment applies (compose, Kubernetes): read-only root, only /tmp
# writable, no capabilities, no privilege gain, the image's non-root user.
HARDENED=(--read-only --tmpfs /tmp:rw,nosuid,nodev,size=64m --cap-drop ALL --security-opt no-new-privileges)
# Credentials the SDK accepts; the ECR endpoint is a closed loopback port unless a peer is given,
# so nothing ever leaves the machine.
FAKE_AWS=(-e AWS_REGION=us-east-2 -e AWS_ACCESS_KEY_ID=AKIDEXAMPLE -e AWS_SECRET_ACCESS_KEY=secret
  -e AWS_EC2_METADATA_DISABLED=true -e AWS_ENDPOINT_URL_ECR=http://127.0.0.1:9)

# make_oci_image LAYOUT: an OCI layout with tag t: one layer holding 1 MiB of random bytes.
make_oci_image () {
  umoci init --layout "$1" && umoci new --image "$1:t" &&
    umoci unpack --image "$1:t" "$1.bundle" &&
    head -c 1048576 /dev/urandom > "$1.bundle/rootfs/payload.bin" &&
    umoci repack --image "$1:t" "$1.bundle"
}

# --- 1. image metadata -------------------------------------------------------------------------
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  check "the build leaves no <none> image behind (${NEW_DANGLING:-none new})" [ -z "$NEW_DANGLING" ]
fi
check "runs as the numeric non-root user 1000:1000" [ "$(inspect '{{.Config.User}}')" = 1000:1000 ]
check "exposes 5000/tcp" [ "$(inspect '{{range $p, $_ := .Config.ExposedPorts}}{{$p}} {{end}}')" = '5000/tcp ' ]
env_line=" $(inspect '{{join .Config.Env " "}}') "
check "listens on 0.0.0.0:5000 inside (ECR_PROXY_HOST, ECR_PROXY_PORT)" \
  contains "$env_line" ' ECR_PROXY_HOST=0.0.0.0 ' ' ECR_PROXY_PORT=5000 '
healthcheck=$(inspect '{{json .Config.Healthcheck.Test}}')
check "HEALTHCHECK asks /healthz with node" contains "$healthcheck" '"node"' /healthz
check "entrypoint is node dist/src/cli.js" [ "$(inspect '{{json .Config.Entrypoint}}')" = '["node","dist/src/cli.js"]' ]

# --- 2. contents: production dependencies only -------------------------------------------------
contents=$(docker run --rm --network none --entrypoint node "$IMAGE" -e '
  const fs = require("fs")
  const has = (p) => fs.existsSync(p)
  const prod = ["fastify", "undici", "@aws-sdk/client-ecr", "pino", "yaml"].every((m) => has("node_modules/" + m))
  const dev = ["typescript", "tap", "eslint", "kubernetes-models", "@types/node"].filter((m) => has("node_modules/" + m))
  const writable = (() => { try { fs.writeFileSync("dist/src/x", ""); return true } catch { return false } })()
  console.log(JSON.stringify({ cli: has("dist/src/cli.js"), prod, dev, writable, uid: process.getuid() }))' 2>&1 || true)
check "dist/src/cli.js present" contains "$contents" '"cli":true'
check "production dependencies present" contains "$contents" '"prod":true'
check "no development dependencies (typescript, tap, eslint, …)" contains "$contents" '"dev":[]'
check "runs as uid 1000 and cannot write the application files" contains "$contents" '"writable":false,"uid":1000'

# --- 3. refuses to listen on 0.0.0.0 without client auth ---------------------------------------
c=$RUN_ID-refuse
docker run -d --name "$c" --network none "${HARDENED[@]}" "${FAKE_AWS[@]}" "$IMAGE" >/dev/null
if wait_until 30 exited "$c"; then
  code=$(docker inspect -f '{{.State.ExitCode}}' "$c")
  check "default settings (0.0.0.0, no auth): exits at start (code $code)" [ "$code" != 0 ]
  check "… saying why (mentions unauthenticated access)" contains "$(docker logs "$c" 2>&1 | tr '[:upper:]' '[:lower:]')" unauthenticated
else
  not_ok "default settings (0.0.0.0, no auth): still running after 30 s"; show_logs "$c"
fi

# --- 4. explicit risk flag, in an isolated network namespace ------------------------------------
c=$RUN_ID-open
docker run -d --name "$c" --network none "${HARDENED[@]}" "${FAKE_AWS[@]}" \
  --health-interval 1s --health-timeout 5s --health-retries 3 \
  -e ECR_PROXY_ALLOW_UNAUTHENTICATED=true "$IMAGE" --registry-id 600423610423 >/dev/null
if wait_until 30 status_is "$c" /healthz 200; then
  ok "ECR_PROXY_ALLOW_UNAUTHENTICATED=true, hardened (read-only, no caps): GET /healthz 200"
  check "HEALTHCHECK turns healthy" wait_until 30 health_is "$c" healthy
  check "GET /readyz 503 while no token can be had" status_is "$c" /readyz 503
  check "GET /metrics 200" status_is "$c" /metrics 200
  started=$(date +%s%N)
  docker stop -t 45 "$c" >/dev/null
  took_ms=$((($(date +%s%N) - started) / 1000000))
  code=$(docker inspect -f '{{.State.ExitCode}}' "$c")
  check "SIGTERM (docker stop -t 45): exits by itself, code $code, in $took_ms ms" one_of "$code" 0 143
else
  not_ok "ECR_PROXY_ALLOW_UNAUTHENTICATED=true: /healthz did not answer 200 within 30 s"; show_logs "$c"
fi

# --- 5. client authentication (htpasswd) instead of the risk flag --------------------------------
c=$RUN_ID-auth
htpasswd -nbB -C 4 builder 's3cret-pass' > "$WORK/htpasswd"
chmod 0644 "$WORK/htpasswd"
docker run -d --name "$c" --network none "${HARDENED[@]}" "${FAKE_AWS[@]}" \
  -v "$WORK/htpasswd:/run/secrets/htpasswd:ro" -e ECR_PROXY_HTPASSWD=/run/secrets/htpasswd "$IMAGE" >/dev/null
if wait_until 30 status_is "$c" /healthz 200; then
  ok "ECR_PROXY_HTPASSWD set: starts on 0.0.0.0 without the risk flag"
  check "GET /v2/ without credentials: 401" status_is "$c" /v2/ 401
  check "GET /v2/ with a wrong password: 401" status_is "$c" /v2/ 401 builder:wrong
  check "GET /v2/ with the htpasswd user: past client auth (not 401)" status_is_not "$c" /v2/ 401 builder:s3cret-pass
else
  not_ok "ECR_PROXY_HTPASSWD set: /healthz did not answer 200 within 30 s"; show_logs "$c"
fi

# --- 6. TLS listener: the HEALTHCHECK follows it to https -------------------------------------------
c=$RUN_ID-tls
if openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost \
    -keyout "$WORK/tls.key" -out "$WORK/tls.crt" >/dev/null 2>&1; then
  chmod 0644 "$WORK/tls.key" "$WORK/tls.crt"
  docker run -d --name "$c" --network none "${HARDENED[@]}" "${FAKE_AWS[@]}" \
    --health-interval 1s --health-timeout 5s --health-retries 3 \
    -v "$WORK/htpasswd:/run/secrets/htpasswd:ro" -e ECR_PROXY_HTPASSWD=/run/secrets/htpasswd \
    -v "$WORK/tls.crt:/run/secrets/tls.crt:ro" -v "$WORK/tls.key:/run/secrets/tls.key:ro" \
    -e ECR_PROXY_TLS_CERT=/run/secrets/tls.crt -e ECR_PROXY_TLS_KEY=/run/secrets/tls.key "$IMAGE" >/dev/null
  if wait_until 30 health_is "$c" healthy; then
    ok "ECR_PROXY_TLS_CERT set: HEALTHCHECK asks over https and turns healthy"
    check "GET https://…/v2/ without credentials: 401" bash -c '[ "$(docker exec "$1" node -e "
      require(\"https\").get({ host: \"127.0.0.1\", port: 5000, path: \"/v2/\", rejectUnauthorized: false },
        (r) => console.log(r.statusCode)).on(\"error\", () => console.log(\"error\"))")" = 401 ]' _ "$c"
  else
    not_ok "ECR_PROXY_TLS_CERT set: not healthy within 30 s ($(docker inspect -f '{{.State.Health.Status}}' "$c"))"; show_logs "$c"
  fi
else
  log "openssl failed: TLS check skipped"
fi

# --- 7. end to end with the given peers (host network, bound to 127.0.0.1) -----------------------
if [ "$PEERS" = 1 ]; then
  PROXY_PORT=${PROXY_PORT:-$(free_port)}
  c=$RUN_ID-peers
  docker run -d --name "$c" --network host "${HARDENED[@]}" \
    -e AWS_REGION=us-east-2 -e AWS_ACCESS_KEY_ID=AKIDEXAMPLE -e AWS_SECRET_ACCESS_KEY=secret \
    -e AWS_EC2_METADATA_DISABLED=true -e AWS_ENDPOINT_URL_ECR="http://127.0.0.1:$ECR_API_PORT" \
    -e ECR_PROXY_HOST=127.0.0.1 -e ECR_PROXY_PORT="$PROXY_PORT" \
    "$IMAGE" --registry-id 600423610423 --upstream "http://127.0.0.1:$REGISTRY_PORT" >/dev/null
  base=http://127.0.0.1:$PROXY_PORT
  if wait_until 30 host_status_is 200 "$base/healthz"; then
    ok "host network, 127.0.0.1:$PROXY_PORT: GET /healthz 200 from the host"
    if command -v ss >/dev/null; then
      check "listening on loopback only" bash -c '
        addrs=$(ss -Hltn "sport = :$1" | awk "{ print \$4 }")
        [ -n "$addrs" ] && ! grep -qv "^127\.0\.0\.1:" <<<"$addrs"' _ "$PROXY_PORT"
    fi
    check "GET /readyz 200 once a token is held" wait_until 30 host_status_is 200 "$base/readyz"
    check "GET /v2/ through the proxy: 200 with Docker-Distribution-API-Version" bash -c '
      headers=$(curl -s -D - -o /dev/null --max-time 10 "$1/v2/")
      grep -q "^HTTP/1.1 200" <<<"$headers" && grep -qi "^docker-distribution-api-version: registry/2.0" <<<"$headers"' _ "$base"

    # An image made offline with umoci, pushed through the proxy and read back through it.
    layout=$WORK/oci
    repo=eap-image-test/hello-$RANDOM
    if ! make_oci_image "$layout" >"$WORK/umoci.log" 2>&1; then
      not_ok "umoci: build a test image"; sed 's/^/#   /' "$WORK/umoci.log"
    elif skopeo copy --quiet --dest-tls-verify=false --dest-no-creds "oci:$layout:t" "docker://127.0.0.1:$PROXY_PORT/$repo:t" >"$WORK/skopeo.log" 2>&1; then
      ok "skopeo copy oci: → docker://127.0.0.1:$PROXY_PORT/$repo:t"
      want=$(node -e 'console.log(JSON.parse(require("fs").readFileSync(process.argv[1])).manifests[0].digest)' "$layout/index.json")
      got=$(curl -s -D - -o /dev/null --max-time 10 -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
        "$base/v2/$repo/manifests/t" | tr -d '\r' | awk -F': ' 'tolower($1) == "docker-content-digest" { print $2 }')
      check "manifest read back through the proxy has the pushed digest ($want)" [ "$got" = "$want" ]
      layer=$(node -e '
        const fs = require("fs"), [dir, d] = process.argv.slice(1)
        const m = JSON.parse(fs.readFileSync(dir + "/blobs/sha256/" + d.slice(7)))
        console.log(m.layers[m.layers.length - 1].digest)' "$layout" "$want")
      got=$(curl -sL --max-time 30 "$base/v2/$repo/blobs/$layer" | sha256sum | cut -d' ' -f1)
      check "layer blob read back through the proxy matches ($layer)" [ "sha256:$got" = "$layer" ]

      # The DaemonSet's setting: a read-only proxy serves pulls and refuses uploads.
      ro_port=$(free_port)
      docker run -d --name "$RUN_ID-ro" --network host "${HARDENED[@]}" \
        -e AWS_REGION=us-east-2 -e AWS_ACCESS_KEY_ID=AKIDEXAMPLE -e AWS_SECRET_ACCESS_KEY=secret \
        -e AWS_EC2_METADATA_DISABLED=true -e AWS_ENDPOINT_URL_ECR="http://127.0.0.1:$ECR_API_PORT" \
        -e ECR_PROXY_HOST=127.0.0.1 -e ECR_PROXY_PORT="$ro_port" -e ECR_PROXY_READ_ONLY=true \
        "$IMAGE" --registry-id 600423610423 --upstream "http://127.0.0.1:$REGISTRY_PORT" >/dev/null
      ro=http://127.0.0.1:$ro_port
      if wait_until 30 host_status_is 200 "$ro/readyz"; then
        check "ECR_PROXY_READ_ONLY=true: manifest GET 200" host_status_is 200 -H 'Accept: application/vnd.oci.image.manifest.v1+json' "$ro/v2/$repo/manifests/t"
        check "ECR_PROXY_READ_ONLY=true: upload POST 403" host_status_is 403 -X POST "$ro/v2/$repo/blobs/uploads/"
      else
        not_ok "ECR_PROXY_READ_ONLY=true: not ready within 30 s"; show_logs "$RUN_ID-ro"
      fi
    else
      not_ok "skopeo copy through the proxy"; sed 's/^/#   /' "$WORK/skopeo.log"; show_logs "$c"
    fi
  else
    not_ok "host network, 127.0.0.1:$PROXY_PORT: /healthz did not answer 200 within 30 s"; show_logs "$c"
  fi
fi

printf '%d passed, %d failed\n' "$PASSED" "$FAILED"
[ "$FAILED" = 0 ]
