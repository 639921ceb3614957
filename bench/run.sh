#!/usr/bin/env bash
# Benchmark harness: direct registry vs auth-injecting nginx vs ecr-auth-proxy, in one run.
# Usage: npm run bench            (or: bash bench/run.sh)
# Knobs (env): BENCH_BLOB_MIB=1024 BENCH_CHUNK_MIB=8 BENCH_WRK_SECONDS=3
#   BENCH_ROUNDS=3 (manifest rounds, median) BENCH_DOWNLOAD_REPS=3 (1-client downloads, median)
#   BENCH_NGINX_VARIANTS="unbuffered buffered" BENCH_SMALL_AUTH=off|htpasswd|both|none
#   BENCH_PROFILE=1 (CPU-profile the proxy afterwards) BENCH_REQUIRE_PROXY=1 (fail if it cannot run)
#   BENCH_PROXY_LOG_LEVEL=info BENCH_KEEP=1 (keep the work dir) BENCH_TIME_LIMIT=870 (seconds)
#   BENCH_VARIANTS="node-http undici-stream ..." also measures minimal forwarders from
#     bench/experiments/forward-variants.ts (evidence for tuning; not part of the budget)
#   BENCH_PROXY_VARIANTS='name|node flags|proxy flags;...' extra proxy instances, e.g.
#     'semi1|--max-semi-space-size=1|;warn||--log-level warn' (evidence for tuning; not in the budget)
#   BENCH_SKIP_UPLOADS=1 (downloads and manifests only) BENCH_INSTALL_ONLY=1 (install the peers, measure nothing)
#   BENCH_PIN=1: on 2+ cores the registry (the stand-in for ECR, which is remote in real life) gets
#     CPU 0 to itself and everything else (clients, nginx, the proxy) the other CPUs; 0 = no pinning
# Everything listens on 127.0.0.1 only and is torn down on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

BLOB_MIB=${BENCH_BLOB_MIB:-1024}
CHUNK_MIB=${BENCH_CHUNK_MIB:-8}
WRK_SECONDS=${BENCH_WRK_SECONDS:-3}
ROUNDS=${BENCH_ROUNDS:-3}
DOWNLOAD_REPS=${BENCH_DOWNLOAD_REPS:-3}
NGINX_VARIANTS=${BENCH_NGINX_VARIANTS:-unbuffered buffered}
SMALL_AUTH=${BENCH_SMALL_AUTH:-off}
VARIANTS=${BENCH_VARIANTS:-}
PROFILE=${BENCH_PROFILE:-1}
PROXY_VARIANTS=${BENCH_PROXY_VARIANTS:-}
PIN=${BENCH_PIN:-1}
REQUIRE_PROXY=${BENCH_REQUIRE_PROXY:-0}
PROXY_LOG_LEVEL=${BENCH_PROXY_LOG_LEVEL:-info}
TIME_LIMIT=${BENCH_TIME_LIMIT:-870}
DEADLINE=$((SECONDS + TIME_LIMIT))
TS_NODE=(node --import=@tapjs/typescript/import)
export TS_NODE_TRANSPILE_ONLY=1

log () { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die () { log "ERROR: $*"; exit 1; }
remaining () {
  local r=$((DEADLINE - SECONDS))
  if [ "$r" -le 5 ]; then die "time limit of ${TIME_LIMIT}s reached"; fi
  echo "$r"
}
# bounded <max seconds> cmd...: run a step, never past the overall deadline. It runs in the
# background and is waited for, so that Ctrl-C / SIGTERM reach the traps at once.
STEP_PID=''
bounded () {
  local max=$1; shift
  local r; r=$(remaining)
  [ "$max" -lt "$r" ] || max=$r
  timeout --kill-after=5 "$max" "$@" < /dev/null &
  STEP_PID=$!
  local rc=0
  wait "$STEP_PID" || rc=$?
  STEP_PID=''
  return $rc
}

# ---------------------------------------------------------------- Debian peers
install_peers () {
  local missing=()
  command -v docker-registry >/dev/null || missing+=(docker-registry)
  command -v nginx >/dev/null || missing+=(nginx)
  command -v wrk >/dev/null || missing+=(wrk)
  { command -v htpasswd >/dev/null && command -v ab >/dev/null; } || missing+=(apache2-utils)
  command -v curl >/dev/null || missing+=(curl)
  command -v jq >/dev/null || missing+=(jq)
  command -v openssl >/dev/null || missing+=(openssl)
  [ ${#missing[@]} -gt 0 ] || return 0
  log "installing ${missing[*]} with apt-get"
  local sudo=()
  [ "$(id -u)" = 0 ] || sudo=(sudo)
  # Keep the packages' own services (nginx on :80, docker-registry on :5000) from starting.
  local policy_added=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee /usr/sbin/policy-rc.d >/dev/null
    "${sudo[@]}" chmod 755 /usr/sbin/policy-rc.d
    policy_added=1
  fi
  local rc=0
  timeout 600 "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq || rc=$?
  [ $rc -ne 0 ] || timeout 600 "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "${missing[@]}" || rc=$?
  [ $policy_added = 0 ] || "${sudo[@]}" rm -f /usr/sbin/policy-rc.d
  [ $rc -eq 0 ] || die "apt-get failed ($rc)"
}
install_peers
if [ "${BENCH_INSTALL_ONLY:-0}" = 1 ]; then log "peers present; BENCH_INSTALL_ONLY=1, stopping here"; exit 0; fi
# the installer may not count against the measured run
DEADLINE=$((SECONDS + TIME_LIMIT))

# ---------------------------------------------------------------- CPU pinning
CORES=$(nproc)
REG_PIN=()
PINNING="none"
if [ "$PIN" = 1 ] && [ "$CORES" -ge 2 ] && command -v taskset >/dev/null; then
  # this shell and all it starts from now on: CPUs 1..n-1; the registry: CPU 0
  taskset -pc "1-$((CORES - 1))" $$ >/dev/null
  REG_PIN=(taskset -c 0)
  PINNING="registry on CPU 0; clients, nginx and the proxy on CPUs 1-$((CORES - 1))"
fi

# ---------------------------------------------------------------- work dir + teardown
WORK=$(mktemp -d /tmp/ecr-bench.XXXXXX)
chmod 755 "$WORK"   # nginx workers (nobody) create their temp dirs below it
PIDS=()
cleanup () {
  local rc=$?
  trap - EXIT INT TERM
  local p
  [ -z "$STEP_PID" ] || kill -TERM "$STEP_PID" 2>/dev/null || true
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for _ in $(seq 1 50); do
    local alive=0
    for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ $alive = 1 ] || break
    sleep 0.1
  done
  for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  if [ "${BENCH_KEEP:-0}" = 1 ]; then log "work dir kept: $WORK"; else rm -rf "$WORK"; fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

forget_pid () {
  local keep=() p
  for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
  PIDS=("${keep[@]}")
}
stop_pid () { # stop_pid PID: TERM, wait (bounded), KILL
  local pid=$1
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  forget_pid "$pid"
}
wait_http () { # wait_http URL EXPECTED_STATUS SECONDS
  local url=$1 want=$2 max=$3 i code
  for i in $(seq 1 $((max * 10))); do
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$url" || true)
    [ "$code" = "$want" ] && return 0
    sleep 0.1
  done
  die "$url did not answer $want within ${max}s (last: $code)"
}
free_ports () { # free_ports N -> N distinct free loopback ports
  node -e '
    const net = require("node:net"); const n = Number(process.argv[1]); const ss = []
    const next = () => { if (ss.length === n) { console.log(ss.map(s => s.address().port).join(" ")); ss.forEach(s => s.close()); return }
      const s = net.createServer(); s.listen(0, "127.0.0.1", () => { ss.push(s); next() }) }
    next()' "$1"
}

# ---------------------------------------------------------------- build
PROXY_OK=1
log "building the proxy (npm run build)"
if ! bounded 180 npm run build --silent > "$WORK/build.log" 2>&1; then
  tail -20 "$WORK/build.log" >&2 || true
  PROXY_OK=0
elif [ ! -f dist/src/cli.js ]; then
  PROXY_OK=0
fi
if [ $PROXY_OK = 0 ]; then
  [ "$REQUIRE_PROXY" = 1 ] && die "the proxy did not build"
  log "WARNING: no working dist/src/cli.js — the proxy is left out of this run"
fi
if [ $PROXY_OK = 1 ] && [ ! -f test/helpers/ecr-api.ts ]; then
  [ "$REQUIRE_PROXY" = 1 ] && die "test/helpers/ecr-api.ts is missing"
  log "WARNING: test/helpers/ecr-api.ts missing — the proxy is left out of this run"
  PROXY_OK=0
fi

PORTS=()
read -r -a PORTS <<< "$(free_ports 16)"
REG_PORT=${PORTS[0]} API_PORT=${PORTS[1]} PROXY_PORT=${PORTS[2]}
NGINX_PORTS=("${PORTS[@]:3:6}")
VARIANT_PORTS=("${PORTS[@]:9:7}")
[ "$(wc -w <<< "$NGINX_VARIANTS")" -le 6 ] || die "at most 6 nginx variants"
[ "$(( $(wc -w <<< "$VARIANTS") + $(tr ';' '\n' <<< "$PROXY_VARIANTS" | grep -c . || true) ))" -le 7 ] || die "at most 7 variants in all"

# ---------------------------------------------------------------- token (ECR API stand-in)
log "starting the ECR API stand-in"
if [ -f test/helpers/ecr-api.ts ]; then
  "${TS_NODE[@]}" bench/ecr-standin.ts --port "$API_PORT" --out "$WORK/token.json" \
    --proxy-endpoint "http://127.0.0.1:$REG_PORT" > "$WORK/ecr-api.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 1 300); do [ -s "$WORK/token.json" ] && break; sleep 0.1; done
  [ -s "$WORK/token.json" ] || { cat "$WORK/ecr-api.log" >&2; die "the ECR API stand-in did not start"; }
  ECR_API_URL=$(jq -r .url "$WORK/token.json")
  PASSWORD=$(jq -r .password "$WORK/token.json")
  TOKEN=$(jq -r .authorizationToken "$WORK/token.json")
else
  # development fallback until the stand-in exists: a token of ECR's shape and size
  PASSWORD=$(head -c 3597 /dev/urandom | base64 -w0)
  TOKEN=$(printf 'AWS:%s' "$PASSWORD" | base64 -w0)
  ECR_API_URL=''
fi
log "token: ${#TOKEN} characters"

# ---------------------------------------------------------------- registry
mkdir -p "$WORK/registry"
# htpasswd refuses passwords over 255 bytes; bcrypt (Apache's and Go's) only reads the first 72
# bytes, so hashing those gives a line the registry accepts for the whole ~3.5 KB password.
printf '%s' "${PASSWORD:0:72}" | htpasswd -niB -C 4 AWS | head -1 > "$WORK/htpasswd"
grep -q '^AWS:\$2' "$WORK/htpasswd" || die "htpasswd gave no bcrypt line"
write_registry_config () { # write_registry_config htpasswd|off
  {
    echo "version: 0.1"
    echo "log: { level: warn, accesslog: { disabled: true } }"
    echo "storage: { filesystem: { rootdirectory: $WORK/registry }, delete: { enabled: true }, cache: { blobdescriptor: inmemory } }"
    echo "http: { addr: 127.0.0.1:$REG_PORT, secret: ecr-auth-proxy-bench }"
    echo "health: { storagedriver: { enabled: false } }"
    [ "$1" = off ] || echo "auth: { htpasswd: { realm: basic-realm, path: $WORK/htpasswd } }"
  } > "$WORK/registry.yml"
}
REG_PID=''
start_registry () { # start_registry htpasswd|off
  write_registry_config "$1"
  "${REG_PIN[@]}" docker-registry serve "$WORK/registry.yml" >> "$WORK/registry.log" 2>&1 &
  REG_PID=$!
  PIDS+=("$REG_PID")
  if [ "$1" = off ]; then wait_http "http://127.0.0.1:$REG_PORT/v2/" 200 20
  else wait_http "http://127.0.0.1:$REG_PORT/v2/" 401 20; fi
}
log "starting docker-registry ($(docker-registry --version | awk '{print $NF}')) on 127.0.0.1:$REG_PORT, htpasswd bcrypt cost 4"
start_registry htpasswd
AUTH_HEADER="Authorization: Basic $TOKEN"
DIRECT="http://127.0.0.1:$REG_PORT"

# ---------------------------------------------------------------- seed: one blob + manifest
BLOB="$WORK/blob.bin"
log "seeding a ${BLOB_MIB} MiB random blob"
head -c $((BLOB_MIB * 1048576)) /dev/urandom > "$BLOB"
BLOB_SIZE=$(stat -c %s "$BLOB")
BLOB_DIGEST="sha256:$(sha256sum "$BLOB" | cut -d' ' -f1)"
REPO=bench/big
TAG=latest
push_blob () { # push_blob FILE DIGEST (POST then PUT, straight to the registry)
  local loc sep code
  loc=$(curl -sS -X POST -H "$AUTH_HEADER" -D - -o /dev/null --max-time 10 "$DIRECT/v2/$REPO/blobs/uploads/" \
    | tr -d '\r' | awk 'tolower($1)=="location:" {print $2}')
  [ -n "$loc" ] || die "no upload location"
  case "$loc" in http*) ;; *) loc="$DIRECT$loc" ;; esac
  case "$loc" in *\?*) sep='&' ;; *) sep='?' ;; esac
  code=$(curl -sS -X PUT -H "$AUTH_HEADER" -H 'Expect:' -H 'Content-Type: application/octet-stream' \
    -T "$1" -o /dev/null -w '%{http_code}' --max-time 120 "$loc${sep}digest=$2")
  [ "$code" = 201 ] || die "blob PUT answered $code"
}
push_blob "$BLOB" "$BLOB_DIGEST"
printf '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["%s"]}}' "$BLOB_DIGEST" > "$WORK/config.json"
CONFIG_DIGEST="sha256:$(sha256sum "$WORK/config.json" | cut -d' ' -f1)"
push_blob "$WORK/config.json" "$CONFIG_DIGEST"
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":%d}]}' \
  "$CONFIG_DIGEST" "$(stat -c %s "$WORK/config.json")" "$BLOB_DIGEST" "$BLOB_SIZE" > "$WORK/manifest.json"
