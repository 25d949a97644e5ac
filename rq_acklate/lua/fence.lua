-- Before a worker stores a job's outcome after its lease may have lapsed: is the job still its own?
-- If so, renew the lease so recovery cannot take the job while the outcome is being written.
--
-- KEYS[1] the worker's liveness key       KEYS[2] the worker's reserved list
-- ARGV[1] job id                          ARGV[2] lease length in milliseconds
-- ARGV[3] lease value
-- Returns 1 when the job is still held (lease renewed), 0 when recovery took it over.
if not redis.call('LPOS', KEYS[2], ARGV[1]) then
  return 0
end
redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[2])
return 1
