"""Real `rq worker` processes, SIGKILLed (or stopped) at each point of a job's life.

Workers run with liveness_ttl=2s, heartbeat 0.5s, recovery every 0.5s (helpers.FAST). Every test
asserts the fate of every job: how many times it started and finished, and its final state.
"""

from __future__ import annotations

import signal
import time
from urllib.parse import urlparse

import pytest
from rq import Queue
from rq.job import JobStatus
from rq.registry import FailedJobRegistry

import jobs
from faults import ReplyDroppingProxy
from helpers import finished_runs, is_gone, reserved, started_runs, stats, wait_until

pytestmark = pytest.mark.timeout(90)


def status(job):
    return job.get_status(refresh=True)


def wait_status(job, expected, timeout=20):
    wait_until(lambda: status(job) == expected, timeout, what=f'job {job.id} to be {expected} (is {status(job)})')


def wait_started(connection, job, count=1, timeout=20):
    wait_until(lambda: len(started_runs(connection, job.id)) >= count, timeout, what=f'start #{count} of {job.id}')


def paused_at(connection, worker, point):
    return wait_until(
        lambda: any(e.decode().startswith(point) for e in connection.lrange(f'test:paused:{worker.name}', 0, -1)),
        what=f'{worker.name} to pause at {point}',
    )


def test_kill_before_start_requeues_a_job_that_never_ran(connection, workers):
    queue = Queue(connection=connection)
    job = queue.enqueue(jobs.late_job)
    first = workers.start('w1', worker_class='workers.PauseBeforeStartWorker')
    paused_at(connection, first, 'before-start')
    assert reserved(connection, 'w1') == [job.id] and queue.get_job_ids() == []
    first.kill()
    workers.start('w2')
    wait_status(job, JobStatus.FINISHED)
    assert [r['redeliveries'] for r in started_runs(connection, job.id)] == [0]  # never ran before: no redelivery
    assert len(finished_runs(connection, job.id)) == 1
    assert reserved(connection, 'w1') == []


def test_kill_mid_run_redelivers_an_idempotent_job(connection, workers):
    job = Queue(connection=connection).enqueue(jobs.idempotent_job, 3)
    first = workers.start('w1')
    wait_started(connection, job)
    horse = first.horse_pid()
    first.kill()
    killed_at = time.monotonic()
    workers.start('w2')
    wait_started(connection, job, 2)
    assert time.monotonic() - killed_at < 6
    wait_status(job, JobStatus.FINISHED)
    assert [r['redeliveries'] for r in started_runs(connection, job.id)] == [0, 1]
    assert len(finished_runs(connection, job.id)) == 1
    assert is_gone(horse)
    assert stats(connection)['requeued'] == 1


def test_kill_mid_run_fails_a_non_idempotent_job_and_never_reruns_it(connection, workers):
    job = Queue(connection=connection).enqueue(jobs.late_job, 3)
    first = workers.start('w1')
    wait_started(connection, job)
    first.kill()
    workers.start('w2')
    wait_status(job, JobStatus.FAILED)
    time.sleep(3)  # a few more recovery intervals: it must not come back
    assert len(started_runs(connection, job.id)) == 1
    assert finished_runs(connection, job.id) == []
    assert job.id in FailedJobRegistry('default', connection=connection)
    assert 'worker lost' in job.latest_result().exc_string
    assert stats(connection)['worker_lost'] == 1


def test_kill_after_the_outcome_is_stored_but_before_the_ack_does_not_rerun(connection, workers):
    job = Queue(connection=connection).enqueue(jobs.idempotent_job)
    first = workers.start('w1', worker_class='workers.PauseBeforeAckWorker')
    paused_at(connection, first, 'before-ack')
    assert status(job) == JobStatus.FINISHED and reserved(connection, 'w1') == [job.id]
    first.kill()
    workers.start('w2')
    wait_until(lambda: reserved(connection, 'w1') == [], what='the reservation to be dropped')
    time.sleep(1)
    assert len(started_runs(connection, job.id)) == 1
    assert status(job) == JobStatus.FINISHED
    assert Queue(connection=connection).get_job_ids() == []


