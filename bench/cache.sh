#!/usr/bin/env bash
# Layer-cache benchmark (issue 13, item 9): a multi-layer image pulled through ecr-auth-proxy with
# --cache-dir, the proxy's upstream link limited by a token-bucket relay (bench/rate-relay.mjs).
#   client(s) ─► proxy (--cache-dir) ─► rate-relay (~50 MB/s, counts bytes) ─► docker-registry
#   client    ─────────────────────────────────────────────────────────────► docker-registry (direct)
# Rows: direct from the registry (no relay), direct through the relay, cold pull (fresh cache),
# warm pull, 8 concurrent cold clients (fresh cache, new proxy), 8 concurrent warm clients.
# Each pull GETs the manifest by tag, then config + layers (3 at a time), each checked by digest
# (bench/cache-pull.mjs, which also samples the proxy's RSS every 50 ms).
# Usage: npm run bench:cache   Knobs (env): BENCH_CACHE_LAYERS=4 BENCH_CACHE_LAYER_MIB=128
#   BENCH_CACHE_RATE=50000000 (bytes/s) BENCH_CACHE_CLIENTS=8 BENCH_TIME_LIMIT=600 (s)
#   BENCH_CACHE_WRITE=1 (write bench/results/cache-<ts>.{md,json}; 0 = print only) BENCH_KEEP=1
# Needs docker-registry, curl, jq (bench/run.sh installs them: BENCH_INSTALL_ONLY=1 npm run bench).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
LAYERS=${BENCH_CACHE_LAYERS:-4}
LAYER_MIB=${BENCH_CACHE_LAYER_MIB:-128}
RATE=${BENCH_CACHE_RATE:-50000000}
CLIENTS=${BENCH_CACHE_CLIENTS:-8}
TIME_LIMIT=${BENCH_TIME_LIMIT:-600}
WRITE=${BENCH_CACHE_WRITE:-1}
START_TS=$(date -u +%Y-%m-%dT%H%M%SZ)
log () { printf '[bench:cache %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die () { log "ERROR: $*"; exit 1; }
for c in docker-registry curl jq node; do command -v $c >/dev/null || die "$c missing (BENCH_INSTALL_ONLY=1 npm run bench installs the peers)"; done
[ -f dist/src/cli.js ] || die "no dist/src/cli.js (npm run build)"

WORK=$(mktemp -d /tmp/ecr-bench-cache.XXXXXX)
PIDS=()
cleanup () {
  local rc=$? p
  trap - EXIT INT TERM
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  sleep 0.5
  for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  if [ "${BENCH_KEEP:-0}" = 1 ]; then log "work dir kept: $WORK"; else rm -rf "$WORK"; fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
# the whole run is bounded: a watchdog ends it past the limit
( sleep "$TIME_LIMIT"; log "ERROR: time limit ${TIME_LIMIT}s reached"; kill -TERM $$ ) 2>/dev/null &
PIDS+=($!)

wait_http () { # wait_http URL EXPECTED SECONDS
  local i code=''
  for i in $(seq 1 $(($3 * 10))); do
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$1" || true)
    [ "$code" = "$2" ] && return 0
    sleep 0.1
  done
  die "$1 did not answer $2 within $3 s (last: $code)"
}
read -r REG_PORT RELAY_PORT CTL_PORT API_PORT PX1 PX2 <<< "$(node -e '
  const net = require("node:net"); const ss = []
  const next = () => { if (ss.length === 6) { console.log(ss.map(s => s.address().port).join(" ")); ss.forEach(s => s.close()); return }
    const s = net.createServer(); s.listen(0, "127.0.0.1", () => { ss.push(s); next() }) }
  next()')"
DIRECT="http://127.0.0.1:$REG_PORT"
RELAY="http://127.0.0.1:$RELAY_PORT"

# registry (no auth: it ignores the proxy's Authorization header)
mkdir -p "$WORK/registry"
cat > "$WORK/registry.yml" <<YML
version: 0.1
log: { level: warn, accesslog: { disabled: true } }
storage: { filesystem: { rootdirectory: $WORK/registry }, cache: { blobdescriptor: inmemory } }
http: { addr: 127.0.0.1:$REG_PORT, secret: ecr-auth-proxy-bench }
health: { storagedriver: { enabled: false } }
YML
docker-registry serve "$WORK/registry.yml" > "$WORK/registry.log" 2>&1 &
PIDS+=($!)
wait_http "$DIRECT/v2/" 200 20
node bench/rate-relay.mjs --port "$RELAY_PORT" --target "$REG_PORT" --control-port "$CTL_PORT" --rate "$RATE" > "$WORK/relay.log" 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$CTL_PORT/stats" 200 10
TS_NODE_TRANSPILE_ONLY=1 node --import=@tapjs/typescript/import bench/ecr-standin.ts --port "$API_PORT" \
  --out "$WORK/token.json" --proxy-endpoint "$RELAY" > "$WORK/ecr-api.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 300); do [ -s "$WORK/token.json" ] && break; sleep 0.1; done
[ -s "$WORK/token.json" ] || { cat "$WORK/ecr-api.log" >&2; die "the ECR API stand-in did not start"; }
ECR_API_URL=$(jq -r .url "$WORK/token.json")

# seed: LAYERS random layers + config + manifest
REPO=bench/layers
push_blob () { # push_blob FILE DIGEST
  local loc sep code
  loc=$(curl -sS -X POST -D - -o /dev/null --max-time 10 "$DIRECT/v2/$REPO/blobs/uploads/" | tr -d '\r' | awk 'tolower($1)=="location:" {print $2}')
  [ -n "$loc" ] || die "no upload location"
  case "$loc" in http*) ;; *) loc="$DIRECT$loc" ;; esac
  case "$loc" in *\?*) sep='&' ;; *) sep='?' ;; esac
  code=$(curl -sS -X PUT -H 'Expect:' -H 'Content-Type: application/octet-stream' -T "$1" -o /dev/null -w '%{http_code}' --max-time 120 "$loc${sep}digest=$2")
  [ "$code" = 201 ] || die "blob PUT answered $code"
}
log "seeding $LAYERS × $LAYER_MIB MiB random layers"
LAYER_JSON='[]' DIFF_IDS='[]'
for i in $(seq 1 "$LAYERS"); do
  f="$WORK/layer$i.bin"
  head -c $((LAYER_MIB * 1048576)) /dev/urandom > "$f"
  d="sha256:$(sha256sum "$f" | cut -d' ' -f1)"
  push_blob "$f" "$d"
  LAYER_JSON=$(jq -c --arg d "$d" --argjson s "$(stat -c %s "$f")" '. + [{mediaType: "application/vnd.oci.image.layer.v1.tar", digest: $d, size: $s}]' <<< "$LAYER_JSON")
  DIFF_IDS=$(jq -c --arg d "$d" '. + [$d]' <<< "$DIFF_IDS")
  rm -f "$f"
