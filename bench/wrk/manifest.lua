-- wrk script: manifest HEAD or GET with the registry's Accept header.
-- Env: WRK_METHOD (HEAD | GET, default GET), WRK_AUTH (Authorization value, optional).
-- done() prints one line "WRKJSON {...}" that bench/measure.ts parses (latency in microseconds).
wrk.method = os.getenv("WRK_METHOD") or "GET"
wrk.headers["Accept"] = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, "
  .. "application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json"
local auth = os.getenv("WRK_AUTH")
if auth ~= nil and auth ~= "" then
  wrk.headers["Authorization"] = auth
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"min":%d,"mean":%.2f,"max":%d,"stdev":%.2f,"p50":%d,"p75":%d,"p90":%d,"p99":%d,"p999":%d}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.mean, latency.max, latency.stdev,
    latency:percentile(50), latency:percentile(75), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9)))
end