def test_killed_horse_under_a_live_worker_redelivers_an_idempotent_job(connection, workers):
    job = Queue(connection=connection).enqueue(jobs.idempotent_job, 3)
    worker = workers.start('w1')
    wait_started(connection, job)
    horse = worker.horse_pid()
    import os

    os.kill(horse, signal.SIGKILL)  # as the OOM killer would
    wait_status(job, JobStatus.FINISHED)
    assert [r['redeliveries'] for r in started_runs(connection, job.id)] == [0, 1]
    assert len(finished_runs(connection, job.id)) == 1
    assert worker.process.poll() is None
    wait_until(lambda: reserved(connection, 'w1') == [], what='the ack, sent after RQ stored the outcome')


def test_killed_horse_fails_a_non_idempotent_job_as_rq_does(connection, workers):
    job = Queue(connection=connection).enqueue(jobs.late_job, 3)
    worker = workers.start('w1')
    wait_started(connection, job)
    import os

    os.kill(worker.horse_pid(), signal.SIGKILL)
    wait_status(job, JobStatus.FAILED)
    assert 'Work-horse terminated unexpectedly' in job.latest_result().exc_string
    wait_until(lambda: reserved(connection, 'w1') == [], what='the ack')
    assert len(started_runs(connection, job.id)) == 1


def test_poison_pill_is_failed_after_max_redeliveries(connection, workers):
    job = Queue(connection=connection).enqueue(jobs.poison_job)  # kills its horse; max_redeliveries=2
    workers.start('w1')
    wait_status(job, JobStatus.FAILED)
    assert [r['redeliveries'] for r in started_runs(connection, job.id)] == [0, 1, 2]
    assert 'poisoned' in job.latest_result().exc_string
    assert stats(connection)['poisoned'] == 1


def test_killing_the_main_process_takes_its_horse_down(connection, workers):
    job = Queue(connection=connection).enqueue(jobs.idempotent_job, 30)
    first = workers.start('w1')
    wait_started(connection, job)
    horse = first.horse_pid()
    first.kill()
    wait_until(lambda: is_gone(horse), timeout=5, what='the horse to die with its worker')
    workers.start('w2')
    wait_started(connection, job, 2)
    assert len(finished_runs(connection, job.id)) == 0


def test_worker_paused_past_its_lease_notices_the_takeover(connection, workers):
    queue = Queue(connection=connection)
    job = queue.enqueue(jobs.idempotent_job, 4)
    first = workers.start('w1')
    wait_started(connection, job)
    first.kill(signal.SIGSTOP)
    try:
        workers.start('w2')
        wait_started(connection, job, 2, timeout=15)  # w2 took it over
    finally:
        first.kill(signal.SIGCONT)
    wait_status(job, JobStatus.FINISHED, timeout=30)
    wait_until(lambda: stats(connection).get('taken_over', 0) >= 1, what='w1 to count the takeover')
    wait_until(lambda: 'taken over' in first.log(), what='w1 to log the takeover')
    assert first.process.poll() is None  # did not crash
    time.sleep(1)
    assert len(job.results()) == 1  # recorded once, by w2
    assert reserved(connection, 'w1') == [] and reserved(connection, 'w2') == []
    # w1 goes on working.
    after = queue.enqueue(jobs.idempotent_job)
    wait_status(after, JobStatus.FINISHED)


def test_paused_worker_does_not_record_a_non_idempotent_job_failed_by_recovery(connection, workers):
    # The horse (its own process group) runs on while its worker is stopped; it outlives the lease.
    job = Queue(connection=connection).enqueue(jobs.late_job, 6)
    first = workers.start('w1')
    wait_started(connection, job)
    first.kill(signal.SIGSTOP)
    try:
        workers.start('w2')
        wait_status(job, JobStatus.FAILED, timeout=15)
        wait_until(lambda: finished_runs(connection, job.id), what='the horse to finish while w1 is stopped')
    finally:
        first.kill(signal.SIGCONT)
    wait_until(lambda: 'taken over' in first.log(), what='the paused worker to notice')
    time.sleep(1)
    assert status(job) == JobStatus.FAILED  # the worker-lost failure stands
    assert [r.type.name for r in job.results()] == ['FAILED']
    assert len(started_runs(connection, job.id)) == 1


