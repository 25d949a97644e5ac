-- Settle a batch of one worker's reserved jobs: requeue, fail, or drop each reservation.
-- The caller decided each action from snapshot.lua's rows; this script re-checks each row's
-- fingerprint, and removing the job from the reserved list is the gate that makes racing
-- recoverers act once.
--
-- KEYS[1] the worker's liveness key      KEYS[2] RQ's worker hash (rq:worker:<name>)
-- KEYS[3] the worker's reserved list     KEYS[4] the worker's reservations hash
-- KEYS[5] rq:acklate:stats               KEYS[6] rq:queues
-- KEYS[7] rq:acklate:quarantine
-- then, for each origin queue o (plan.origins of them): rq:queue:<o>, rq:wip:<o>, rq:failed:<o>
-- then, for each job, from index job.key: rq:job:<id>; unless dropped, rq:executions:<id>; when
-- failed, rq:results:<id> and rq:job:<id>:dependents
--
-- ARGV[1] the plan, JSON:
--   {"dead": 1 when the worker must be dead (lease gone or RQ's key records a death),
--    "now": now in RQ's timestamp format, "ts": now in Unix seconds, "origins": count,
--    "jobs": [{"id", "key": index of its first key, "action": "requeue"|"fail"|"drop",
--              "origin": index (1-based) or 0, "fp",
--              "counter", "redeliver": 1 to count a redelivery, "reason", "ttl",
--              "quarantine", "result": [field, value, ...]}]}
-- Returns a JSON array, one [status, redeliveries, dependents] per job, with status 'ok',
-- 'changed' or 'gone'; or the string 'alive' when the worker is alive and nothing was done.
local plan = cjson.decode(ARGV[1])
if plan.dead == 1 and redis.call('EXISTS', KEYS[1]) == 1 and redis.call('HEXISTS', KEYS[2], 'death') == 0 then
  return 'alive'
end

local results = {}
local counters, requeued_to = {}, {}  -- written once per batch, after the loop
for i, job in ipairs(plan.jobs) do
  local job_key = KEYS[job.key]
  local executions_key = KEYS[job.key + 1]
  local results_key = KEYS[job.key + 2]
  local dependents_key = KEYS[job.key + 3]
  local queue_key, wip_key, failed_key
  if job.origin > 0 then
    queue_key = KEYS[7 + 3 * (job.origin - 1) + 1]
    wip_key = KEYS[7 + 3 * (job.origin - 1) + 2]
    failed_key = KEYS[7 + 3 * (job.origin - 1) + 3]
  end

  local f = redis.call('HMGET', job_key, 'status', 'started_at')
  local record = redis.call('HGET', KEYS[4], job.id) or ''
  local exists = redis.call('EXISTS', job_key)
  local fingerprint = redis.sha1hex(exists .. '\0' .. (f[1] or '') .. '\0' .. (f[2] or '') .. '\0' .. record)

  if fingerprint ~= job.fp then
    results[i] = {'changed', 0, 0}
  elseif redis.call('LREM', KEYS[3], 1, job.id) == 0 then
    results[i] = {'gone', 0, 0}
  else
    redis.call('HDEL', KEYS[4], job.id)
    local redeliveries, dependents = 0, 0
    if job.action ~= 'drop' then
      -- Forget the job's executions in RQ's StartedJobRegistry, or RQ's own cleanup would later
      -- fail the job as abandoned while it runs again (rq#2061, rq#2424).
      for _, execution_id in ipairs(redis.call('ZRANGE', executions_key, 0, -1)) do
        redis.call('ZREM', wip_key, job.id .. ':' .. execution_id)
      end
      redis.call('DEL', executions_key)
    end
    if job.action == 'requeue' then
      if job.redeliver == 1 then
        redeliveries = redis.call('HINCRBY', job_key, 'acklate_redeliveries', 1)
      else
        redeliveries = tonumber(redis.call('HGET', job_key, 'acklate_redeliveries') or '0')
      end
      redis.call('HSET', job_key, 'status', 'queued', 'enqueued_at', plan.now, 'started_at', '', 'ended_at', '')
      redis.call('LPUSH', queue_key, job.id)
      requeued_to[queue_key] = true
    elseif job.action == 'fail' then
      redis.call('HSET', job_key, 'status', 'failed', 'ended_at', plan.now, 'exc_info', job.reason)
      if #job.result > 0 then
        redis.call('XADD', results_key, 'MAXLEN', '10', '*', unpack(job.result))
      end
      if job.ttl < 0 then
        redis.call('PERSIST', job_key)
        redis.call('PERSIST', results_key)
        redis.call('ZADD', failed_key, '+inf', job.id)
      else
        redis.call('EXPIRE', job_key, job.ttl)
        redis.call('EXPIRE', results_key, job.ttl)
        redis.call('ZADD', failed_key, plan.ts + job.ttl, job.id)
      end
      dependents = redis.call('SCARD', dependents_key)
    end
    if job.quarantine ~= '' then
      redis.call('HSET', KEYS[7], job.id, job.quarantine)
    end
    if job.counter ~= '' then
      counters[job.counter] = (counters[job.counter] or 0) + 1
    end
    results[i] = {'ok', redeliveries, dependents}
  end
end
for queue_key in pairs(requeued_to) do
  redis.call('SADD', KEYS[6], queue_key)
end
for counter, count in pairs(counters) do
  redis.call('HINCRBY', KEYS[5], counter, count)
end
return cjson.encode(results)
