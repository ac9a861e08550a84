-- A worker's claim of due jobs, up to its free slots, shared fairly between projects, and the record of
-- who holds each, in one step.
-- Each project's waiting jobs are indexed beside arq's queue (store/keys.py, FAIR): a sorted set with
-- the same ids and scores, left at claim. Each free slot goes to the best of the projects' head jobs
-- (a project's first due job, in score order, that no worker runs and whose service has a free slot):
-- the highest priority level wins (high > normal > low; a low job that waited longer than the aging
-- counts as normal), then the project served least recently (a counter per project, bumped at each
-- claim), then the lower score. Inside a project the order is the score's, so priorities and aging work
-- there as in arq's queue; with one project the order is arq's queue's.
-- Jobs in arq's queue without an index entry (arq's own enqueues: cron runs, webhook deliveries, jobs
-- queued before the indexes) count as project 'default': arq's queue is read as before, past running
-- jobs, for ids whose record has no project, passing over at most as many indexed waiting ones as there
-- are free slots (today's claim would take those first), and over indexed jobs of full services.
-- A job whose service has no free slot (store/service_slots.py) stays queued, holding nothing; the
-- claim goes on past it, up to the pass-over cap shared by the projects. One that has waited past its
-- operation's time limit is claimed anyway, marked 'expired', and its try fails at once.
-- A project with an in-flight limit (IFCFLOW_QUOTA_IN_FLIGHT, IFCFLOW_PROJECT_QUOTAS) that runs that many
-- jobs offers no head: its jobs wait, the other projects' run. Its running jobs are the ids its claims
-- started, kept in a set per project and counted, as a service's slots are, by the arq in-progress keys
-- that still exist: arq deletes a try's key at its end however it ends (complete, failure, retry, abort)
-- and a reap deletes those of a dead worker, so no script has to keep a count in step.
-- KEYS: 1 queue, 2 this worker's set of held jobs, 3 projects with waiting jobs, 4 last served per
--       project, 5 the served counter, 6 the queue's wake flag (store/keys.py, WAKE): lowered first, so a
--       submit after this scan wakes the workers again
-- ARGV: 1 now (ms), 2 in-progress TTL (ms), 3 free slots, 4 worker id, 5 most queue entries to read,
--       6 arq's in-progress key prefix, 7 record key prefix, 8 slot set key prefix, 9 capacity hash,
--       10 most entries to pass over for full services, 11 project index key prefix, 12 priority aging
--       (ms), 13 project running set key prefix, 14 in-flight limit of every project (0: none), 15 the
--       projects' own in-flight limits (JSON object, project -> limit, 0: none), 16.. (operation,
--       service, time limit ms) triples
-- Returns how many queued jobs it passed over for full services (and one per project at its in-flight
-- limit with due jobs), then the claimed ids, each followed by its score.
redis.call('DEL', KEYS[6])
local now, limit, cap = tonumber(ARGV[1]), tonumber(ARGV[3]), tonumber(ARGV[5])
local skip_cap, aging = tonumber(ARGV[10]), tonumber(ARGV[12])
local running_prefix, record_prefix = ARGV[6], ARGV[7]
local service_of, limit_of = {}, {}
for i = 16, #ARGV, 3 do
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
      if redis.call('EXISTS', running_prefix .. holder) == 0 then redis.call('ZREM', key, holder) end
    end
    used[service] = redis.call('ZCARD', key)
  end
  return used[service]
end

-- fields: operation, enqueued_at, due_at, busy_since, priority (and project). Returns the slot the job
-- would take ('held', 'expired', 'wait' for a full service, 'free' for a service of no known capacity:
-- nothing to take, so the try need not ask; nil for no operation) and its service.
local function slot_of(fields)
  local service = fields[1] and service_of[fields[1]]
  if service and capacity[service] and capacity[service] > 0 then
    if held(service) < capacity[service] then return 'held', service end
    local since = tonumber(fields[4]) or tonumber(fields[3]) or tonumber(fields[2]) or now
    if now - since >= limit_of[fields[1]] then return 'expired', service end
    return 'wait', service
  end
  if service then return 'free', service end
  return nil, service
