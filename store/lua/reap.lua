-- Hand back the jobs of a worker whose heartbeat lapsed: arq keeps a running job in its queue, so
-- deleting its in-progress key lets the next poll of any worker start it again. The heartbeat is
-- checked again here, so a worker that came back meanwhile keeps its jobs. A job handed back is waiting
-- again: it goes back into its project's index with arq's score (store/lua/claim.lua).
-- KEYS: 1 live workers (scored by heartbeat), 2 the dead worker's held jobs, 3 its details
-- ARGV: 1 worker id, 2 dead before (ms), 3 arq's in-progress prefix, 4 record prefix, 5 the project
--       index key prefix (store/keys.py FAIR: <prefix><queue>:project:<project>)
-- Returns the ids handed back, or false when the worker is alive.
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if score and tonumber(score) >= tonumber(ARGV[2]) then return false end
local jobs = redis.call('SMEMBERS', KEYS[2])
for _, id in ipairs(jobs) do
  redis.call('DEL', ARGV[3] .. id)
  local record = ARGV[4] .. id
  local queue, project = unpack(redis.call('HMGET', record, 'queue', 'project'))
  local score = queue and project and redis.call('ZSCORE', queue, id)
  if score then
    redis.call('ZADD', ARGV[5] .. queue .. ':project:' .. project, score, id)
    redis.call('SADD', ARGV[5] .. queue .. ':projects', project)
  end
  if redis.call('HGET', record, 'worker') == ARGV[1] then
    redis.call('HSET', record, 'status', 'queued')
    redis.call('HDEL', record, 'worker', 'progress')
  end
end
redis.call('DEL', KEYS[2], KEYS[3])
redis.call('ZREM', KEYS[1], ARGV[1])
return jobs
