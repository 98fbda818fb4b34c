-- Steady load while a release switches (dropstack's deploy and rollback, and the naive restart):
-- the release tests' load.lua (alternate /healthz and /api/tasks, count every non-2xx and which
-- release answered; `-- close` sends Connection: close) plus what a benchmark needs on top:
--   `-- KIND PAUSE_MS CAP`: each connection waits PAUSE_MS between requests (a bounded, steady
--   rate instead of wrk's flat-out loop) and each thread stops after CAP responses;
--   WRK_FAILING: the wall-clock seconds of the first and last non-2xx response;
--   WRK_SUMMARY (summary.lua): totals, socket errors, latency percentiles.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "summary.lua")
local summary_done = done
dofile(here .. "../tests/release/load.lua")
local release_setup, release_init, release_response, release_done = setup, init, response, done

local threads = {}

function setup(thread)
   release_setup(thread)
   table.insert(threads, thread)
end

function init(args)
   release_init(args)
   pause_ms = tonumber(args[2]) or 0
   cap = tonumber(args[3]) or 0
   seen = 0
   first_bad = 0
   last_bad = 0
end

function delay()
   return pause_ms
end

function response(status, headers, body)
   release_response(status, headers, body)
   seen = seen + 1
   if status < 200 or status > 299 then
      last_bad = os.time()
      if first_bad == 0 then
         first_bad = last_bad
      end
   end
   if cap > 0 and seen >= cap then
      wrk.thread:stop()
   end
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
end
