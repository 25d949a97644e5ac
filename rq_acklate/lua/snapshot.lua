-- Read what recovery decides on, for a batch of jobs in one worker's reserved list.
--
-- KEYS[1]        the worker's reservations hash
-- KEYS[2..n+1]   the job hashes (rq:job:<id>)
-- ARGV[1..n]     the job ids
-- Returns a JSON array, one entry per job:
--   [exists, status, origin, started_at, worker_name, failure_ttl, redeliveries, start record,
--    fingerprint]
-- The fingerprint covers what the decision depends on; settle.lua recomputes it and refuses to act
-- when it changed in between.
local rows = {}
for i, job_id in ipairs(ARGV) do
  local key = KEYS[i + 1]
  local f = redis.call('HMGET', key, 'status', 'origin', 'started_at', 'worker_name', 'failure_ttl',
                       'acklate_redeliveries')
  local record = redis.call('HGET', KEYS[1], job_id) or ''
  local exists = redis.call('EXISTS', key)
  local fingerprint = redis.sha1hex(exists .. '\0' .. (f[1] or '') .. '\0' .. (f[3] or '') .. '\0' .. record)
  rows[i] = {exists, f[1] or '', f[2] or '', f[3] or '', f[4] or '', f[5] or '', f[6] or '', record,
             fingerprint}
end
return cjson.encode(rows)
