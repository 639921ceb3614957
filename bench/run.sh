#!/usr/bin/env bash
# Benchmark harness: direct access vs auth-injecting nginx vs a minimal Node forwarder vs
# ecr-auth-proxy, in one run, against four upstreams ("sets"):
#   fast          nginx serving the manifest and tags list from files with the registry's headers,
#                 so that the forwarder, not the registry, is the bottleneck (small requests; the
#                 many-clients memory test; idle RSS)
#   fast-tls      the same over TLS
#   registry      docker-registry 2.8 (1 GiB blob download/upload; the registry-bound manifest rows)
#   registry-tls  docker-registry behind an nginx TLS terminator (blobs), as ECR and S3 always are
# The forwarders of a set are started fresh for it, each pinned to one CPU (the "forwarder CPU");
# the upstreams, the load generators and this script run on the other CPU(s).
# Usage: npm run bench            (or: bash bench/run.sh)
# Knobs (env): BENCH_SETS="fast fast-tls registry registry-tls" BENCH_BLOB_MIB=1024 BENCH_CHUNK_MIB=8
#   BENCH_WRK_SECONDS=3 BENCH_ROUNDS=2 (small-request rounds, median) BENCH_CONCURRENCY="16"
#   BENCH_DOWNLOAD_REPS=3 (1-client downloads, median) BENCH_NGINX_VARIANTS="buffered" (or "unbuffered buffered")
#   BENCH_LOAD_CLIENTS=512 BENCH_LOAD_SECONDS=8 (many-clients memory test; BENCH_LOAD_CLIENTS=0 skips it)
#   BENCH_SMALL_AUTH=off|htpasswd|both|none (the registry-bound manifest rows, c16, one round)
#   BENCH_PROFILE=1 (CPU-profile the proxy: small requests on fast, blobs on registry-tls)
#   BENCH_REQUIRE_PROXY=1 (fail if it cannot run) BENCH_PROXY_LOG_LEVEL=info BENCH_KEEP=1 (keep the work dir)
#   BENCH_TIME_LIMIT=1500 (seconds; the last 60 are kept for the report) BENCH_SKIP_UPLOADS=1 (downloads only)
#   BENCH_INSTALL_ONLY=1 (install the peers, measure nothing)
#   BENCH_SMOKE=1 (npm run bench:smoke: short cells, a 64 MiB blob, no profile; results stay in the work dir)
#   BENCH_VARIANTS="node-http undici-stream ..." also measures minimal forwarders from
#     bench/experiments/forward-variants.ts on the plain sets (evidence for tuning; not in the budget)
#   BENCH_PROXY_VARIANTS='name|node flags|proxy flags[|cli.js];...' extra proxy instances, e.g.
#     'semi1|--max-semi-space-size=1|;warn||--log-level warn' (evidence for tuning; not in the budget);
#     the optional 4th field runs another build, e.g. 'before|||/tmp/before/dist/src/cli.js' for a
#     same-run before/after of a change
#   BENCH_PIN=1: on 2+ cores the forwarder under test gets BENCH_FORWARDER_CPU (default 1) to itself
#     and everything else the other CPUs; 0 = no pinning
# Everything listens on 127.0.0.1 only and is torn down on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

SMOKE=${BENCH_SMOKE:-0}
if [ "$SMOKE" = 1 ]; then
  # a quick check that every part still runs (about 2-3 minutes); its figures mean little and
  # are not written to bench/results
  : "${BENCH_BLOB_MIB:=64}" "${BENCH_WRK_SECONDS:=1}" "${BENCH_ROUNDS:=1}" "${BENCH_DOWNLOAD_REPS:=1}"
  : "${BENCH_LOAD_SECONDS:=2}" "${BENCH_PROFILE:=0}"
