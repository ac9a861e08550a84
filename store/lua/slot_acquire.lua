-- A job takes one of its service's slots, if one is free (the claim script does the same for the
-- jobs it claims; this is for jobs that arq's own claims started). Holders whose try is over (no
-- arq in-progress key) are dropped first: a slot frees itself when its job ends, however it ends.
-- KEYS: 1 the service's slot set, 2 the capacity hash, 3 the job's record
-- ARGV: 1 service, 2 job id, 3 now (ms), 4 arq's in-progress key prefix
-- Returns 1 when the job holds a slot (or the service has no known capacity), 0 when all are taken.
local cap = tonumber(redis.call('HGET', KEYS[2], ARGV[1]))
if not cap or cap <= 0 then return 1 end
if redis.call('ZSCORE', KEYS[1], ARGV[2]) then return 1 end
for _, holder in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if redis.call('EXISTS', ARGV[4] .. holder) == 0 then redis.call('ZREM', KEYS[1], holder) end
end
if redis.call('ZCARD', KEYS[1]) >= cap then return 0 end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[2])
if redis.call('EXISTS', KEYS[3]) == 1 then redis.call('HSET', KEYS[3], 'slot', 'held') end
return 1
