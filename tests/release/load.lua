-- Bounded steady load for the release tests: alternate the app's cheapest probe (/healthz,
-- which names the release that answered) with a database read (/api/tasks), count every
-- response that is not 2xx, and report per-release answers and wrk's own socket errors as
-- one JSON line at the end. `-- close` sends "Connection: close": a new connection per request.
-- A second argument is the Host header (the domain, when wrk connects to an address over HTTPS;
-- "-" for none); any further arguments replace the two paths (another app's, from its contract).
local threads = {}

function setup(thread)
   table.insert(threads, thread)
end

function init(args)
   headers = {}
   if args[1] == "close" then
      headers["Connection"] = "close"
   end
   if args[2] and args[2] ~= "-" then
      headers["Host"] = args[2]
   end
   paths = { "/healthz", "/api/tasks" }
   if args[3] then
      paths = {}
      for i = 3, #args do
         table.insert(paths, args[i])
      end
   end
   n = 0
   non2xx = 0
   statuses = {}
   releases = {}
end

function request()
   n = n + 1
   return wrk.format("GET", paths[(n % #paths) + 1], headers)
end

function response(status, headers, body)
   if status < 200 or status > 299 then
      non2xx = non2xx + 1
      statuses[status] = (statuses[status] or 0) + 1
   end
   local release = string.match(body, '"release":%s*"([^"]+)"')
   if release then
      releases[release] = (releases[release] or 0) + 1
   end
end

local function merge(into, from)
   for k, v in pairs(from) do
      into[tostring(k)] = (into[tostring(k)] or 0) + v
   end
end

local function json_object(t)
   local parts = {}
   for k, v in pairs(t) do
      table.insert(parts, string.format('"%s": %d', k, v))
   end
   return "{" .. table.concat(parts, ", ") .. "}"
end

function done(summary, latency, requests)
   local bad, by_status, by_release = 0, {}, {}
   for _, thread in ipairs(threads) do
      bad = bad + thread:get("non2xx")
      merge(by_status, thread:get("statuses"))
      merge(by_release, thread:get("releases"))
   end
   local e = summary.errors
   io.write(string.format(
      'WRK_RESULT {"requests": %d, "non2xx": %d, "connect": %d, "read": %d, "write": %d, ' ..
      '"timeout": %d, "status": %s, "releases": %s, "p99_ms": %.1f}\n',
      summary.requests, bad, e.connect, e.read, e.write, e.timeout,
      json_object(by_status), json_object(by_release), latency:percentile(99) / 1000))
end
