-- bench/api/wrk.lua: the one wrk script behind every case of bench/api/run.sh, so that
-- the load generator does the same work per request in each case (bound included).
--
--   wrk -t T -c C -d D -s wrk.lua URL -- METHOD PATH [KEY|-] [BODIES_FILE]
--
-- KEY: sent as X-API-Key ("-" or empty: none). BODIES_FILE: one JSON body per line,
-- sent in turn with Content-Type: application/json (each thread starts at its own line).
-- done() prints one JSON object: requests, duration, errors by kind, latency percentiles
-- (microseconds) from wrk's own histogram.

local reqs = {}
local n, idx = 0, 0

function init(args)
  local method, path, key, bodies = args[1] or "GET", args[2] or "/", args[3], args[4]
  local headers = {}
  if key and key ~= "" and key ~= "-" then headers["X-API-Key"] = key end
  if bodies and bodies ~= "" then
    headers["Content-Type"] = "application/json"
    for line in io.lines(bodies) do
      reqs[#reqs + 1] = wrk.format(method, path, headers, line)
    end
  else
    reqs[1] = wrk.format(method, path, headers)
  end
  n = #reqs
  if n == 0 then error("no request built (empty bodies file?)") end
  math.randomseed(os.time() + tonumber(tostring({}):match("0x(%x+)"), 16) % 100000)
  idx = math.random(n) - 1
end

function request()
  idx = idx % n + 1
  return reqs[idx]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"bytes":%d,"errors_connect":%d,"errors_read":%d,' ..
    '"errors_write":%d,"errors_status":%d,"errors_timeout":%d,"lat_mean_us":%.1f,' ..
    '"lat_p50_us":%d,"lat_p90_us":%d,"lat_p99_us":%d,"lat_max_us":%d}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write,
    e.status, e.timeout, latency.mean, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max))
end
