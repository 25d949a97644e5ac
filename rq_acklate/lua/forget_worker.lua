-- Remove a dead worker that holds nothing from the registry of late-ack workers.
--
-- KEYS[1] rq:acklate:workers      KEYS[2] the worker's liveness key
-- KEYS[3] its reserved list       KEYS[4] its reservations hash      KEYS[5] its info hash
-- ARGV[1] worker name
-- Returns 1 when forgotten, 0 when it is alive again or still holds jobs.
if redis.call('EXISTS', KEYS[2]) == 1 or redis.call('LLEN', KEYS[3]) > 0 then
  return 0
end
redis.call('SREM', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[4], KEYS[5])
return 1
