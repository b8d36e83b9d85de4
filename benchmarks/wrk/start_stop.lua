-- Start/stop cycles on the control plane, one call (guid) per connection.
--
--   wrk -t4 -c4 -d10s -s benchmarks/wrk/start_stop.lua http://127.0.0.1:8080 -- 1000 siprec
--
-- wrk hands request() no connection handle, so the script needs exactly one connection per
-- thread (-t equal to -c): the thread's state is then the connection's state, and every
-- connection alternates start-streaming and stop-streaming on a guid no other connection
-- touches. Thread n uses guid "<prefix>-<n as 4 digits>" (a SIPREC UCID form); the caller
-- opens those calls before the run.
--
-- The state flips on every response, not when a request is built: wrk calls request() once
-- before the run to count pipelined requests, and a request lost to a reconnect must be sent
-- again. A 409 (start while streaming, stop while stopped) also flips it, so the cycle
-- realigns by itself.
--
-- done() prints one line "WRK_JSON {...}" with the totals, latency percentiles (µs) and the
-- count of every (action, status) pair seen, e.g. {"start 200": 9, "stop 200": 9}, so the
-- caller needs no parsing of wrk's text report.

local START = "/mg-autotranscribe/v1/start-streaming"
local STOP = "/mg-autotranscribe/v1/stop-streaming"
local HEADERS = {
  ["Content-Type"] = "application/json",
  ["asapp-api-id"] = "mgsim-local",
  ["asapp-api-secret"] = "mgsim-local-secret",
  -- Prism answers the status this header names; the simulator ignores it.
  ["Prefer"] = "code=200",
}

local threads = {}
local next_id = 0

function setup(thread)
  next_id = next_id + 1
  thread:set("id", next_id)
  table.insert(threads, thread)
end

local requests = {}
local streaming = false
codes = {}

function init(args)
  local prefix = args[1] or "1000"
  local namespace = args[2] or "siprec"
  local guid = string.format("%s-%04d", prefix, id)
  local stop_body = string.format('{"namespace":"%s","guid":"%s"}', namespace, guid)
  local start_body = string.format(
    '{"namespace":"%s","guid":"%s","customerId":"bench-customer","agentId":"bench-agent"}',
    namespace, guid)
  requests[false] = wrk.format("POST", START, HEADERS, start_body)
  requests[true] = wrk.format("POST", STOP, HEADERS, stop_body)
end

function request()
  return requests[streaming]
end

function response(status, headers, body)
  local key = (streaming and "stop " or "start ") .. tostring(status)
  streaming = not streaming
  codes[key] = (codes[key] or 0) + 1
end

local function json_codes(tables)
  local merged = {}
  for _, t in ipairs(tables) do
    for k, v in pairs(t) do
      merged[k] = (merged[k] or 0) + v
    end
  end
  local parts = {}
  for k, v in pairs(merged) do
    table.insert(parts, string.format('"%s":%d', k, v))
  end
  table.sort(parts)
  return "{" .. table.concat(parts, ",") .. "}"
end

function done(summary, latency, requests)
  local per_thread = {}
  for _, t in ipairs(threads) do
    table.insert(per_thread, t:get("codes") or {})
  end
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"threads":%d,"requests":%d,"duration_us":%d,"bytes":%d,'
      .. '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},'
      .. '"latency_us":{"min":%d,"mean":%.1f,"max":%d,"stdev":%.1f,'
      .. '"p50":%d,"p90":%d,"p99":%d,"p999":%d},"status_codes":%s}\n',
    #threads, summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.mean, latency.max, latency.stdev,
    latency:percentile(50.0), latency:percentile(90.0), latency:percentile(99.0),
    latency:percentile(99.9), json_codes(per_thread)))
end
