-- wrk script: POST the body in the file named by env WRK_BODY_FILE to /invocations and
-- print latency percentiles (microseconds) as one JSON line at the end.
local f = assert(io.open(os.getenv("WRK_BODY_FILE"), "rb"))
local body = f:read("*a")
f:close()
wrk.method = "POST"
wrk.body = body
wrk.headers["Content-Type"] = os.getenv("WRK_CONTENT_TYPE") or "application/json"
wrk.path = os.getenv("WRK_PATH") or "/invocations"
-- marked, so monitoring leaves benchmark requests out of the drift window
wrk.headers["X-Traffic-Kind"] = os.getenv("WRK_TRAFFIC_KIND") or "benchmark"
-- a canary experiment's split key (bench_release.py)
if os.getenv("WRK_EXPERIMENT_KEY") then
  wrk.headers["X-Experiment-Key"] = os.getenv("WRK_EXPERIMENT_KEY")
end

local non2xx = 0
response = function(status, headers, body)
  if status >= 300 then non2xx = non2xx + 1 end
end

done = function(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, '
    .. '"max_us": %d, "mean_us": %.1f, "connect_errors": %d, "read_errors": %d, "write_errors": %d, '
    .. '"timeouts": %d, "status_errors": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, latency.mean, errors.connect, errors.read, errors.write,
    errors.timeout, errors.status))
end
