-- bench_load.py's clients for wrk (https://github.com/wg/wrk, Debian's `wrk`, LuaJIT):
--   wrk --connections N --threads T --duration S --timeout 30s --script load.lua URL -- REQUESTS
-- REQUESTS is a file: the bearer token on its first line, then one item id a line. Each thread
-- asks in turn for a page of 20 items, one item (the ids in turn) and /healthz, as the token's
-- holder. Every answer other than 200 is counted by status here (wrk's own "Non-2xx or 3xx" count
-- leaves out 3xx); wrk counts the socket errors (connect, read, write) and the time-outs. At the
-- end one line "bench_load-wrk {...}" (JSON) says what happened, latencies in microseconds.

local threads = {}

function setup(thread)
  thread:set("offset", #threads)
  table.insert(threads, thread)
end

function init(args)
  local file = assert(io.open(args[1], "r"))
  local token = file:read("*l")
  ids = {}
  for line in file:lines() do
    if line ~= "" then ids[#ids + 1] = line end
  end
  file:close()
  assert(token and token ~= "" and #ids > 0, "REQUESTS: the token, then at least one item id")
  headers = { ["Authorization"] = "Bearer " .. token }
  n = offset
  unexpected = {}
end

function request()
  local k = n % 3
  local path
  if k == 0 then
    path = "/items?limit=20"
  elseif k == 1 then
    path = "/items/" .. ids[math.floor(n / 3) % #ids + 1]
  else
    path = "/healthz"
  end
  n = n + 1
  return wrk.format("GET", path, headers)
end

function response(status, headers, body)
  if status ~= 200 then
    local key = tostring(status)
    unexpected[key] = (unexpected[key] or 0) + 1
  end
end

function done(summary, latency, requests)
  local statuses, parts = {}, {}
  for _, thread in ipairs(threads) do
    for status, count in pairs(thread:get("unexpected") or {}) do
      statuses[status] = (statuses[status] or 0) + count
    end
  end
  for status, count in pairs(statuses) do
    parts[#parts + 1] = string.format('"%s": %d', status, count)
  end
  local e = summary.errors
  io.write(string.format(
    'bench_load-wrk {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "max_us": %d, '
      .. '"connect": %d, "read": %d, "write": %d, "timeout": %d, "statuses": {%s}}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.max,
    e.connect, e.read, e.write, e.timeout, table.concat(parts, ", ")
  ))
end
