-- Closed-loop load for the throughput benchmark: wrk's own request loop (no Lua per request
-- but a counter), stopped by `-d` or, whichever comes first, after `-- N` responses per thread.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "summary.lua")

function init(args)
   cap = tonumber(args[1]) or 0
   seen = 0
end

function response(status, headers, body)
   seen = seen + 1
   if cap > 0 and seen >= cap then
      wrk.thread:stop()
   end
end
