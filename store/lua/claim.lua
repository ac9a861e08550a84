-- A worker's claim of due jobs, up to its free slots, and the record of who holds each, in one step.
-- Running jobs stay in arq's queue (at its head: they were due first), so the queue is read past them:
-- a worker with free slots finds waiting jobs however many of the first ids other workers run.
-- KEYS: 1 queue, 2 this worker's set of held jobs
-- ARGV: 1 now (ms), 2 in-progress TTL (ms), 3 free slots, 4 worker id, 5 most queue entries to read,
--       6 arq's in-progress key prefix, 7 record key prefix
-- Returns the claimed ids, each followed by its score.
local now, limit, cap = tonumber(ARGV[1]), tonumber(ARGV[3]), tonumber(ARGV[5])
local out, offset, page = {}, 0, 200
while #out < 2 * limit and offset < cap do
  local batch = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'WITHSCORES', 'LIMIT', offset, page)
  for i = 1, #batch, 2 do
    local id = batch[i]
    local running = ARGV[6] .. id
    if redis.call('EXISTS', running) == 0 then
      redis.call('PSETEX', running, ARGV[2], '1')
      redis.call('SADD', KEYS[2], id)
      local record = ARGV[7] .. id
      if redis.call('EXISTS', record) == 1 then
        redis.call('HSET', record, 'status', 'in_progress', 'worker', ARGV[4])
      end
      out[#out + 1] = id
      out[#out + 1] = batch[i + 1]
      if #out >= 2 * limit then break end
    end
  end
  if #batch < 2 * page then break end
  offset = offset + page
end
return out
