-- wrk script: POST /v1/leads with a secret key, each request with its own
-- Idempotency-Key and its own email address. LEADLINE_BENCH_PREFIX keeps several
-- wrk processes run at once from sending the same keys.
local counter = 0
local prefix = os.getenv("LEADLINE_BENCH_PREFIX") or ""
local thread_id = 0
local threads = {}

function setup(thread)
  thread:set("id", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  thread_id = id
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Authorization"] = "Bearer " .. os.getenv("LEADLINE_BENCH_KEY")
end

function request()
  counter = counter + 1
  local n = prefix .. thread_id .. "-" .. counter
  wrk.headers["Idempotency-Key"] = "bench-" .. n
  local body = '{"name":"Bench Client ' .. n .. '","email":"client' .. n .. '@example.com",' ..
    '"phone":"+30 694 123 4567","charter_from":"2030-07-10","charter_to":"2030-07-17",' ..
    '"guests":{"adults":6,"children":2},"destination":"Cyclades","yacht_type":"catamaran",' ..
    '"message":"Anniversary trip","consent":{"privacy_policy":true}}'
  return wrk.format(nil, "/v1/leads", nil, body)
end
