-- What bench/ reads from every wrk run: one JSON line (WRK_SUMMARY) with wrk's own totals,
-- socket errors and latency percentiles in microseconds, instead of its human summary.
-- Loaded by the other scripts here with dofile; on its own it adds no per-request Lua work.

function wrk_summary(summary, latency)
   local e = summary.errors
   return string.format(
      'WRK_SUMMARY {"requests": %d, "duration_us": %d, "bytes": %d, "connect": %d, ' ..
      '"read": %d, "write": %d, "timeout": %d, "status_over_399": %d, "latency_us": ' ..
      '{"mean": %.1f, "p50": %d, "p90": %d, "p99": %d, "max": %d}}\n',
      summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write,
      e.timeout, e.status, latency.mean, latency:percentile(50), latency:percentile(90),
      latency:percentile(99), latency.max)
end

function done(summary, latency, requests)
   io.write(wrk_summary(summary, latency))
end
