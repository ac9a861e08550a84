-- Submit: the job's record and arq's job key and queue entry, and its project's index entry (the same
-- id and score, store/lua/claim.lua), in one step.
-- KEYS: 1 record, 2 arq job, 3 arq result, 4 queue, 5 recent-jobs index, 6 stats counts, 7 the project's
--       index, 8 the queue's projects with waiting jobs, 9 per-project stats counts, 10 the queue's wake flag
-- ARGV: 1 fingerprint ('' for a fresh random id: nothing can hold it), 2 record TTL (s),
--       3 arq job payload, 4 arq job TTL (ms), 5 queue score, 6 job id, 7 submit time (us),
--       8 stats field, 9 '1' when this submit trims the index, 10 index cap, 11 the record's fields:
--       a msgpack array of names and values (one argument: cheaper to send than one per field),
--       12 project, 13 the queue's wake channel ('' for a deferred job: nothing to claim yet), 14 the
--       wake flag's TTL (ms)
-- Returns nil when made; for an id already taken, the fingerprint of the request that took it.
if ARGV[1] ~= '' then
  local existing = redis.call('HGET', KEYS[1], 'fingerprint')
  if existing then return existing end
  if redis.call('EXISTS', KEYS[2], KEYS[3]) > 0 then return '' end
end
redis.call('HSET', KEYS[1], unpack(cmsgpack.unpack(ARGV[11])))
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('HINCRBY', KEYS[6], ARGV[8], 1)
redis.call('HINCRBY', KEYS[9], ARGV[12] .. ':enqueued', 1)
redis.call('ZADD', KEYS[5], ARGV[7], ARGV[6])
if ARGV[9] == '1' then redis.call('ZREMRANGEBYRANK', KEYS[5], 0, -tonumber(ARGV[10]) - 1) end
redis.call('PSETEX', KEYS[2], ARGV[4], ARGV[3])
redis.call('ZADD', KEYS[4], ARGV[5], ARGV[6])
redis.call('ZADD', KEYS[7], ARGV[5], ARGV[6])
redis.call('SADD', KEYS[8], ARGV[12])
if ARGV[13] ~= '' and redis.call('SET', KEYS[10], '1', 'NX', 'PX', ARGV[14]) then redis.call('PUBLISH', ARGV[13], '') end
return false
