-- The one wrk script of bench/run.py. Settings come from the environment, because wrk must
-- know whether `request` is defined when it loads the script (before init(args) runs):
--
--   BENCH_MODE     get         the URL as given (with any -H headers), every time
--                  bodies      POST each line of BENCH_BODIES (one JSON body per line) exactly
--                              once; thread i of BENCH_THREADS takes lines i, i+T, i+2T, ...
--                              and stops when its lines run out
--                  magic_link  POST {"email": ...} with an address no other request used
--   BENCH_BODIES   (bodies) the file of request bodies
--   BENCH_THREADS  (bodies) the -t value
--   BENCH_TAG      (magic_link) makes this run's addresses differ from every other run's
--
-- done() prints one line that run.py parses:
--   WRKRESULT requests=N duration_us=N p50_us=N p99_us=N status=N connect=N read=N write=N
--             timeout=N exhausted=N sent=N
-- status is wrk's count of responses with a status >= 400; exhausted is the number of threads
-- that ran out of bodies before the end (their figure is then too low: wrk divides by the full
-- duration), sent the number of bodies taken.

local mode = os.getenv("BENCH_MODE") or "get"
local json_headers = { ["Content-Type"] = "application/json" }

-- Main state: give each thread an index and keep the threads to read their counters in done().
local threads = {}

function setup(thread)
   thread:set("index", #threads)
   table.insert(threads, thread)
end

-- Thread state: globals that done() reads through thread:get().
index = 0
sent = 0
exhausted = 0

if mode == "bodies" then
   local bodies = {}

   function init(args)
      local step = tonumber(os.getenv("BENCH_THREADS") or "1")
      local i = 0
      for line in io.lines(os.getenv("BENCH_BODIES")) do
         if i % step == index then
            bodies[#bodies + 1] = line
         end
         i = i + 1
      end
   end

   function request()
      local body = bodies[sent + 1]
      if body == nil then
         -- Out of bodies: stop this thread. wrk still writes what request() returns, so
         -- return something harmless rather than a spent body (its answer is never read).
         exhausted = 1
         wrk.thread:stop()
         return wrk.format("GET", "/liveness")
      end
      sent = sent + 1
      return wrk.format("POST", nil, json_headers, body)
   end
elseif mode == "magic_link" then
   local tag = os.getenv("BENCH_TAG") or "run"

   function request()
      sent = sent + 1
      local body = string.format('{"email":"%s-t%d-%d@bench.test"}', tag, index, sent)
      return wrk.format("POST", nil, json_headers, body)
   end
end

function done(summary, latency, requests)
   local taken, out = 0, 0
   for _, thread in ipairs(threads) do
      taken = taken + (thread:get("sent") or 0)
      out = out + (thread:get("exhausted") or 0)
   end
   local e = summary.errors
   io.write(string.format(
      "WRKRESULT requests=%d duration_us=%d p50_us=%d p99_us=%d status=%d connect=%d read=%d"
         .. " write=%d timeout=%d exhausted=%d sent=%d\n",
      summary.requests, summary.duration, latency:percentile(50.0), latency:percentile(99.0),
      e.status, e.connect, e.read, e.write, e.timeout, out, taken
   ))
end
