-- wrk script: a mixed load, 80% GET /v1/leads?limit=50 and 20% POST /v1/leads
-- (each POST with its own Idempotency-Key and email).
local counter = 0
local thread_id = 0
local threads = {}

function setup(thread)
  thread:set("id", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  thread_id = id
  wrk.headers["Authorization"] = "Bearer " .. os.getenv("LEADLINE_BENCH_KEY")
end

function request()
  counter = counter + 1
  if counter % 5 ~= 0 then
    return wrk.format("GET", "/v1/leads?limit=50")
  end
  local n = thread_id .. "-m" .. counter
  local body = '{"name":"Mixed Client ' .. n .. '","email":"mixed' .. n .. '@example.com",' ..
    '"phone":"+30 694 123 4567","charter_from":"2030-07-10","charter_to":"2030-07-17",' ..
    '"guests":{"adults":6,"children":2},"destination":"Cyclades","yacht_type":"catamaran",' ..
    '"message":"Anniversary trip","consent":{"privacy_policy":true}}'
  -- Headers given here replace wrk.headers, so the key goes in again.
  return wrk.format("POST", "/v1/leads", {
    ["Authorization"] = wrk.headers["Authorization"],
    ["Content-Type"] = "application/json",
    ["Idempotency-Key"] = "mixed-" .. n,
  }, body)
end
