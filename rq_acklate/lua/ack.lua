-- Ack a late-ack job: drop its reservation, but only once its outcome is stored.
--
-- KEYS[1] the worker's reserved list      KEYS[2] the worker's reservations hash
-- KEYS[3] the job hash (rq:job:<id>)      KEYS[4] rq:acklate:stats
-- ARGV[1] job id                          ARGV[2] worker name
-- Returns 1 when acked, 0 when the reservation is no longer this worker's (recovery took it over),
-- -1 when the job still reads `started` by this worker: its outcome was not stored, so the
-- reservation stays for recovery to settle.
if not redis.call('LPOS', KEYS[1], ARGV[1]) then
  return 0
end
local state = redis.call('HMGET', KEYS[3], 'status', 'worker_name')
if state[1] == 'started' and state[2] == ARGV[2] then
  return -1
end
redis.call('LREM', KEYS[1], 1, ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HINCRBY', KEYS[4], 'acked', 1)
return 1
