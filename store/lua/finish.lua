-- A try ends (arq's after_job_end, or a repair): the record takes its outcome, the worker lets go. A
-- job to run again (arq left it in its queue, its score moved by a retry's delay) is waiting again: it
-- goes back into its project's index with arq's score (store/lua/claim.lua); one that is over leaves it.
-- KEYS: 1 record, 2 the worker's set of held jobs
-- ARGV: 1 job id, 2 outcome (complete|failed|aborted|retry|interrupted), 3 now (ms), 4 record TTL (s),
--       5 field for the payload (result|error|retry), 6 payload (JSON), 7 due (ms, for retry),
--       8 worker id ('' to skip the holder check), 9 '1' when a retry is only a wait for a busy
--       service (not a try: busy_tries counts it, busy_since keeps when the wait began),
--       10 the project index key prefix (store/keys.py FAIR: <prefix><queue>:project:<project>),
--       11 per-project stats counts, 12 the outcome counted there ('' for none: a retry counts as
--       'retried' in the statistics, an interruption not at all), 13.. statistics as (key, field, amount)
--       triples
-- Returns 1 when the record was written, 0 when it is gone or another worker holds the job now.
redis.call('SREM', KEYS[2], ARGV[1])
for i = 13, #ARGV, 3 do
  if string.find(ARGV[i + 2], '.', 1, true) then
    redis.call('HINCRBYFLOAT', ARGV[i], ARGV[i + 1], ARGV[i + 2])
  else
    redis.call('HINCRBY', ARGV[i], ARGV[i + 1], ARGV[i + 2])
  end
end
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if ARGV[12] ~= '' then
  redis.call('HINCRBY', ARGV[11], (redis.call('HGET', KEYS[1], 'project') or 'default') .. ':' .. ARGV[12], 1)
end
local holder = redis.call('HGET', KEYS[1], 'worker')
if ARGV[8] ~= '' and holder and holder ~= ARGV[8] then return 0 end
local outcome = ARGV[2]
redis.call('HDEL', KEYS[1], 'slot')
local queue, project = unpack(redis.call('HMGET', KEYS[1], 'queue', 'project'))
if queue and project then
  local index, projects = ARGV[10] .. queue .. ':project:' .. project, ARGV[10] .. queue .. ':projects'
  local score = redis.call('ZSCORE', queue, ARGV[1])
  if (outcome == 'retry' or outcome == 'interrupted') and score then
    redis.call('ZADD', index, score, ARGV[1])
    redis.call('SADD', projects, project)
  elseif redis.call('ZREM', index, ARGV[1]) == 1 and redis.call('ZCARD', index) == 0 then
    redis.call('SREM', projects, project)
  end
end
if ARGV[9] == '1' then
  redis.call('HINCRBY', KEYS[1], 'busy_tries', 1)
  redis.call('HSETNX', KEYS[1], 'busy_since', ARGV[3])
else
  redis.call('HDEL', KEYS[1], 'busy_since')
end
if outcome == 'retry' then
  redis.call('HSET', KEYS[1], 'status', 'deferred', 'due_at', ARGV[7], 'retry', ARGV[6])
  redis.call('HDEL', KEYS[1], 'worker', 'progress')
elseif outcome == 'interrupted' then
  redis.call('HSET', KEYS[1], 'status', 'queued')
  redis.call('HDEL', KEYS[1], 'worker', 'progress')
else
  redis.call('HSET', KEYS[1], 'status', outcome, 'finished_at', ARGV[3], ARGV[5], ARGV[6])
  if outcome == 'complete' then
    redis.call('HSET', KEYS[1], 'progress', '{"percent":100.0,"phase":"done"}')
    redis.call('HDEL', KEYS[1], 'worker', 'retry', 'due_at', 'error')
  else
    redis.call('HDEL', KEYS[1], 'worker', 'retry', 'due_at', 'progress', 'result')
  end
  redis.call('EXPIRE', KEYS[1], ARGV[4])
end
return 1