end

-- Running jobs per project with an in-flight limit, counted once per call (ids whose try is over dropped).
local running_set_prefix, in_flight_default = ARGV[13], tonumber(ARGV[14])
local in_flight_own = cjson.decode(ARGV[15])
local running = {}
local function in_flight_limit(project)
  return tonumber(in_flight_own[project]) or in_flight_default
end
local function running_of(project)
  if running[project] == nil then
    local key = running_set_prefix .. project
    for _, holder in ipairs(redis.call('SMEMBERS', key)) do
      if redis.call('EXISTS', running_prefix .. holder) == 0 then redis.call('SREM', key, holder) end
    end
    running[project] = redis.call('SCARD', key)
  end
  return running[project]
end

local LEVEL = {high = 2, normal = 1, low = 0}
local function level_of(fields)
  local level = LEVEL[fields[5] or 'normal'] or 1
  if level == 0 and now - math.max(tonumber(fields[2]) or now, tonumber(fields[3]) or 0) > aging then
    level = 1
  end
  return level
end

local FIELDS = {'operation', 'enqueued_at', 'due_at', 'busy_since', 'priority', 'project'}

-- A source of heads: one project's index, or arq's queue itself for the unindexed jobs ('default').
-- offset: entries before the next page (in an index: those passed over and kept there).
local sources = {}
local projects = redis.call('SMEMBERS', KEYS[3])
table.sort(projects)
for _, project in ipairs(projects) do
  sources[#sources + 1] = {project = project, key = ARGV[11] .. project, page = math.min(200, limit + 1),
                           in_flight = in_flight_limit(project)}
