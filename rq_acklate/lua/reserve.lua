-- Reserve one job: move the head of the highest-priority non-empty queue into the worker's
-- reserved list, in one atomic step, so the job is never in neither list.
--
-- KEYS[1]     the worker's reserved list (rq:acklate:reserved:<worker>)
-- KEYS[2]     rq:acklate:workers, the registry recovery scans
-- KEYS[3..n]  queue lists in priority order (rq:queue:<name>)
-- ARGV[1]     '1' to refuse while the reserved list is not empty
-- ARGV[2]     the worker's name
--
-- The worker (re)joins the registry in the same step: recovery forgets a worker it saw dead and
-- empty-handed, and a worker that was only paused must be found again if it dies holding a job.
--
-- A worker reserves only when it holds nothing, so with ARGV[1] = '1' anything already in its list
-- is a job whose reply it never received (a reply lost on the network, then retried by the
-- client): the script answers 'not-empty' and the worker settles those first.
-- Returns {queue_key, job_id}, 'not-empty', or false when every queue is empty.
redis.call('SADD', KEYS[2], ARGV[2])
if ARGV[1] == '1' and redis.call('LLEN', KEYS[1]) > 0 then
  return redis.status_reply('not-empty')
end
for i = 3, #KEYS do
  local job_id = redis.call('LMOVE', KEYS[i], KEYS[1], 'LEFT', 'RIGHT')
  if job_id then
    return {KEYS[i], job_id}
  end
end
return false