def test_worker_paused_between_its_ownership_check_and_the_start_never_starts_the_job(connection, workers):
    # Found by the long chaos soak: stopped after RQ created the execution but before the fork, the
    # worker used to start a job that recovery had already requeued (so it ran twice), and leave its
    # execution in StartedJobRegistry for RQ's cleanup to fail the job later.
    queue = Queue(connection=connection)
    job = queue.enqueue(jobs.late_job)
    first = workers.start('w1', worker_class='workers.PauseAfterPrepareWorker', env={'ACKLATE_TEST_PAUSE': '1'})
    paused_at(connection, first, 'after-prepare')
    first.kill(signal.SIGSTOP)
    try:
        workers.start('w2')
        # Not started yet (RQ marks a job started in the horse): recovery requeues it as never run.
        wait_status(job, JobStatus.FINISHED, timeout=30)
    finally:
        first.kill(signal.SIGCONT)
    wait_until(lambda: 'taken over' in first.log(), what='w1 to notice the takeover')
    wait_until(lambda: stats(connection).get('taken_over', 0) >= 1, what='w1 to count the takeover')
    time.sleep(1)
    assert first.process.poll() is None  # did not crash
    assert len(started_runs(connection, job.id)) == 1  # by w2 only: w1 never started it
    assert status(job) == JobStatus.FINISHED and [r.type.name for r in job.results()] == ['SUCCESSFUL']
    assert job.started_job_registry.get_job_ids() == []  # nothing left for RQ's cleanup to fail
    assert FailedJobRegistry(queue=queue).get_job_ids() == []
    assert reserved(connection, 'w1') == [] and reserved(connection, 'w2') == []


def test_kill_between_the_two_start_transactions_requeues_an_early_ack_job(connection, workers):
    # Found by the CI-sized chaos soak: an early-ack reservation used to be dropped in RQ's first
    # start transaction (main process), though RQ marks the job started only in the second (horse):
    # a worker killed in between left the job queued in no queue, never run.
    queue = Queue(connection=connection)
    job = queue.enqueue(jobs.plain_job)
    first = workers.start('w1', worker_class='workers.PauseAfterPrepareWorker')
    paused_at(connection, first, 'after-prepare')
    assert status(job) == JobStatus.QUEUED and reserved(connection, 'w1') == [job.id]
    first.kill()
    workers.start('w2')
    wait_status(job, JobStatus.FINISHED, timeout=30)
    assert len(started_runs(connection, job.id)) == 1
    assert len(finished_runs(connection, job.id)) == 1
    assert reserved(connection, 'w1') == []


def test_worker_forgotten_while_paused_is_found_again_when_it_dies_holding_a_job(connection, workers):
    first = workers.start('w1', ['solo'])
    first.kill(signal.SIGSTOP)
    try:
        workers.start('w2', ['other'])  # its recovery sees w1 dead and empty-handed, and forgets it
        wait_until(lambda: not connection.sismember('rq:acklate:workers', 'w1'), what='w1 to be forgotten')
    finally:
        first.kill(signal.SIGCONT)
    job = Queue('solo', connection=connection).enqueue(jobs.idempotent_job, 3)
    wait_until(lambda: started_runs(connection, job.id), what='w1 to take the job')
    assert connection.sismember('rq:acklate:workers', 'w1')  # it joined the registry again
    first.kill()
    workers.start('w3', ['solo'])
    wait_status(job, JobStatus.FINISHED)
    assert [r['redeliveries'] for r in started_runs(connection, job.id)] == [0, 1]


def test_lost_dequeue_reply_gets_the_job_back(connection, workers, redis_server):
    url = urlparse(workers.redis_url)
    proxy = ReplyDroppingProxy(url.hostname, url.port)
    try:
        queue = Queue(connection=connection)
        workers.redis_url = f'redis://127.0.0.1:{proxy.port}{url.path}'
        worker = workers.start('w1')
        job_id = 'lost-reply-job'
        proxy.arm(job_id.encode())
        job = queue.enqueue(jobs.idempotent_job, job_id=job_id)
        assert proxy.dropped.wait(10), 'the reply was never dropped'
        wait_status(job, JobStatus.FINISHED, timeout=10)
        assert len(started_runs(connection, job.id)) == 1
        wait_until(lambda: reserved(connection, 'w1') == [], what='the ack, sent after RQ stored the outcome')
        assert worker.process.poll() is None
    finally:
        proxy.close()


