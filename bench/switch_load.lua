-- Steady load while a release switches (dropstack's deploy and rollback, Gunicorn's reload, the
-- naive restart): the release tests' load.lua (alternate /healthz and /api/tasks, count every
-- non-2xx and which release answered; `-- close` sends Connection: close) plus what a benchmark
-- needs on top:
--   `-- KIND PAUSE_MS CAP [LOG]`: each connection waits PAUSE_MS between requests (a bounded,
--   steady rate instead of wrk's flat-out loop) and each thread stops after CAP requests;
--   WRK_FAILING: the wall-clock seconds of the first and last non-2xx response;
--   WRK_SUMMARY (summary.lua): totals, socket errors, latency percentiles;
--   LOG: a file with one line per request, `<epoch ms> <status> <latency us>`, written at the
--   end (status 0: no response, the connection failed). wrk tells Lua neither which connection
--   a response belongs to nor its latency, so the log needs ONE connection per thread (-tN -cN):
--   then request() and response() alternate and the time between them is the latency wrk
--   measures itself (it starts its clock right after request() and stops it after response()).
--   $DROPSTACK_WRK_CONNECT (bench/wrk.py sets it): the literal address to connect to instead
--   of resolving the URL's host, so `https://DOMAIN/` gives SNI and Host = the domain without
--   DNS. wrk calls wrk.resolve once, after loading this script and before any thread starts.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "summary.lua")
local summary_done = done
dofile(here .. "../tests/release/load.lua")
local release_setup, release_init, release_request, release_response, release_done =
   setup, init, request, response, done

-- Wall-clock microseconds: the deploy's own start and end are taken from the same clock by
-- bench/ on this machine. Lua's os.time() has whole seconds only.
local ffi = require("ffi")
ffi.cdef [[
   typedef struct { long tv_sec; long tv_nsec; } dropstack_timespec;
   int clock_gettime(int clock, dropstack_timespec *ts);
]]
local CLOCK_REALTIME = 0
local ts = ffi.new("dropstack_timespec")
local function now_us()
   ffi.C.clock_gettime(CLOCK_REALTIME, ts)
   return tonumber(ts.tv_sec) * 1000000 + math.floor(tonumber(ts.tv_nsec) / 1000)
end

local connect_to = os.getenv("DROPSTACK_WRK_CONNECT") or ""
if connect_to ~= "" then
   function wrk.resolve(host, service)
      local addrs = wrk.lookup(connect_to, service)
      for i = #addrs, 1, -1 do
         if not wrk.connect(addrs[i]) then
            table.remove(addrs, i)
         end
      end
      wrk.addrs = addrs
   end
end

local threads = {}

function setup(thread)
   release_setup(thread)
   table.insert(threads, thread)
   thread:set("thread_number", #threads)
end

function init(args)
   -- load.lua reads a Host header from its second argument; here that is PAUSE_MS, so it gets
   -- the kind only, and the Host header is wrk's own: the URL's host.
   release_init({ [0] = args[0], args[1] })
   pause_ms = tonumber(args[2]) or 0
   cap = tonumber(args[3]) or 0
   log_path = args[4] or ""
   seen = 0
   first_bad = 0
   last_bad = 0
   log = {}
   sent_at = nil -- when the request in flight was sent; nil between a response and the next
   -- wrk calls the first thread's request() once before it connects anywhere, to check what
   -- the script returns; that call sends nothing.
   unsent = thread_number == 1
end

function delay()
   return pause_ms
end

local function record(status, at)
   if log_path ~= "" then
      log[#log + 1] = string.format("%d %d %d", math.floor(at / 1000), status, at - sent_at)
   end
   seen = seen + 1
   if cap > 0 and seen >= cap then
      wrk.thread:stop()
   end
end

function request()
   if unsent then
      unsent = false
      return release_request()
   end
   local at = now_us()
   -- A new request while one is in flight: wrk gave up on the connection (a read or write
   -- error) and reconnected; that request never got a response.
   if sent_at then
      record(0, at)
   end
   sent_at = at
   return release_request()
end

function response(status, headers, body)
   local at = now_us()
   release_response(status, headers, body)
   if status < 200 or status > 299 then
      last_bad = os.time()
      if first_bad == 0 then
         first_bad = last_bad
      end
   end
   if sent_at then
      record(status, at)
   end
   sent_at = nil
end

local function write_log()
   local path = threads[1] and threads[1]:get("log_path") or ""
   if path == "" then
      return
   end
   local file = assert(io.open(path, "w"))
   for _, thread in ipairs(threads) do
      local lines = thread:get("log")
      if #lines > 0 then
         file:write(table.concat(lines, "\n"), "\n")
      end
   end
   file:close()
end

function done(summary, latency, requests)
   release_done(summary, latency, requests)
   summary_done(summary, latency, requests)
   local first, last = 0, 0
   for _, thread in ipairs(threads) do
      local f, l = thread:get("first_bad"), thread:get("last_bad")
      if f > 0 and (first == 0 or f < first) then
         first = f
      end
      if l > last then
         last = l
      end
   end
   io.write(string.format('WRK_FAILING {"first": %d, "last": %d}\n', first, last))
   write_log()
end