code=$(curl -sS -X PUT -H "$AUTH_HEADER" -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' \
  --data-binary "@$WORK/manifest.json" -o /dev/null -w '%{http_code}' --max-time 10 "$DIRECT/v2/$REPO/manifests/$TAG")
[ "$code" = 201 ] || die "manifest PUT answered $code"

# ---------------------------------------------------------------- nginx variants
TARGETS="[]"
add_target () { # add_target NAME KIND BASE AUTH PID
  TARGETS=$(jq -c --arg n "$1" --arg k "$2" --arg b "$3" --arg a "$4" --argjson p "${5:-null}" \
    '. + [{name: $n, kind: $k, base: $b, auth: (if $a == "" then null else $a end), pids: (if $p == null then [] else [$p] end)}]' <<< "$TARGETS")
}
add_target direct direct "$DIRECT" "Basic $TOKEN" ""

# ECR tokens (~4.8 KB) do not fit nginx's 4 KB configuration token buffer ("too long parameter"),
# so the header value is assembled from `set` variables of at most 2000 characters each.
TOKEN_SETS=''
TOKEN_VARS=''
rest=$TOKEN
i=0
while [ -n "$rest" ] && [ $i -lt 16 ]; do
  TOKEN_SETS+="      set \$ecr_token_$i \"${rest:0:2000}\";"$'\n'
  TOKEN_VARS+="\$ecr_token_$i"
  rest=${rest:2000}
  i=$((i + 1))
done
[ -z "$rest" ] || die "token too long"
NGINX_VERSION=$(nginx -v 2>&1 | sed 's|.*nginx/||')
k=0
for v in $NGINX_VARIANTS; do
  tpl="bench/nginx/$v.conf"
  [ -f "$tpl" ] || die "no template $tpl"
  port=${NGINX_PORTS[$k]}; k=$((k + 1))
  prefix="$WORK/nginx-$v"
  mkdir -p "$prefix"
  conf=$(< "$tpl")
  conf=${conf//@PREFIX@/$prefix}
  conf=${conf//@LISTEN@/127.0.0.1:$port}
  conf=${conf//@UPSTREAM@/127.0.0.1:$REG_PORT}
  conf=${conf//@TOKEN_SETS@/$TOKEN_SETS}
  conf=${conf//@TOKEN_VARS@/$TOKEN_VARS}
  printf '%s\n' "$conf" > "$prefix/nginx.conf"
  nginx -t -q -p "$prefix" -c "$prefix/nginx.conf" -e "$prefix/error.log" || die "nginx -t failed for $v"
  nginx -p "$prefix" -c "$prefix/nginx.conf" -e "$prefix/error.log" > "$prefix/stdout.log" 2>&1 &
  pid=$!
  PIDS+=("$pid")
  wait_http "http://127.0.0.1:$port/v2/" 200 10
  add_target "nginx-$v" nginx "http://127.0.0.1:$port" "" "$pid"
  log "nginx $NGINX_VERSION ($v) on 127.0.0.1:$port"
done

# ---------------------------------------------------------------- the proxy
PROXY_PID=''
STARTED_PID=''
launch_proxy () { # launch_proxy PORT LOGFILE "node flags" "proxy flags" -> STARTED_PID
  [ -n "$ECR_API_URL" ] || die "no ECR API stand-in"
  local nodeflags=() extra=()
  read -r -a nodeflags <<< "$3"
  read -r -a extra <<< "$4"
  env -u NODE_OPTIONS AWS_ENDPOINT_URL_ECR="$ECR_API_URL" AWS_REGION=us-east-2 AWS_ACCESS_KEY_ID=AKIDEXAMPLE \
    AWS_SECRET_ACCESS_KEY=secret AWS_EC2_METADATA_DISABLED=true \
    node "${nodeflags[@]}" dist/src/cli.js --host 127.0.0.1 --port "$1" --region us-east-2 \
    --upstream "http://127.0.0.1:$REG_PORT" --log-level "$PROXY_LOG_LEVEL" "${extra[@]}" >> "$2" 2>&1 &
  STARTED_PID=$!
  PIDS+=("$STARTED_PID")
  wait_http "http://127.0.0.1:$1/readyz" 200 30
}
start_proxy () { # start_proxy [node flags]
  launch_proxy "$PROXY_PORT" "$WORK/proxy.log" "${1:-}" ""
  PROXY_PID=$STARTED_PID
}
if [ $PROXY_OK = 1 ]; then
  log "starting ecr-auth-proxy on 127.0.0.1:$PROXY_PORT (log level $PROXY_LOG_LEVEL)"
  if start_proxy && [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://127.0.0.1:$PROXY_PORT/v2/$REPO/manifests/$TAG" \
       -H 'Accept: application/vnd.oci.image.manifest.v1+json')" = 200 ]; then
    add_target proxy proxy "http://127.0.0.1:$PROXY_PORT" "" "$PROXY_PID"
  else
    tail -20 "$WORK/proxy.log" >&2 || true
    [ "$REQUIRE_PROXY" = 1 ] && die "the proxy does not serve the manifest"
    log "WARNING: the proxy does not serve the seeded manifest — left out of this run"
    PROXY_OK=0
  fi
fi

# ---------------------------------------------------------------- optional extra proxy instances
k=0
if [ $PROXY_OK = 1 ] && [ -n "$PROXY_VARIANTS" ]; then
  IFS=';' read -r -a pvs <<< "$PROXY_VARIANTS"
  for pv in "${pvs[@]}"; do
    [ -n "$pv" ] || continue
    IFS='|' read -r pname pnode pargs <<< "$pv"
    port=${VARIANT_PORTS[$k]}; k=$((k + 1))
    launch_proxy "$port" "$WORK/proxy-$pname.log" "$pnode" "$pargs"
    add_target "proxy-$pname" variant "http://127.0.0.1:$port" "" "$STARTED_PID"
    log "proxy variant $pname (node $pnode; flags $pargs) on 127.0.0.1:$port"
  done
fi

# ---------------------------------------------------------------- optional minimal forwarders
for v in $VARIANTS; do
  port=${VARIANT_PORTS[$k]}; k=$((k + 1))
  "${TS_NODE[@]}" bench/experiments/forward-variants.ts --mode "$v" --port "$port" \
    --upstream "http://127.0.0.1:$REG_PORT" --token "$TOKEN" --log "$WORK/variant-$v.log" > "$WORK/variant-$v.out" 2>&1 &
  pid=$!
  PIDS+=("$pid")
  case "$v" in tcp-*) wait_http "http://127.0.0.1:$port/v2/" 401 30 ;; *) wait_http "http://127.0.0.1:$port/v2/" 200 30 ;; esac
  # tcp-* variants do not speak HTTP: the client sends its own Authorization
  case "$v" in tcp-*) vauth="Basic $TOKEN" ;; *) vauth="" ;; esac
  add_target "variant-$v" variant "http://127.0.0.1:$port" "$vauth" "$pid"
  log "forwarding variant $v on 127.0.0.1:$port"
done

jq -n --argjson targets "$TARGETS" --arg repo "$REPO" --arg tag "$TAG" --arg path "$BLOB" \
  --arg digest "$BLOB_DIGEST" --argjson size "$BLOB_SIZE" --argjson chunk $((CHUNK_MIB * 1048576)) \
  --argjson wrk "$WRK_SECONDS" --arg lua "$ROOT/bench/wrk/manifest.lua" --arg work "$WORK" \
  --argjson rounds "$ROUNDS" --argjson reps "$DOWNLOAD_REPS" \
  '{targets: $targets, repo: $repo, tag: $tag, blob: {path: $path, digest: $digest, size: $size},
    chunkSize: $chunk, wrkSeconds: $wrk, wrkScript: $lua, workDir: $work, rounds: $rounds, downloadReps: $reps}' > "$WORK/plan.json"

# ---------------------------------------------------------------- measurements
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
log "blob downloads and uploads (load average $LOAD_BEFORE)"
NTARGETS=$(jq '.targets | length' "$WORK/plan.json")
BLOB_ARGS=()
[ "${BENCH_SKIP_UPLOADS:-0}" = 1 ] && BLOB_ARGS+=(--skip-uploads)
# a generous bound: every target at >= ~100 MiB/s
BLOB_MAX=$(( 60 + NTARGETS * (BLOB_MIB * (DOWNLOAD_REPS + 8 + 2) / 100 + 20) ))
bounded "$BLOB_MAX" "${TS_NODE[@]}" bench/measure.ts --plan "$WORK/plan.json" --phase blobs --out "$WORK/part-blobs.json" "${BLOB_ARGS[@]}" \
  || log "WARNING: the blob phase did not finish (partial results kept)"

small_run () { # small_run htpasswd|off
  local mode=$1 label
  if [ "$mode" = off ]; then label=auth-off; else label=htpasswd-bcrypt4; fi
  stop_pid "$REG_PID"
  start_registry "$mode"
  log "manifest HEAD/GET ($label)"
  local max=$(( 30 + NTARGETS * (3 + ROUNDS * 6 * (WRK_SECONDS + 2)) ))
  bounded "$max" "${TS_NODE[@]}" bench/measure.ts --plan "$WORK/plan.json" --phase small --mode "$label" \
    --out "$WORK/part-small-$label.json" || log "WARNING: the manifest phase ($label) did not finish (partial results kept)"
}
case "$SMALL_AUTH" in
  off) small_run off ;;
  htpasswd) small_run htpasswd ;;
  both) small_run off; small_run htpasswd ;;
  none) log "manifest runs skipped (BENCH_SMALL_AUTH=none)" ;;
  *) die "BENCH_SMALL_AUTH must be off, htpasswd, both or none" ;;