done
jq -cn --argjson ids "$DIFF_IDS" '{architecture: "amd64", os: "linux", rootfs: {type: "layers", diff_ids: $ids}}' | tr -d '\n' > "$WORK/config.json"
CONFIG_DIGEST="sha256:$(sha256sum "$WORK/config.json" | cut -d' ' -f1)"
push_blob "$WORK/config.json" "$CONFIG_DIGEST"
jq -cn --arg cd "$CONFIG_DIGEST" --argjson cs "$(stat -c %s "$WORK/config.json")" --argjson layers "$LAYER_JSON" \
  '{schemaVersion: 2, mediaType: "application/vnd.oci.image.manifest.v1+json", config: {mediaType: "application/vnd.oci.image.config.v1+json", digest: $cd, size: $cs}, layers: $layers}' \
  | tr -d '\n' > "$WORK/manifest.json"
code=$(curl -sS -X PUT -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' --data-binary "@$WORK/manifest.json" \
  -o /dev/null -w '%{http_code}' --max-time 10 "$DIRECT/v2/$REPO/manifests/latest")
[ "$code" = 201 ] || die "manifest PUT answered $code"
IMAGE_BYTES=$(jq '[.config.size] + [.layers[].size] | add' "$WORK/manifest.json")
BLOB_COUNT=$((LAYERS + 1))

PROXY_PID=''
start_proxy () { # start_proxy PORT CACHE_DIR
  mkdir -p "$2"
  env -u NODE_OPTIONS AWS_ENDPOINT_URL_ECR="$ECR_API_URL" AWS_REGION=us-east-2 AWS_ACCESS_KEY_ID=AKIDEXAMPLE \
    AWS_SECRET_ACCESS_KEY=secret AWS_EC2_METADATA_DISABLED=true \
    node dist/src/cli.js --host 127.0.0.1 --port "$1" --region us-east-2 --upstream "$RELAY" \
    --cache-dir "$2" --cache-max-size 4GiB --log-level warn >> "$WORK/proxy-$1.log" 2>&1 &
  PROXY_PID=$!
  PIDS+=("$PROXY_PID")
  wait_http "http://127.0.0.1:$1/readyz" 200 30
  sleep 2   # let start-up garbage settle before the idle RSS is read
  PROXY_IDLE_KIB=$(awk '/^VmRSS:/ {print $2}' "/proc/$PROXY_PID/status")
}
PROXY_IDLE_KIB=null
ROWS='[]'
# row NAME BASE CLIENTS [RSS_PID]: one measured pull, its relay bytes, appended to ROWS
row () {
  local name=$1 base=$2 n=$3 pid=${4:-} out stats
  curl -s -X POST "http://127.0.0.1:$CTL_PORT/reset" > /dev/null
  log "$name: $n client(s) from $base"
  out=$(timeout 240 node bench/cache-pull.mjs --base "$base" --repo "$REPO" --clients "$n" ${pid:+--rss-pid "$pid"}) \
    || { log "WARNING: $name failed: $out"; out=${out:-'{"ok":false}'}; }
  stats=$(curl -s "http://127.0.0.1:$CTL_PORT/stats")
  local idle=null
  [ -z "$pid" ] || idle=$PROXY_IDLE_KIB
  ROWS=$(jq -c --arg n "$name" --argjson r "$out" --argjson s "$stats" --argjson idle "$idle" \
    '. + [$r + {name: $n, relay: $s, proxyStartKiB: $idle}]' <<< "$ROWS")
  log "  $(jq -c '{seconds, mibPerSecond, rssIdleKiB, rssPeakKiB, ok}' <<< "$out") relay: $stats"
}

row direct-registry "$DIRECT" 1
row direct-relay "$RELAY" 1
start_proxy "$PX1" "$WORK/cache1"
row cold "http://127.0.0.1:$PX1" 1 "$PROXY_PID"
row warm "http://127.0.0.1:$PX1" 1 "$PROXY_PID"
kill -TERM "$PROXY_PID"; wait "$PROXY_PID" 2>/dev/null || true
start_proxy "$PX2" "$WORK/cache2"
row "cold-x$CLIENTS" "http://127.0.0.1:$PX2" "$CLIENTS" "$PROXY_PID"
row "warm-x$CLIENTS" "http://127.0.0.1:$PX2" "$CLIENTS" "$PROXY_PID"
CACHE_FILES=$(find "$WORK/cache2" -type f | wc -l)

RESULT=$(jq -n --argjson rows "$ROWS" --arg ts "$START_TS" --argjson rate "$RATE" --argjson layers "$LAYERS" \
  --argjson layerMiB "$LAYER_MIB" --argjson image "$IMAGE_BYTES" --argjson blobs "$BLOB_COUNT" --argjson clients "$CLIENTS" \
  --arg node "$(node --version)" --arg cpus "$(nproc)" --arg load "$(cut -d' ' -f1-3 /proc/loadavg)" '
  def r($n): ($rows[] | select(.name == $n));
  {timestamp: $ts, node: $node, cpus: $cpus, loadavg: $load, relayRate: $rate, layers: $layers, layerMiB: $layerMiB,
   imageBytes: $image, blobs: $blobs, clients: $clients, rows: $rows,
   goals: {
     warmVsCold: (r("warm").mibPerSecond / r("cold").mibPerSecond),
     coldUpstreamBytesOverImage: (r("cold").relay.down / $image),
     concurrentUpstreamBytesOverImage: (r("cold-x\($clients)").relay.down / $image),
     warmUpstreamBytes: r("warm").relay.down,
     hitVsDirect: (r("warm").mibPerSecond / r("direct-registry").mibPerSecond),
     rssGrowthMiB: ([$rows[] | select(.rssPeakKiB != null) | (.rssPeakKiB - .proxyStartKiB) / 1024] | max)
   }}')
TABLE=$(jq -r '
  def f($x; $d): if $x == null then "–" else ($x * pow(10; $d) | round / pow(10; $d) | tostring) end;
  "| pull | clients | s (all) | MiB/s (aggregate) | upstream MB via relay | upstream ÷ image | proxy RSS at start → before → peak (MiB) | ok |",
  "|---|---:|---:|---:|---:|---:|---:|:-:|",
  (.imageBytes as $img | .rows[] |
   "| \(.name) | \(.clients) | \(f(.seconds; 1)) | \(f(.mibPerSecond; 0)) | " +
   (if .name == "direct-registry" then "– (no relay)" else f(.relay.down / 1e6; 1) end) + " | " +
   (if .name == "direct-registry" then "–" else f(.relay.down / $img; 3) end) + " | " +
   (if .rssIdleKiB == null then "–" else "\(f(.proxyStartKiB / 1024; 0)) → \(f(.rssIdleKiB / 1024; 0)) → \(f(.rssPeakKiB / 1024; 0)) (+\(f((.rssPeakKiB - .proxyStartKiB) / 1024; 0)))" end) +
   " | \(if .ok then "yes" else "NO" end) |")' <<< "$RESULT")
GOALS=$(jq -r '.goals as $g | .clients as $c |
  def f($x; $d): ($x * pow(10; $d) | round / pow(10; $d) | tostring);
  "- warm ÷ cold speed: \(f($g.warmVsCold; 1))× (goal ≥ 5×): \(if $g.warmVsCold >= 5 then "met" else "MISSED" end)",
  "- upstream bytes, cold pull: \(f($g.coldUpstreamBytesOverImage; 3))× the image; \($c) concurrent cold clients: \(f($g.concurrentUpstreamBytesOverImage; 3))× (goal: each blob once, ≈ 1.0): \(if $g.concurrentUpstreamBytesOverImage < 1.05 then "met" else "MISSED" end)",
  "- warm pull upstream bytes: \($g.warmUpstreamBytes) (the manifest by tag, and nothing else)",
  "- cache-hit speed ÷ direct download from the registry: \(f($g.hitVsDirect; 2))×",
  "- proxy RSS growth (peak − RSS at start, idle), largest of all rows: \(f($g.rssGrowthMiB; 0)) MiB for \(.layerMiB) MiB layers (goal: flat in blob size)"' <<< "$RESULT")
printf '\n%s\n\n%s\n' "$TABLE" "$GOALS"
log "cache files after the concurrent run: $CACHE_FILES"
if [ "$WRITE" = 1 ]; then
  mkdir -p bench/results
  printf '%s\n' "$RESULT" > "bench/results/cache-$START_TS.json"
  {
    echo "# Layer cache benchmark, $START_TS"
    echo
    echo "$LAYERS × $LAYER_MIB MiB layers ($IMAGE_BYTES bytes with the config); the proxy's upstream through a token-bucket relay at $RATE B/s; node $(node --version), $(nproc) CPUs, load average $(jq -r .loadavg <<< "$RESULT") at the end (shared machine)."
    echo
    echo "$TABLE"
    echo
    echo "$GOALS"
  } > "bench/results/cache-$START_TS.md"
  log "written: bench/results/cache-$START_TS.{md,json}"
fi