@pytest.mark.parametrize(
    ('worker_class', 'outage', 'job_func'),
    [
        ('workers.LoseRedisAtStartWorker', 'start', jobs.idempotent_job),
        ('workers.LoseRedisAtStartWorker', 'start', jobs.late_job),
        ('workers.LoseRedisAtStartWorker', 'horse', jobs.idempotent_job),
        ('workers.LoseRedisAtStartSimpleWorker', 'start', jobs.late_job),
    ],
    ids=['idempotent', 'not-idempotent', 'whole-horse', 'simple-worker'],
)
def test_redis_lost_in_rqs_start_transaction_is_a_worker_loss_not_a_job_failure(
    connection, workers, worker_class, outage, job_func
):
    """RQ fails a job whose start transaction (or failure path) lost Redis, though the job never ran;
    found by the long chaos soak with CLIENT KILL. A late-ack job is settled by its policy instead:
    it never started, so it is requeued and runs once."""
    job = Queue(connection=connection).enqueue(job_func)
    connection.sadd('test:lose-redis', job.id)
    worker = workers.start('w1', worker_class=worker_class, env={'ACKLATE_TEST_OUTAGE': outage})
    wait_status(job, JobStatus.FINISHED)
    assert connection.scard('test:lose-redis') == 0  # the outage really happened
    assert [r['redeliveries'] for r in started_runs(connection, job.id)] == [0]
    assert len(finished_runs(connection, job.id)) == 1
    assert job.id not in FailedJobRegistry('default', connection=connection)
    assert 'not failed for it' in worker.log() or 'stays reserved' in worker.log()
    assert worker.process.poll() is None
    wait_until(lambda: reserved(connection, 'w1') == [], what='the reservation to go')
    assert stats(connection)['requeued'] == 1


def test_redis_error_raised_by_the_job_itself_fails_it_as_rq_does(connection, workers):
    job = Queue(connection=connection).enqueue(jobs.raises_connection_error)
    workers.start('w1')
    wait_status(job, JobStatus.FAILED)
    time.sleep(1.5)  # a few recovery intervals: it must not come back
    assert len(started_runs(connection, job.id)) == 1
    assert 'the job lost its own connection' in job.latest_result().exc_string
    wait_until(lambda: reserved(connection, 'w1') == [], what='the ack')


def test_several_queues_priority_and_origin(connection, workers):
    high, low = Queue('high', connection=connection), Queue('low', connection=connection)
    low_job = low.enqueue(jobs.idempotent_job, 3)
    high_job = high.enqueue(jobs.idempotent_job)
    first = workers.start('w1', ['high', 'low'])
    wait_status(high_job, JobStatus.FINISHED)
    wait_started(connection, low_job)
    assert started_runs(connection, high_job.id)[0]['at'] < started_runs(connection, low_job.id)[0]['at']
    first.kill()
    workers.start('w2', ['high', 'low'])
    wait_status(low_job, JobStatus.FINISHED)
    assert [r['redeliveries'] for r in started_runs(connection, low_job.id)] == [0, 1]
    assert high.get_job_ids() == [] and low.get_job_ids() == []


def test_early_ack_jobs_leave_the_reservation_when_they_start(connection, workers):
    job = Queue(connection=connection).enqueue(jobs.plain_job, 30)
    first = workers.start('w1')
    wait_started(connection, job)
    assert reserved(connection, 'w1') == []
    first.kill()
    workers.start('w2')
    time.sleep(3)
    assert status(job) == JobStatus.STARTED  # RQ's own abandoned-job handling owns it now
    assert len(started_runs(connection, job.id)) == 1


def test_restart_under_the_same_name_recovers_its_own_reservations(connection, workers):
    job = Queue(connection=connection).enqueue(jobs.idempotent_job, 2)
    first = workers.start('fixed-name')
    wait_started(connection, job)
    first.kill()
    first.wait()
    wait_until(lambda: not connection.exists('rq:acklate:alive:fixed-name'), what='the old lease to expire')
    second = workers.start('fixed-name')
    wait_status(job, JobStatus.FINISHED)
    assert 'left reserved' in second.log()
    assert [r['redeliveries'] for r in started_runs(connection, job.id)] == [0, 1]