esac
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------- optional CPU profile of the proxy
if [ "$PROFILE" = 1 ] && [ $PROXY_OK = 1 ] && [ $((DEADLINE - SECONDS)) -lt $((60 + BLOB_MIB * 12 / 100)) ]; then
  log "WARNING: not enough time left for the CPU profile; skipped"
elif [ "$PROFILE" = 1 ] && [ $PROXY_OK = 1 ]; then
  for what in small blob; do
    log "CPU profile of the proxy: $what"
    stop_pid "$PROXY_PID"
    mkdir -p "$WORK/prof-$what"
    start_proxy "--cpu-prof --cpu-prof-dir=$WORK/prof-$what"
    bounded $((30 + BLOB_MIB * 10 / 100)) "${TS_NODE[@]}" bench/measure.ts --plan "$WORK/plan.json" --phase "profile-$what" \
      --out "$WORK/part-profile-run-$what.json" || log "WARNING: profiling load did not finish"
    stop_pid "$PROXY_PID"
    prof=$(ls "$WORK/prof-$what"/*.cpuprofile 2>/dev/null | head -1 || true)
    if [ -n "$prof" ]; then
      bounded 60 "${TS_NODE[@]}" bench/cpuprofile-top.ts "$prof" --out "$WORK/part-profile-$what.json" --label "$what"
    else
      log "WARNING: no .cpuprofile written (did the proxy exit cleanly on SIGTERM?)"
    fi
  done
fi

# ---------------------------------------------------------------- report
jq -n --arg before "$LOAD_BEFORE" --arg after "$LOAD_AFTER" --arg blobmib "$BLOB_MIB" \
  --arg small "$SMALL_AUTH" --arg loglevel "$PROXY_LOG_LEVEL" --argjson proxyOk "$PROXY_OK" \
  --argjson tokenLen "${#TOKEN}" --arg nginxv "$NGINX_VERSION" --arg pinning "$PINNING" \
  '{loadBefore: $before, loadAfter: $after, blobMiB: ($blobmib | tonumber), smallAuth: $small,
    proxyLogLevel: $loglevel, proxyIncluded: ($proxyOk == 1), tokenLength: $tokenLen, nginxVersion: $nginxv, pinning: $pinning}' > "$WORK/part-run.json"
bounded 60 "${TS_NODE[@]}" bench/report.ts --work "$WORK" --results "$ROOT/bench/results"
cat "$ROOT/bench/results/latest.md"
