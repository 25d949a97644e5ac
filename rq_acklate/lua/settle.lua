-- Settle one reserved job of a worker: requeue it, fail it, or drop the reservation.
-- The caller decided the action from a snapshot of the job; this script re-checks that snapshot,
-- and removing the job from the reserved list is the gate that makes racing recoverers act once.
--
-- KEYS[1]  the worker's liveness key        KEYS[2]  RQ's worker hash (rq:worker:<name>)
-- KEYS[3]  the worker's reserved list       KEYS[4]  the worker's reservations hash
-- KEYS[5]  the job hash                     KEYS[6]  rq:executions:<id> (its executions)
-- KEYS[7]  rq:queue:<origin>                KEYS[8]  rq:wip:<origin> (StartedJobRegistry)
-- KEYS[9]  rq:failed:<origin>               KEYS[10] rq:results:<id>
-- KEYS[11] rq:job:<id>:dependents           KEYS[12] rq:queues
-- KEYS[13] rq:acklate:stats                 KEYS[14] rq:acklate:quarantine
--
-- ARGV[1]  job id
-- ARGV[2]  action: 'requeue', 'fail' or 'drop'
-- ARGV[3]  '1' when the worker must be dead (liveness key gone or RQ's key says it died)
-- ARGV[4]  expected job status ('' when the hash is missing)
-- ARGV[5]  expected started_at
-- ARGV[6]  expected reservation record ('' when none)
-- ARGV[7]  now, in RQ's timestamp format      ARGV[8] now, as Unix seconds
-- ARGV[9]  counter to increment in rq:acklate:stats ('' for none)
-- ARGV[10] '1' to count a redelivery in the job hash
-- ARGV[11] failure reason, stored as the job's exc_info
-- ARGV[12] failure TTL in seconds (-1: keep forever)
-- ARGV[13] quarantine record ('' for none)
-- ARGV[14..] field/value pairs of RQ's failure Result for rq:results:<id>
--
-- Returns {'ok', redeliveries, dependents} or {'alive'|'changed'|'gone', 0, 0}.
local job_id, action = ARGV[1], ARGV[2]

if ARGV[3] == '1' and redis.call('EXISTS', KEYS[1]) == 1
    and redis.call('HEXISTS', KEYS[2], 'death') == 0 then
  return {'alive', 0, 0}
end

local state = redis.call('HMGET', KEYS[5], 'status', 'started_at')
local record = redis.call('HGET', KEYS[4], job_id) or ''
if (state[1] or '') ~= ARGV[4] or (state[2] or '') ~= ARGV[5] or record ~= ARGV[6] then
  return {'changed', 0, 0}
end

if redis.call('LREM', KEYS[3], 1, job_id) == 0 then
  return {'gone', 0, 0}
end
redis.call('HDEL', KEYS[4], job_id)

local redeliveries, dependents = 0, 0
if action ~= 'drop' then
  -- Forget the job's executions in RQ's StartedJobRegistry, or RQ's own cleanup would later
  -- fail the job as abandoned while it runs again (rq#2061, rq#2424).
  for _, execution_id in ipairs(redis.call('ZRANGE', KEYS[6], 0, -1)) do
    redis.call('ZREM', KEYS[8], job_id .. ':' .. execution_id)
  end
  redis.call('DEL', KEYS[6])
end

if action == 'requeue' then
  if ARGV[10] == '1' then
    redeliveries = redis.call('HINCRBY', KEYS[5], 'acklate_redeliveries', 1)
  else
    redeliveries = tonumber(redis.call('HGET', KEYS[5], 'acklate_redeliveries') or '0')
  end
  redis.call('HSET', KEYS[5], 'status', 'queued', 'enqueued_at', ARGV[7], 'started_at', '', 'ended_at', '')
  redis.call('LPUSH', KEYS[7], job_id)
  redis.call('SADD', KEYS[12], KEYS[7])
elseif action == 'fail' then
  local ttl = tonumber(ARGV[12])
  redis.call('HSET', KEYS[5], 'status', 'failed', 'ended_at', ARGV[7], 'exc_info', ARGV[11])
  if #ARGV >= 14 then
    local result = {}
    for i = 14, #ARGV do result[#result + 1] = ARGV[i] end
    redis.call('XADD', KEYS[10], 'MAXLEN', '10', '*', unpack(result))
  end
  if ttl < 0 then
    redis.call('PERSIST', KEYS[5])
    redis.call('PERSIST', KEYS[10])
    redis.call('ZADD', KEYS[9], '+inf', job_id)
  else
    redis.call('EXPIRE', KEYS[5], ttl)
    redis.call('EXPIRE', KEYS[10], ttl)
    redis.call('ZADD', KEYS[9], tonumber(ARGV[8]) + ttl, job_id)
  end
  dependents = redis.call('SCARD', KEYS[11])
end

if ARGV[13] ~= '' then
  redis.call('HSET', KEYS[14], job_id, ARGV[13])
end
if ARGV[9] ~= '' then
  redis.call('HINCRBY', KEYS[13], ARGV[9], 1)
end
return {'ok', redeliveries, dependents}
