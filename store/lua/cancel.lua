-- Cancel a job that no worker has claimed: a claim sets arq's in-progress key in one script too,
-- so checking that key and taking the job off the queue here cannot interleave with one.
-- KEYS: 1 queue, 2 arq in-progress, 3 arq job, 4 arq retry, 5 record, 6 the queue's projects with waiting jobs
-- ARGV: 1 job id, 2 now (ms), 3 record TTL (s), 4 error (JSON), 5 the queue's project index key prefix
-- Returns 'cancelled', 'running' (abort it instead), 'gone', or the status of a job already over.
local status = redis.call('HGET', KEYS[5], 'status')
if status == 'complete' or status == 'failed' or status == 'aborted' then return status end
if redis.call('EXISTS', KEYS[2]) == 1 then return 'running' end
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 'gone' end
redis.call('DEL', KEYS[3], KEYS[4])
local project = redis.call('HGET', KEYS[5], 'project')
if project then
  local index = ARGV[5] .. project
  redis.call('ZREM', index, ARGV[1])
  if redis.call('ZCARD', index) == 0 then redis.call('SREM', KEYS[6], project) end
end
if status then
  redis.call('HSET', KEYS[5], 'status', 'aborted', 'finished_at', ARGV[2], 'cancelled_at', ARGV[2], 'error', ARGV[4])
  redis.call('HDEL', KEYS[5], 'due_at', 'retry', 'progress', 'worker')
  redis.call('EXPIRE', KEYS[5], ARGV[3])
end
return 'cancelled'
