-- Appended to every REST scenario's wrk script by bench/lib.sh's wrk_run: prints the run's whole
-- latency histogram (one line, "latency-histogram µs:count,..."), so bench/wrk_json.py can keep it
-- and bench/report.py can take percentiles over every request of every round. One round's p99 on
-- this shared two-core VM moves by half between rounds; the p99 of all rounds' requests together
-- does not depend on how one round's scheduling fell.
done = function(summary, latency, requests)
  local buckets = {}
  -- `latency(i)` is wrk's i-th recorded value (µs) and how many requests took it; `#latency`
  -- counts the distinct values.
  for i = 1, #latency do
    local value, count = latency(i)
    buckets[#buckets + 1] = string.format("%d:%d", value, count)
  end
  io.write("latency-histogram " .. table.concat(buckets, ",") .. "\n")
end
