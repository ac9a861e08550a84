-- Ask for a running job's abort: in arq's abort set (where a worker looks for requests it missed)
-- and on the abort channel (where the worker running it hears it at once). Entries older than the
-- window are dropped here, so the set stays bounded however many aborts are asked for.
-- KEYS: 1 arq's abort set
-- ARGV: 1 job id, 2 now (ms), 3 window (ms), 4 channel
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', tonumber(ARGV[2]) - tonumber(ARGV[3]))
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
return redis.call('PUBLISH', ARGV[4], ARGV[1])
