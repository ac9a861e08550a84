-- A try begins (arq's on_job_start): the record says so, and the worker holds the job. It leaves its
-- project's index, where a claim of arq's own left it (``python -m jobs`` claims take it out at once).
-- KEYS: 1 record, 2 this worker's set of held jobs
-- ARGV: 1 job id, 2 now (ms), 3 try number, 4 worker id, 5 the project index key prefix (store/keys.py
--       FAIR: <prefix><queue>:project:<project>)
-- Returns false for a job without a record (cron runs, webhook deliveries), else the record's
-- operation, enqueued_at, due_at, request_id, hook fields (callback_url, workflow_id, cache), and the
-- service slot the claim took ('held', 'expired' or none), busy_tries and busy_since.
redis.call('SADD', KEYS[2], ARGV[1])
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local found = redis.call('HMGET', KEYS[1], 'operation', 'enqueued_at', 'due_at', 'request_id', 'callback_url', 'workflow_id', 'cache',
  'slot', 'busy_tries', 'busy_since')
redis.call('HSET', KEYS[1], 'status', 'in_progress', 'started_at', ARGV[2], 'tries', ARGV[3], 'worker', ARGV[4])
redis.call('HDEL', KEYS[1], 'progress', 'retry', 'due_at')
local queue, project = unpack(redis.call('HMGET', KEYS[1], 'queue', 'project'))
if queue and project then
  local index = ARGV[5] .. queue .. ':project:' .. project
  if redis.call('ZREM', index, ARGV[1]) == 1 and redis.call('ZCARD', index) == 0 then
    redis.call('SREM', ARGV[5] .. queue .. ':projects', project)
  end
end
return found
