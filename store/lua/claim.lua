-- A worker's claim of due jobs, up to its free slots, and the record of who holds each, in one step.
-- Running jobs stay in arq's queue (at its head: they were due first), so the queue is read past them:
-- a worker with free slots finds waiting jobs however many of the first ids other workers run.
-- A job whose service has no free slot (store/service_slots.py) stays queued, holding nothing; the
-- scan goes on to jobs of other services. One that has waited past its operation's time limit is
-- claimed anyway, marked 'expired', and its try fails at once ("timed out waiting for ...").
-- KEYS: 1 queue, 2 this worker's set of held jobs
-- ARGV: 1 now (ms), 2 in-progress TTL (ms), 3 free slots, 4 worker id, 5 most queue entries to read,
--       6 arq's in-progress key prefix, 7 record key prefix, 8 slot set key prefix, 9 capacity hash,
--       10 most entries to pass over for full services, 11.. (operation, service, time limit ms) triples
-- Returns how many queued jobs it passed over for full services, then the claimed ids, each followed
-- by its score.
local now, limit, cap = tonumber(ARGV[1]), tonumber(ARGV[3]), tonumber(ARGV[5])
local skip_cap = tonumber(ARGV[10])
local service_of, limit_of = {}, {}
for i = 11, #ARGV, 3 do
  service_of[ARGV[i]] = ARGV[i + 1]
  limit_of[ARGV[i]] = tonumber(ARGV[i + 2])
end
local capacity = {}
local raw = redis.call('HGETALL', ARGV[9])
for i = 1, #raw, 2 do capacity[raw[i]] = tonumber(raw[i + 1]) end

-- Slots held per service, counted once per call (holders whose try is over are dropped).
local used = {}
local function held(service)
  if used[service] == nil then
    local key = ARGV[8] .. service
    for _, holder in ipairs(redis.call('ZRANGE', key, 0, -1)) do
      if redis.call('EXISTS', ARGV[6] .. holder) == 0 then redis.call('ZREM', key, holder) end
    end
    used[service] = redis.call('ZCARD', key)
  end
  return used[service]
end

local out, offset, page, skipped = {}, 0, 200, 0
while #out < 2 * limit and offset < cap and skipped < skip_cap do
  local batch = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'WITHSCORES', 'LIMIT', offset, page)
  for i = 1, #batch, 2 do
    local id = batch[i]
    local running = ARGV[6] .. id
    if redis.call('EXISTS', running) == 0 then
      local record = ARGV[7] .. id
      local fields = redis.call('HMGET', record, 'operation', 'enqueued_at', 'due_at', 'busy_since')
      local service = fields[1] and service_of[fields[1]]
      local slot = nil
      if service and capacity[service] and capacity[service] > 0 then
        if held(service) < capacity[service] then
          slot = 'held'
        else
          local since = tonumber(fields[4]) or tonumber(fields[3]) or tonumber(fields[2]) or now
          if now - since >= limit_of[fields[1]] then slot = 'expired' else slot = 'wait' end
        end
      end
      if slot == 'wait' then
        skipped = skipped + 1
        if skipped >= skip_cap then break end
      else
        redis.call('PSETEX', running, ARGV[2], '1')
        redis.call('SADD', KEYS[2], id)
        if slot == 'held' then
          redis.call('ZADD', ARGV[8] .. service, now, id)
          used[service] = used[service] + 1
        end
        if fields[1] then
          redis.call('HSET', record, 'status', 'in_progress', 'worker', ARGV[4])
          if slot then redis.call('HSET', record, 'slot', slot) else redis.call('HDEL', record, 'slot') end
        end
        out[#out + 1] = id
        out[#out + 1] = batch[i + 1]
        if #out >= 2 * limit then break end
      end
    end
  end
  if #batch < 2 * page then break end
  offset = offset + page
end
table.insert(out, 1, skipped)
return out