def test_long_job_never_looks_dead(connection, workers):
    job = Queue(connection=connection).enqueue(jobs.late_job, 6)  # three liveness TTLs
    workers.start('w1')
    workers.start('w2')
    wait_status(job, JobStatus.FINISHED, timeout=30)
    assert len(started_runs(connection, job.id)) == 1
    assert 'taken over' not in ''.join(w.log() for w in workers.started)


def test_cold_shutdown_requeues_an_idempotent_job_on_the_way_out(connection, workers):
    job = Queue(connection=connection).enqueue(jobs.idempotent_job, 30)
    first = workers.start('w1')
    wait_started(connection, job)
    first.kill(signal.SIGTERM)
    time.sleep(1.5)  # RQ ignores a second signal within 1 s
    first.kill(signal.SIGTERM)  # the second one is a cold shutdown
    first.wait(20)  # exits (raises TimeoutExpired otherwise)
    assert queue_state(connection, job) == ('queued', 1)
    assert reserved(connection, 'w1') == []


def queue_state(connection, job):
    return status(job), int(connection.hget(job.key, 'acklate_redeliveries') or 0)


def test_simple_worker_redelivers_and_keeps_long_jobs_alive(connection, workers):
    queue = Queue(connection=connection)
    long_job = queue.enqueue(jobs.idempotent_job, 5)
    workers.start('s1', worker_class='rq_acklate.LateAckSimpleWorker')
    workers.start('s2', worker_class='rq_acklate.LateAckSimpleWorker')
    wait_status(long_job, JobStatus.FINISHED, timeout=30)
    assert len(started_runs(connection, long_job.id)) == 1  # 5 s > 2 s TTL: the thread kept it alive

    killed = queue.enqueue(jobs.idempotent_job, 3)
    wait_started(connection, killed)
    runner = next(w for w in workers.started if started_runs(connection, killed.id)[0]['pid'] == w.pid)
    runner.kill()
    wait_status(killed, JobStatus.FINISHED)
    starts = started_runs(connection, killed.id)
    assert [r['redeliveries'] for r in starts] == [0, 1]
    assert starts[1]['pid'] != runner.pid
    assert len(finished_runs(connection, killed.id)) == 1


@pytest.mark.parametrize(
    ('worker_class', 'job_func'),
    [
        ('workers.DropConnectionBeforeSuccessExecWorker', jobs.idempotent_job),
        ('workers.DropConnectionBeforeSuccessExecWorker', jobs.plain_job),
        ('workers.DropConnectionBeforeSuccessExecSimpleWorker', jobs.late_job),
    ],
    ids=['idempotent', 'early-ack', 'simple-worker'],
)
def test_a_retried_success_transaction_still_removes_the_execution(connection, workers, worker_class, job_func):
    """RQ (2.12) retries its success transaction after a WatchError (the connection was lost while
    WATCHing), but it had already let go of the execution, so the retry left it in the
    StartedJobRegistry, and RQ's registry cleanup failed the *finished* job as abandoned ~90 s later
    (found by the long chaos soak: an idempotent job that ran once, finished, then was failed)."""
    queue = Queue(connection=connection)
    job = queue.enqueue(job_func)
    connection.sadd('test:drop-exec', job.id)
    workers.start('w1', worker_class=worker_class)
    wait_status(job, JobStatus.FINISHED)
    assert connection.scard('test:drop-exec') == 0  # the connection really was dropped before EXEC
    assert queue.started_job_registry.get_job_ids() == []
    assert connection.zcard(f'rq:executions:{job.id}') == 0
    queue.started_job_registry.cleanup(timestamp=time.time() + 10**6)  # as if the executions had expired
    assert status(job) == JobStatus.FINISHED
    assert len(started_runs(connection, job.id)) == 1
    assert job.latest_result().type == job.latest_result().Type.SUCCESSFUL
    wait_until(lambda: reserved(connection, 'w1') == [], what='the ack')
