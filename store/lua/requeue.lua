-- Run a failed or aborted job again under its id: the first of many concurrent callers wins. It goes
-- into its project's index too ('default' for a record from before projects).
-- KEYS: 1 record, 2 queue, 3 arq job, 4 arq result, 5 arq retry, 6 arq in-progress, 7 arq abort set,
--       8 stats counts, 9 the queue's projects with waiting jobs, 10 per-project stats counts, 11 the
--       queue's wake flag
-- ARGV: 1 job id, 2 now (ms), 3 record TTL (s), 4 arq job payload, 5 arq job TTL (ms), 6 queue score,
--       7 stats field, 8 status (queued|deferred), 9 due (ms, '' when due now), 10 the queue's project
--       index key prefix, 11 the queue's wake channel ('' when deferred), 12 the wake flag's TTL (ms)
-- Returns 'requeued', 'busy' (arq still holds it), or the status that forbids it ('gone': no record).
local status = redis.call('HGET', KEYS[1], 'status')
if status ~= 'failed' and status ~= 'aborted' then return status or 'gone' end
if redis.call('EXISTS', KEYS[3], KEYS[6]) > 0 then return 'busy' end
redis.call('DEL', KEYS[4], KEYS[5])
redis.call('ZREM', KEYS[7], ARGV[1])
redis.call('HDEL', KEYS[1], 'cancelled_at', 'started_at', 'progress', 'retry', 'tries', 'finished_at', 'result',
  'error', 'worker', 'due_at')
redis.call('HSET', KEYS[1], 'status', ARGV[8], 'enqueued_at', ARGV[2])
if ARGV[9] ~= '' then redis.call('HSET', KEYS[1], 'due_at', ARGV[9]) end
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('PSETEX', KEYS[3], ARGV[5], ARGV[4])
redis.call('ZADD', KEYS[2], ARGV[6], ARGV[1])
local project = redis.call('HGET', KEYS[1], 'project')
if not project then
  project = 'default'
  redis.call('HSET', KEYS[1], 'project', project)
end
redis.call('ZADD', ARGV[10] .. project, ARGV[6], ARGV[1])
redis.call('SADD', KEYS[9], project)
redis.call('HINCRBY', KEYS[8], ARGV[7], 1)
redis.call('HINCRBY', KEYS[10], project .. ':enqueued', 1)
if ARGV[11] ~= '' and redis.call('SET', KEYS[11], '1', 'NX', 'PX', ARGV[12]) then redis.call('PUBLISH', ARGV[11], '') end
return 'requeued'
