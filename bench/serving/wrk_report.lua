-- wrk script for bench/serving/run.py.
--
--   wrk -t1 -c16 -d10s --latency -s wrk_report.lua http://127.0.0.1:PORT/PATH -- BODIES_FILE CONTENT_TYPE
--
-- BODIES_FILE holds one request body per line; requests cycle through them (so no stack can
-- answer from a cache of one body). done() prints one line `WRK_JSON {...}` that run.py parses:
-- counts, duration and latency percentiles in microseconds. errors_status is wrk's count of
-- responses with status > 399; run.py checks one response of each body for 200 before the load.

local bodies = {}
local requests = {}
local index = 0

function init(args)
  local path = args[1]
  local content_type = args[2] or "application/json"
  local file = assert(io.open(path, "r"), "cannot open bodies file " .. tostring(path))
  for line in file:lines() do
    if #line > 0 then
      bodies[#bodies + 1] = line
    end
  end
  file:close()
  assert(#bodies > 0, "no request bodies in " .. path)
  for i, body in ipairs(bodies) do
    local headers = { ["Content-Type"] = content_type, ["Host"] = wrk.headers["Host"] }
    requests[i] = wrk.format("POST", wrk.path, headers, body)
  end
end

function request()
  index = index + 1
  if index > #requests then
    index = 1
  end
  return requests[index]
end

function done(summary, latency, requests_)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "bytes": %d, "errors_connect": %d, '
      .. '"errors_read": %d, "errors_write": %d, "errors_status": %d, "errors_timeout": %d, '
      .. '"latency_mean_us": %.1f, "latency_max_us": %.1f, "p50_us": %.1f, "p90_us": %.1f, '
      .. '"p99_us": %.1f}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency.mean, latency.max, latency:percentile(50), latency:percentile(90),
    latency:percentile(99)
  ))
end