end
sources[#sources + 1] = {project = 'default', page = 200, passed = 0, in_flight = 0}
local budget = math.max(1, math.ceil(skip_cap / #sources))
for _, src in ipairs(sources) do
  src.batch, src.pos, src.offset, src.waits, src.removed = {}, 1, 0, 0, 0
end

-- The source's next entry; from arq's queue, the next one that no worker runs (most of what it reads
-- are running jobs, passed in a tight loop).
local function next_entry(src)
  while true do
    local batch, pos, n = src.batch, src.pos, #src.batch
    if src.key == nil then
      while pos <= n and redis.call('EXISTS', running_prefix .. batch[pos]) == 1 do pos = pos + 2 end
    end
    if pos <= n then
      src.pos = pos + 2
      return batch[pos], batch[pos + 1]
    end
    if src.last or (src.key == nil and src.offset >= cap) then return nil end
    src.batch = redis.call('ZRANGEBYSCORE', src.key or KEYS[1], '-inf', now, 'WITHSCORES', 'LIMIT', src.offset, src.page)
    src.pos = 1
    src.last = #src.batch < 2 * src.page
    if src.key == nil then src.offset = src.offset + src.page end
    src.page = 200
  end
end

-- A job passed over for a full service: it stays queued (and indexed).
local skipped = 0
local function pass_over(src, counted)
  if counted then skipped = skipped + 1 end
  if src.key then src.offset = src.offset + 1 end
  src.waits = src.waits + 1
  if src.waits >= budget then src.done = true end
end

local function find_head(src)
  src.head = nil
  if src.in_flight > 0 and not src.done and running_of(src.project) >= src.in_flight then
    -- At its limit: waiting, not failing. Counted (when a job of it is due) so the worker backs off
    -- and claims again as tries end, as for a full service.
    src.done = true
    if #redis.call('ZRANGEBYSCORE', src.key, '-inf', now, 'LIMIT', 0, 1) > 0 then skipped = skipped + 1 end
    return
  end
  while not src.done do
    local id, score = next_entry(src)
    if not id then src.done = true return end
    if src.key then
      if redis.call('EXISTS', running_prefix .. id) == 1 or not redis.call('ZSCORE', KEYS[1], id) then
        -- Started by arq's own claims, or gone from arq's queue: not waiting any more.
        redis.call('ZREM', src.key, id)
        src.removed = src.removed + 1
      else
        local fields = redis.call('HMGET', record_prefix .. id, unpack(FIELDS))
        if slot_of(fields) == 'wait' then
          pass_over(src, true)
        else
          src.head = {id = id, score = score, fields = fields, level = level_of(fields)}
          return
        end
      end
    else
      local fields = redis.call('HMGET', record_prefix .. id, unpack(FIELDS))
      if fields[6] then
        -- Indexed: its project's source offers it. Read past a full service's jobs as any source does,
        -- past as many others as there are free slots.
        if slot_of(fields) == 'wait' then
          pass_over(src, false)
        else
          src.passed = src.passed + 1
          if src.passed > limit then src.done = true end
        end
      elseif slot_of(fields) == 'wait' then
        pass_over(src, true)
      else
        src.head = {id = id, score = score, fields = fields, level = level_of(fields)}
        return
      end
    end
  end
end

local served = {default = 0}
for first = 1, #projects, 1000 do  -- in chunks: unpack's stack is limited
  local last = math.min(#projects, first + 999)
  local values = redis.call('HMGET', KEYS[4], unpack(projects, first, last))
  for i = first, last do served[projects[i]] = tonumber(values[i - first + 1]) or 0 end
end
if served['default'] == 0 then served['default'] = tonumber(redis.call('HGET', KEYS[4], 'default')) or 0 end
local seq = tonumber(redis.call('GET', KEYS[5])) or 0
local touched = {}

local function better(a, b)
  local x, y = a.head, b.head
  if x.level ~= y.level then return x.level > y.level end
  if served[a.project] ~= served[b.project] then return served[a.project] < served[b.project] end
  return tonumber(x.score) < tonumber(y.score)
end

for _, src in ipairs(sources) do src.stale = true end
local out = {}
while #out < 2 * limit do
  local best = nil
  for _, src in ipairs(sources) do
    if src.stale then
      src.stale = false
      find_head(src)
    end
    if src.head and (best == nil or better(src, best)) then best = src end
  end
  if best == nil then break end
  local head = best.head
  best.stale = true
  -- Found before this claim took other heads: its service may be full by now.
  local slot, service = slot_of(head.fields)
  if slot == 'wait' then
    pass_over(best, true)
  else
    local id = head.id
    redis.call('PSETEX', running_prefix .. id, ARGV[2], '1')
    redis.call('SADD', KEYS[2], id)
    if slot == 'held' then
      redis.call('ZADD', ARGV[8] .. service, now, id)
      used[service] = used[service] + 1
    end
    if head.fields[1] then
      local record = record_prefix .. id
      redis.call('HSET', record, 'status', 'in_progress', 'worker', ARGV[4])
      if slot then redis.call('HSET', record, 'slot', slot) else redis.call('HDEL', record, 'slot') end
    end
    if best.key then
      redis.call('ZREM', best.key, id)
      best.removed = best.removed + 1
    end
    if best.in_flight > 0 then
      local key = running_set_prefix .. best.project
      running[best.project] = running_of(best.project) + 1
      redis.call('SADD', key, id)
      -- Outlives every member's in-progress key (claims of other workers may give longer ones).
      if redis.call('PTTL', key) < tonumber(ARGV[2]) then redis.call('PEXPIRE', key, ARGV[2]) end
    end
    seq = seq + 1
    served[best.project] = seq
    touched[best.project] = true
    out[#out + 1] = id
    out[#out + 1] = head.score
  end
end

if next(touched) ~= nil then
  redis.call('SET', KEYS[5], seq)
  for project in pairs(touched) do redis.call('HSET', KEYS[4], project, served[project]) end
end
-- A project whose index emptied leaves the set of projects with waiting jobs.
for _, src in ipairs(sources) do
  if src.key and (src.removed > 0 or (src.last and src.offset == 0 and #src.batch == 0))
      and redis.call('ZCARD', src.key) == 0 then
    redis.call('SREM', KEYS[3], src.project)
  end
end
table.insert(out, 1, skipped)
return out