fi
SETS=${BENCH_SETS:-fast fast-tls registry registry-tls}
BLOB_MIB=${BENCH_BLOB_MIB:-1024}
CHUNK_MIB=${BENCH_CHUNK_MIB:-8}
WRK_SECONDS=${BENCH_WRK_SECONDS:-3}
ROUNDS=${BENCH_ROUNDS:-2}
CONCURRENCY=${BENCH_CONCURRENCY:-16}
DOWNLOAD_REPS=${BENCH_DOWNLOAD_REPS:-3}
NGINX_VARIANTS=${BENCH_NGINX_VARIANTS:-buffered}
LOAD_CLIENTS=${BENCH_LOAD_CLIENTS:-512}
LOAD_SECONDS=${BENCH_LOAD_SECONDS:-8}
SMALL_AUTH=${BENCH_SMALL_AUTH:-off}
FWD_CPU=${BENCH_FORWARDER_CPU:-1}
VARIANTS=${BENCH_VARIANTS:-}
PROFILE=${BENCH_PROFILE:-1}
PROXY_VARIANTS=${BENCH_PROXY_VARIANTS:-}
PIN=${BENCH_PIN:-1}
REQUIRE_PROXY=${BENCH_REQUIRE_PROXY:-0}
PROXY_LOG_LEVEL=${BENCH_PROXY_LOG_LEVEL:-info}
TIME_LIMIT=${BENCH_TIME_LIMIT:-1500}
# the last minute of the limit is kept for the report, which is written whatever got measured
REPORT_RESERVE=60
DEADLINE=$((SECONDS + TIME_LIMIT - REPORT_RESERVE))
TS_NODE=(node --import=@tapjs/typescript/import)
export TS_NODE_TRANSPILE_ONLY=1

log () { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die () { log "ERROR: $*"; exit 1; }
# bounded <max seconds> cmd...: run a step, never past the overall deadline (past it: skipped,
# status 124). It runs in the background and is waited for, so that Ctrl-C / SIGTERM reach the
# traps at once.
STEP_PID=''
bounded () {
  local max=$1; shift
  local r=$((DEADLINE - SECONDS))
  if [ "$r" -le 5 ]; then log "WARNING: the time limit (${TIME_LIMIT}s) is reached; skipped: $1 $2 $3 …"; return 124; fi
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
  command -v ss >/dev/null || missing+=(iproute2)
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
DEADLINE=$((SECONDS + TIME_LIMIT - REPORT_RESERVE))
# time_for SET: is there time left to start a set? (otherwise it is left out, with a warning)
time_for () {
  [ $((DEADLINE - SECONDS)) -gt 60 ] && return 0
  log "WARNING: the time limit (${TIME_LIMIT}s) is close; set $1 left out"
  return 1
}

# ---------------------------------------------------------------- CPU pinning
CORES=$(nproc)
FWD_PIN=()
PINNING="none"
if [ "$CORES" -lt "$(nproc --all)" ]; then
  # nproc counts the CPUs this process may use: someone started the harness with a narrower
  # affinity, and then the forwarders cannot have a CPU of their own
  log "WARNING: the harness may use only $CORES of $(nproc --all) CPUs (CPU affinity $(taskset -pc $$ | sed 's/.*: //')); no pinning"
  PINNING="none (the harness was started with access to $CORES of $(nproc --all) CPUs)"
fi
if [ "$PIN" = 1 ] && [ "$CORES" -ge 2 ] && command -v taskset >/dev/null; then
  [ "$FWD_CPU" -lt "$CORES" ] || die "BENCH_FORWARDER_CPU=$FWD_CPU, but there are $CORES CPUs"
  OTHER_CPUS=$(seq 0 $((CORES - 1)) | grep -vx "$FWD_CPU" | paste -sd, -)
  # this shell and all it starts from now on (upstreams, clients): the other CPUs
  taskset -pc "$OTHER_CPUS" $$ >/dev/null
  FWD_PIN=(taskset -c "$FWD_CPU")
  PINNING="forwarder under test alone on CPU $FWD_CPU; upstreams (docker-registry, TLS terminator, fast upstream), load generators and the harness on CPU(s) $OTHER_CPUS"
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
wait_http () { # wait_http URL EXPECTED_STATUS SECONDS [curl args]
  local url=$1 want=$2 max=$3 i code
  shift 3
  for i in $(seq 1 $((max * 10))); do
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$@" "$url" || true)
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
read -r -a PORTS <<< "$(free_ports 5)"
REG_PORT=${PORTS[0]} API_PORT=${PORTS[1]} FAST_PORT=${PORTS[2]} FAST_TLS_PORT=${PORTS[3]} TLS_PORT=${PORTS[4]}
[ "$(wc -w <<< "$NGINX_VARIANTS")" -le 4 ] || die "at most 4 nginx variants"

# ---------------------------------------------------------------- TLS certificate of the upstreams
# One self-signed certificate (names localhost and 127.0.0.1) for the TLS terminator and the fast
# upstream's TLS listener; trusted by the Node forwarders through NODE_EXTRA_CA_CERTS, by nginx
# through proxy_ssl_trusted_certificate, by the clients through --cacert / the plan's caFile.
mkdir -p "$WORK/tls"
CERT="$WORK/tls/cert.pem" KEY="$WORK/tls/key.pem"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost \
  -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" -keyout "$KEY" -out "$CERT" 2> "$WORK/tls/openssl.log" \
  || { cat "$WORK/tls/openssl.log" >&2; die "openssl could not make the certificate"; }

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
printf '%s\n' "$TOKEN" > "$WORK/token.txt"
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
  docker-registry serve "$WORK/registry.yml" >> "$WORK/registry.log" 2>&1 &
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
MANIFEST_DIGEST="sha256:$(sha256sum "$WORK/manifest.json" | cut -d' ' -f1)"
code=$(curl -sS -X PUT -H "$AUTH_HEADER" -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' \
  --data-binary "@$WORK/manifest.json" -o /dev/null -w '%{http_code}' --max-time 10 "$DIRECT/v2/$REPO/manifests/$TAG")
[ "$code" = 201 ] || die "manifest PUT answered $code"

# ---------------------------------------------------------------- nginx configuration helpers
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
# render_nginx TEMPLATE PREFIX KEY=VALUE... : fill @KEY@ placeholders (plus the token ones), check it
render_nginx () {
  local tpl=$1 prefix=$2 conf kv
  shift 2
  [ -f "$tpl" ] || die "no template $tpl"
  mkdir -p "$prefix"
  conf=$(< "$tpl")
  conf=${conf//@PREFIX@/$prefix}
  conf=${conf//@TOKEN_SETS@/$TOKEN_SETS}
  conf=${conf//@TOKEN_VARS@/$TOKEN_VARS}
  conf=${conf//@CERT@/$CERT}
  conf=${conf//@KEY@/$KEY}
  for kv in "$@"; do conf=${conf//@${kv%%=*}@/${kv#*=}}; done
  printf '%s\n' "$conf" > "$prefix/nginx.conf"
  nginx -t -q -p "$prefix" -c "$prefix/nginx.conf" -e "$prefix/error.log" || die "nginx -t failed for $prefix"
}
STARTED_PID=''
start_nginx () { # start_nginx PREFIX [pin...]: start nginx from PREFIX/nginx.conf -> STARTED_PID
  local prefix=$1
  shift
  "$@" nginx -p "$prefix" -c "$prefix/nginx.conf" -e "$prefix/error.log" > "$prefix/stdout.log" 2>&1 &
  STARTED_PID=$!
  PIDS+=("$STARTED_PID")
}

# ---------------------------------------------------------------- the fast upstream
FAST_PID=''
start_fast_upstream () {
  local root="$WORK/fast-root"
  mkdir -p "$root/v2/$REPO/manifests" "$root/v2/$REPO/tags"
  cp "$WORK/manifest.json" "$root/v2/$REPO/manifests/$TAG"
  # the registry's own tags/list body, byte for byte
  curl -sS -H "$AUTH_HEADER" --max-time 10 -o "$root/v2/$REPO/tags/list" "$DIRECT/v2/$REPO/tags/list"
  render_nginx bench/nginx/fast-upstream.conf "$WORK/nginx-fast" "LISTEN=127.0.0.1:$FAST_PORT" \
    "LISTEN_TLS=127.0.0.1:$FAST_TLS_PORT" "ROOT=$root" "MANIFEST_DIGEST=$MANIFEST_DIGEST"
  start_nginx "$WORK/nginx-fast"
  FAST_PID=$STARTED_PID
  wait_http "http://127.0.0.1:$FAST_PORT/v2/" 401 10
  local h
  h=$(curl -sS -D - -o /dev/null -H "$AUTH_HEADER" --cacert "$CERT" "https://127.0.0.1:$FAST_TLS_PORT/v2/$REPO/manifests/$TAG" | tr -d '\r')
  grep -qi "^docker-content-digest: $MANIFEST_DIGEST" <<< "$h" || die "the fast upstream does not serve the manifest: $h"
  log "fast upstream (nginx $NGINX_VERSION, files) on 127.0.0.1:$FAST_PORT and TLS 127.0.0.1:$FAST_TLS_PORT"
}

# ---------------------------------------------------------------- sets of forwarders
TARGETS="[]"
SET_PIDS=()
add_target () { # add_target NAME KIND BASE AUTH PID
  TARGETS=$(jq -c --arg n "$1" --arg k "$2" --arg b "$3" --arg a "$4" --argjson p "${5:-null}" \
    '. + [{name: $n, kind: $k, base: $b, auth: (if $a == "" then null else $a end), pids: (if $p == null then [] else [$p] end)}]' <<< "$TARGETS")
}
launch_proxy () { # launch_proxy PORT LOGFILE "node flags" "proxy flags" UPSTREAM [CLI] -> STARTED_PID
  [ -n "$ECR_API_URL" ] || die "no ECR API stand-in"
  local nodeflags=() extra=()
  read -r -a nodeflags <<< "$3"
  read -r -a extra <<< "$4"
  "${FWD_PIN[@]}" env -u NODE_OPTIONS AWS_ENDPOINT_URL_ECR="$ECR_API_URL" AWS_REGION=us-east-2 AWS_ACCESS_KEY_ID=AKIDEXAMPLE \
    AWS_SECRET_ACCESS_KEY=secret AWS_EC2_METADATA_DISABLED=true NODE_EXTRA_CA_CERTS="$CERT" \
    node "${nodeflags[@]}" "${6:-dist/src/cli.js}" --host 127.0.0.1 --port "$1" --region us-east-2 \
    --upstream "$5" --log-level "$PROXY_LOG_LEVEL" "${extra[@]}" >> "$2" 2>&1 &
  STARTED_PID=$!
  PIDS+=("$STARTED_PID")
  wait_http "http://127.0.0.1:$1/readyz" 200 30
}
SET=''
SET_UPSTREAM=''
PROXY_PID=''
PROXY_PORT=''
# start_set NAME UPSTREAM_URL: the forwarders for one upstream, each pinned to the forwarder CPU,
# and $WORK/plan-NAME.json describing them
start_set () {
  SET=$1 SET_UPSTREAM=$2
  TARGETS="[]"
  SET_PIDS=()
  PROXY_PID=''
  local scheme=${SET_UPSTREAM%%://*} hostport=${SET_UPSTREAM#*://} tls=false curl_tls=() upstream_tls=''
  if [ "$scheme" = https ]; then
    tls=true
    curl_tls=(--cacert "$CERT")
    upstream_tls="      proxy_ssl_verify on;"$'\n'"      proxy_ssl_trusted_certificate $CERT;"$'\n'"      proxy_ssl_name localhost;"$'\n'"      proxy_ssl_session_reuse on;"
  fi
  local ports=() k=0 v port pid
  read -r -a ports <<< "$(free_ports 12)"
  add_target direct direct "$SET_UPSTREAM" "Basic $TOKEN" ""
  for v in $NGINX_VARIANTS; do
    port=${ports[$k]}; k=$((k + 1))
    render_nginx "bench/nginx/$v.conf" "$WORK/nginx-$SET-$v" "LISTEN=127.0.0.1:$port" "UPSTREAM=$hostport" \
      "UPSTREAM_SCHEME=$scheme" "UPSTREAM_TLS=$upstream_tls"
    start_nginx "$WORK/nginx-$SET-$v" "${FWD_PIN[@]}"
    pid=$STARTED_PID
    SET_PIDS+=("$pid")
    wait_http "http://127.0.0.1:$port/v2/" 200 10
    add_target "nginx-$v" nginx "http://127.0.0.1:$port" "" "$pid"
  done
  # the minimal Node forwarder: the floor of what Node can do
  port=${ports[$k]}; k=$((k + 1))
  "${FWD_PIN[@]}" env -u NODE_OPTIONS NODE_EXTRA_CA_CERTS="$CERT" node bench/node-forwarder.mjs --port "$port" \
    --upstream "$SET_UPSTREAM" --token-file "$WORK/token.txt" > "$WORK/node-forwarder-$SET.log" 2>&1 &
  pid=$!
  PIDS+=("$pid")
  SET_PIDS+=("$pid")
  wait_http "http://127.0.0.1:$port/v2/" 200 20
  add_target node-minimal node "http://127.0.0.1:$port" "" "$pid"
  if [ $PROXY_OK = 1 ]; then
    PROXY_PORT=${ports[$k]}; k=$((k + 1))
    if launch_proxy "$PROXY_PORT" "$WORK/proxy-$SET.log" "" "" "$SET_UPSTREAM" && \
       [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://127.0.0.1:$PROXY_PORT/v2/$REPO/manifests/$TAG" \
         -H 'Accept: application/vnd.oci.image.manifest.v1+json')" = 200 ]; then
      PROXY_PID=$STARTED_PID
      SET_PIDS+=("$PROXY_PID")
      add_target proxy proxy "http://127.0.0.1:$PROXY_PORT" "" "$PROXY_PID"
    else
      tail -20 "$WORK/proxy-$SET.log" >&2 || true
      [ "$REQUIRE_PROXY" = 1 ] && die "the proxy does not serve the seeded manifest ($SET)"
      log "WARNING: the proxy does not serve the seeded manifest — left out of the $SET set"
      [ -z "$STARTED_PID" ] || stop_pid "$STARTED_PID"
    fi
  fi
  if [ $PROXY_OK = 1 ] && [ -n "$PROXY_VARIANTS" ]; then
    local pvs=() pv pname pnode pargs pcli
    IFS=';' read -r -a pvs <<< "$PROXY_VARIANTS"
    for pv in "${pvs[@]}"; do
      [ -n "$pv" ] || continue
      IFS='|' read -r pname pnode pargs pcli <<< "$pv"
      port=${ports[$k]}; k=$((k + 1))
      launch_proxy "$port" "$WORK/proxy-$SET-$pname.log" "$pnode" "$pargs" "$SET_UPSTREAM" "$pcli"
      SET_PIDS+=("$STARTED_PID")
      add_target "proxy-$pname" variant "http://127.0.0.1:$port" "" "$STARTED_PID"
    done
  fi
  if [ "$tls" = false ]; then
    for v in $VARIANTS; do
      port=${ports[$k]}; k=$((k + 1))
      "${FWD_PIN[@]}" "${TS_NODE[@]}" bench/experiments/forward-variants.ts --mode "$v" --port "$port" \
        --upstream "$SET_UPSTREAM" --token "$TOKEN" --log "$WORK/variant-$SET-$v.log" > "$WORK/variant-$SET-$v.out" 2>&1 &
      pid=$!
      PIDS+=("$pid")
      SET_PIDS+=("$pid")
      case "$v" in tcp-*) wait_http "http://127.0.0.1:$port/v2/" 401 30 ;; *) wait_http "http://127.0.0.1:$port/v2/" 200 30 ;; esac
      # tcp-* variants do not speak HTTP: the client sends its own Authorization
      local vauth=''
      case "$v" in tcp-*) vauth="Basic $TOKEN" ;; esac
      add_target "variant-$v" variant "http://127.0.0.1:$port" "$vauth" "$pid"
    done
  fi
  [ "$k" -le 12 ] || die "too many targets in one set"
  # every target answers the manifest with 200 before anything is measured
  local t base auth
  for t in $(jq -r '.[] | @base64' <<< "$TARGETS"); do
    base=$(base64 -d <<< "$t" | jq -r .base)
    auth=$(base64 -d <<< "$t" | jq -r '.auth // ""')
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "${curl_tls[@]}" ${auth:+-H "Authorization: $auth"} \
      -H 'Accept: application/vnd.oci.image.manifest.v1+json' "$base/v2/$REPO/manifests/$TAG")
    [ "$code" = 200 ] || die "$SET: $(base64 -d <<< "$t" | jq -r .name) answers the manifest with $code"
  done
  jq -n --arg set "$SET" --arg upstream "$SET_UPSTREAM" --argjson tls "$tls" --arg ca "$CERT" \
    --argjson targets "$TARGETS" --arg repo "$REPO" --arg tag "$TAG" --arg path "$BLOB" \
    --arg digest "$BLOB_DIGEST" --argjson size "$BLOB_SIZE" --argjson chunk $((CHUNK_MIB * 1048576)) \
    --argjson wrk "$WRK_SECONDS" --arg lua "$ROOT/bench/wrk/manifest.lua" --arg work "$WORK" \
    --argjson rounds "$ROUNDS" --argjson reps "$DOWNLOAD_REPS" --arg conc "$CONCURRENCY" \
    --argjson lc "$LOAD_CLIENTS" --argjson ls "$LOAD_SECONDS" \
    '{set: $set, upstream: $upstream, tls: $tls, caFile: (if $tls then $ca else null end),
      targets: $targets, repo: $repo, tag: $tag, blob: {path: $path, digest: $digest, size: $size},
      chunkSize: $chunk, wrkSeconds: $wrk, wrkScript: $lua, workDir: $work, rounds: $rounds, downloadReps: $reps,
      smallCases: [
        {id: "manifest-HEAD", label: "manifest HEAD", method: "HEAD", path: "/v2/\($repo)/manifests/\($tag)"},
        {id: "manifest-GET", label: "manifest GET", method: "GET", path: "/v2/\($repo)/manifests/\($tag)"},
        {id: "tags-GET", label: "tags/list GET", method: "GET", path: "/v2/\($repo)/tags/list"}],
      concurrencies: ($conc | split(" ") | map(select(. != "") | tonumber)),
      load: {clients: $lc, seconds: $ls, settleSeconds: 5}}' > "$WORK/plan-$SET.json"
  log "set $SET -> $SET_UPSTREAM: $(jq -r '[.[] | .name + (if .base then " " + .base else "" end)] | join(", ")' <<< "$TARGETS")"
}
stop_set () {
  local p
  for p in "${SET_PIDS[@]}"; do stop_pid "$p"; done
  SET_PIDS=()
}
measure () { # measure MAX_SECONDS PART_NAME measure.ts args...: one bounded measurement step of the set
  local max=$1 part=$2
  shift 2
  bounded "$max" "${TS_NODE[@]}" bench/measure.ts --plan "$WORK/plan-$SET.json" --out "$WORK/part-$SET-$part.json" "$@" \
    || log "WARNING: $SET $part did not finish (partial results kept)"
}
ntargets () { jq '.targets | length' "$WORK/plan-$SET.json"; }
profile_proxy () { # profile_proxy small|blob: restart the set's proxy under --cpu-prof, load it, summarise
  local what=$1 prof
  [ "$PROFILE" = 1 ] && [ -n "$PROXY_PID" ] || return 0
  if [ $((DEADLINE - SECONDS)) -lt $((60 + BLOB_MIB * 25 / 100)) ]; then log "WARNING: not enough time left for the CPU profile; skipped"; return 0; fi
  log "CPU profile of the proxy: $what ($SET)"
  stop_pid "$PROXY_PID"
  forget_set_pid "$PROXY_PID"
  mkdir -p "$WORK/prof-$what"
  launch_proxy "$PROXY_PORT" "$WORK/proxy-$SET-prof.log" "--cpu-prof --cpu-prof-dir=$WORK/prof-$what" "" "$SET_UPSTREAM"
  PROXY_PID=$STARTED_PID
  measure $((60 + BLOB_MIB * 25 / 100)) "profile-run-$what" --phase "profile-$what"
  stop_pid "$PROXY_PID"
  PROXY_PID=''
  prof=$(ls "$WORK/prof-$what"/*.cpuprofile 2>/dev/null | head -1 || true)
  if [ -n "$prof" ]; then
    bounded 60 "${TS_NODE[@]}" bench/cpuprofile-top.ts "$prof" --out "$WORK/part-profile-$what.json" --label "$what ($SET)" \
      || log "WARNING: the profile could not be summarised"
  else
    log "WARNING: no .cpuprofile written (did the proxy exit cleanly on SIGTERM?)"
  fi
}
forget_set_pid () {
  local keep=() p
  for p in "${SET_PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
  SET_PIDS=("${keep[@]}")
}
has_set () { grep -qw -- "$1" <<< "$SETS"; }

# ---------------------------------------------------------------- measurements
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
log "load average $LOAD_BEFORE"
NCONC=$(wc -w <<< "$CONCURRENCY")
small_max () { echo $(( 30 + $(ntargets) * (2 + ROUNDS * 3 * NCONC * (WRK_SECONDS + 2)) )); }

if has_set fast || has_set fast-tls; then start_fast_upstream; fi
for s in fast fast-tls; do
  has_set "$s" && time_for "$s" || continue
  if [ "$s" = fast ]; then start_set fast "http://127.0.0.1:$FAST_PORT"; else start_set fast-tls "https://127.0.0.1:$FAST_TLS_PORT"; fi
  IDLE=(--idle)
  if [ "$s" = fast ] && [ "$LOAD_CLIENTS" -gt 0 ]; then
    log "$LOAD_CLIENTS concurrent manifest clients, ${LOAD_SECONDS}s per forwarder ($s)"
    measure $(( 30 + $(ntargets) * (LOAD_SECONDS + 25) )) load --phase load --idle
    IDLE=()
  fi
  log "small requests ($s; c $CONCURRENCY; $ROUNDS rounds of ${WRK_SECONDS}s)"
  measure "$(small_max)" small --phase small --mode fast "${IDLE[@]}"
  [ "$s" = fast ] && profile_proxy small
  stop_set
done
[ -z "$FAST_PID" ] || stop_pid "$FAST_PID"

BLOB_ARGS=()
[ "${BENCH_SKIP_UPLOADS:-0}" = 1 ] && BLOB_ARGS+=(--skip-uploads)
# a generous bound: every target at >= ~100 MiB/s
blob_max () { echo $(( 60 + $(ntargets) * (BLOB_MIB * (DOWNLOAD_REPS + 8 + 2) / 100 + 20) )); }
if has_set registry && time_for registry; then
  start_set registry "$DIRECT"
  log "blob downloads and uploads (registry)"
  measure "$(blob_max)" blobs --phase blobs --idle "${BLOB_ARGS[@]}"
  if [ "$SMALL_AUTH" != none ]; then
    for mode in off htpasswd; do
      [ "$SMALL_AUTH" = both ] || [ "$SMALL_AUTH" = "$mode" ] || continue
      label=registry-bound-auth-$mode
      stop_pid "$REG_PID"
      start_registry "$mode"
      log "manifest HEAD/GET against docker-registry ($label; c16, one round)"
      measure $(( 30 + $(ntargets) * 2 * (WRK_SECONDS + 4) )) "small-$label" --phase small --mode "$label" \
        --cases manifest-HEAD,manifest-GET --concurrency 16 --rounds 1
    done
    stop_pid "$REG_PID"
    start_registry htpasswd
  fi
  stop_set
fi
if has_set registry-tls && time_for registry-tls; then
  render_nginx bench/nginx/tls-terminator.conf "$WORK/nginx-tls" "LISTEN=127.0.0.1:$TLS_PORT" \
    "UPSTREAM=127.0.0.1:$REG_PORT" "SELF=127.0.0.1:$TLS_PORT"
  start_nginx "$WORK/nginx-tls"
  TLS_PID=$STARTED_PID
  wait_http "https://127.0.0.1:$TLS_PORT/v2/" 401 10 --cacert "$CERT"
  log "TLS terminator (nginx $NGINX_VERSION) on 127.0.0.1:$TLS_PORT in front of the registry"
  start_set registry-tls "https://127.0.0.1:$TLS_PORT"
  log "blob downloads and uploads (registry-tls)"
  measure "$(blob_max)" blobs --phase blobs --idle "${BLOB_ARGS[@]}"
  profile_proxy blob
  stop_set
  stop_pid "$TLS_PID"
fi
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------- report
jq -n --arg before "$LOAD_BEFORE" --arg after "$LOAD_AFTER" --arg blobmib "$BLOB_MIB" \
  --arg small "$SMALL_AUTH" --arg loglevel "$PROXY_LOG_LEVEL" --argjson proxyOk "$PROXY_OK" \
  --argjson tokenLen "${#TOKEN}" --arg nginxv "$NGINX_VERSION" --arg pinning "$PINNING" \
  --arg sets "$SETS" --arg conc "$CONCURRENCY" --argjson rounds "$ROUNDS" --argjson wrk "$WRK_SECONDS" \
  --argjson reps "$DOWNLOAD_REPS" --argjson chunk $((CHUNK_MIB * 1048576)) --argjson lc "$LOAD_CLIENTS" \
  --argjson ls "$LOAD_SECONDS" --argjson elapsed $((SECONDS)) \
  '{loadBefore: $before, loadAfter: $after, blobMiB: ($blobmib | tonumber), smallAuth: $small,
    proxyLogLevel: $loglevel, proxyIncluded: ($proxyOk == 1), tokenLength: $tokenLen, nginxVersion: $nginxv, pinning: $pinning,
    sets: ($sets | split(" ") | map(select(. != ""))), concurrencies: ($conc | split(" ") | map(select(. != "") | tonumber)),
    rounds: $rounds, wrkSeconds: $wrk, downloadReps: $reps, chunkSize: $chunk, loadClients: $lc, loadSeconds: $ls,
    elapsedSeconds: $elapsed}' > "$WORK/part-run.json"
RESULTS="$ROOT/bench/results"
[ "$SMOKE" = 1 ] && RESULTS="$WORK/results"
timeout --kill-after=5 $REPORT_RESERVE "${TS_NODE[@]}" bench/report.ts --work "$WORK" --results "$RESULTS"
log "done in $((SECONDS / 60)) min $((SECONDS % 60)) s"
cat "$RESULTS/latest.md"
