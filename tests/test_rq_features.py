"""Every RQ feature behaves with a late-ack worker exactly as with the RQ class it wraps.

Each scenario runs with the plain RQ class and with its late-ack counterpart, and asserts the same
outcome for both; for the late-ack class it also asserts that every reservation was acked (no
reserved list holds anything) and that no job was redelivered.
"""

from __future__ import annotations

import sys
import time
from datetime import timedelta

import pytest
from redis import Redis
from rq import Callback, Queue, Retry
from rq.command import send_kill_horse_command, send_shutdown_command, send_stop_job_command
from rq.job import Dependency
from rq.registry import ScheduledJobRegistry
from rq.suspension import resume, suspend
from rq.worker import Worker

from rq_acklate import ConfigurationError, keys

import jobs
from helpers import finished_runs, started_runs, stats, wait_until

FORKING = ['rq.Worker', 'rq_acklate.LateAckWorker']
ALL_CLASSES = [*FORKING, 'rq.SimpleWorker', 'rq_acklate.LateAckSimpleWorker']


def burst(workers, worker_class, *args, queues=('default',)):
    command = [sys.executable, '-m', 'rq.cli', 'worker', '--url', workers.redis_url, '-w', worker_class, '--burst']
    result = workers.run([*command, *args, *queues], timeout=90)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def assert_acked(connection: Redis, worker_class: str) -> None:
    """Nothing left reserved anywhere (a live worker acks right after RQ stores the outcome, so allow
    it a moment), and no job redelivered."""

    def nothing_reserved() -> bool:
        return all(connection.llen(key) == 0 for key in connection.scan_iter(f'{keys.PREFIX}reserved:*'))

    wait_until(nothing_reserved, timeout=5, what='every reservation to be acked')
    if 'acklate' in worker_class:
        assert stats(connection).get('requeued', 0) == 0
        assert stats(connection).get('reserved', 0) >= 1
    else:
        assert not connection.exists(keys.STATS)


@pytest.mark.parametrize('worker_class', ALL_CLASSES)
def test_retry_on_exception(connection, workers, worker_class):
    job = Queue(connection=connection).enqueue(jobs.failing_job, retry=Retry(max=2))
    burst(workers, worker_class)
    assert job.get_status(refresh=True) == 'failed'
    assert len(started_runs(connection, job.id)) == 3
    job.refresh()
    assert job.retries_left == 0
    assert_acked(connection, worker_class)


@pytest.mark.parametrize('worker_class', FORKING)
def test_retry_with_interval_schedules_the_job(connection, workers, worker_class):
    job = Queue(connection=connection).enqueue(jobs.failing_job, retry=Retry(max=1, interval=600))
    burst(workers, worker_class)
    assert job.get_status(refresh=True) == 'scheduled'
    assert job.id in ScheduledJobRegistry('default', connection=connection)
    assert len(started_runs(connection, job.id)) == 1
    assert_acked(connection, worker_class)


@pytest.mark.skipif(not hasattr(Worker, 'handle_job_retry'), reason='this RQ has no returned Retry')
@pytest.mark.parametrize('worker_class', FORKING)
def test_returned_retry(connection, workers, worker_class):
    job = Queue(connection=connection).enqueue(jobs.returns_retry)
    burst(workers, worker_class)
    assert job.get_status(refresh=True) == 'finished'
    assert job.return_value() == 'done after retries'
    assert len(started_runs(connection, job.id)) == 3
    assert_acked(connection, worker_class)


@pytest.mark.parametrize('worker_class', ALL_CLASSES)
def test_job_timeout_fails_the_job_and_is_not_a_worker_loss(connection, workers, worker_class):
    job = Queue(connection=connection).enqueue(jobs.idempotent_job, 10, job_timeout=1)
    burst(workers, worker_class)
    assert job.get_status(refresh=True) == 'failed'
    assert 'JobTimeoutException' in job.latest_result().exc_string
    assert len(started_runs(connection, job.id)) == 1
    assert_acked(connection, worker_class)


@pytest.mark.parametrize('worker_class', FORKING)
def test_dependencies_on_success_and_failure(connection, workers, worker_class):
    queue = Queue(connection=connection)
    first = queue.enqueue(jobs.idempotent_job)
    after_success = queue.enqueue(jobs.idempotent_job, depends_on=first)
    failing = queue.enqueue(jobs.failing_job)
    allowed = queue.enqueue(jobs.idempotent_job, depends_on=Dependency(jobs=[failing], allow_failure=True))
    blocked = queue.enqueue(jobs.idempotent_job, depends_on=failing)
    burst(workers, worker_class)
    assert [j.get_status(refresh=True) for j in (first, after_success, failing, allowed, blocked)] == [
        'finished', 'finished', 'failed', 'finished', 'deferred',
    ]  # fmt: skip
    assert started_runs(connection, first.id)[0]['at'] < started_runs(connection, after_success.id)[0]['at']
    assert_acked(connection, worker_class)


@pytest.mark.parametrize('worker_class', ALL_CLASSES)
def test_success_and_failure_callbacks(connection, workers, worker_class):
    queue = Queue(connection=connection)
    ok = queue.enqueue(jobs.returns, 42, on_success=Callback(jobs.record_success))
    bad = queue.enqueue(jobs.failing_job, on_failure=Callback(jobs.record_failure))
    burst(workers, worker_class)
    assert sorted(c.decode() for c in connection.lrange('test:callbacks', 0, -1)) == sorted(
        [f'success:{ok.id}:42', f'failure:{bad.id}:ValueError']
    )
    assert_acked(connection, worker_class)


@pytest.mark.parametrize('worker_class', ALL_CLASSES)
def test_results_and_their_ttls(connection, workers, worker_class):
    queue = Queue(connection=connection)
    kept = queue.enqueue(jobs.returns, 'kept', result_ttl=100)
    discarded = queue.enqueue(jobs.returns, 'gone', result_ttl=0)
    burst(workers, worker_class)
    assert kept.return_value(refresh=True) == 'kept'
    assert 0 < connection.ttl(kept.key) <= 100
    assert not connection.exists(discarded.key)  # result_ttl=0: RQ deletes the job, the ack copes
    assert len(finished_runs(connection, discarded.id)) == 1
    assert_acked(connection, worker_class)


@pytest.mark.parametrize('worker_class', FORKING)
def test_stop_job_command_stops_without_redelivery(connection, workers, worker_class):
    job = Queue(connection=connection).enqueue(jobs.idempotent_job, 30)
    worker = workers.start('w1', worker_class=worker_class)
    wait_until(lambda: started_runs(connection, job.id), what='the job to start')
    send_stop_job_command(connection, job.id)
    wait_until(lambda: job.get_status(refresh=True) == 'stopped', what='the job to stop')
    time.sleep(3)  # several recovery intervals: a job stopped on purpose is not redelivered
    assert len(started_runs(connection, job.id)) == 1
    assert job.get_status(refresh=True) == 'stopped'
    assert worker.process.poll() is None
    assert_acked(connection, worker_class)


@pytest.mark.parametrize('worker_class', FORKING)
def test_kill_horse_command_fails_the_job_without_redelivery(connection, workers, worker_class):
    job = Queue(connection=connection).enqueue(jobs.idempotent_job, 30)
    worker = workers.start('w1', worker_class=worker_class)
    wait_until(lambda: started_runs(connection, job.id), what='the job to start')
    send_kill_horse_command(connection, 'w1')
    wait_until(lambda: job.get_status(refresh=True) == 'failed', what='the job to fail')
    time.sleep(3)
    assert len(started_runs(connection, job.id)) == 1
    assert 'Work-horse terminated unexpectedly' in job.latest_result().exc_string
    assert worker.process.poll() is None
    assert_acked(connection, worker_class)


@pytest.mark.parametrize('worker_class', FORKING)
def test_shutdown_command_finishes_the_current_job_first(connection, workers, worker_class):
    queue = Queue(connection=connection)
    job = queue.enqueue(jobs.idempotent_job, 2)
    waiting = queue.enqueue(jobs.idempotent_job)
    worker = workers.start('w1', worker_class=worker_class)
    wait_until(lambda: started_runs(connection, job.id), what='the job to start')
    send_shutdown_command(connection, 'w1')
    assert worker.wait(30) == 0
    assert job.get_status(refresh=True) == 'finished'
    assert queue.get_job_ids() == [waiting.id]  # left queued, not reserved
    assert_acked(connection, worker_class)


@pytest.mark.parametrize('worker_class', FORKING)
def test_suspend_and_resume(connection, workers, worker_class):
    queue = Queue(connection=connection)
    running = queue.enqueue(jobs.idempotent_job, 1.5)
    workers.start('w1', worker_class=worker_class)  # `rq worker` refuses to start while suspended
    wait_until(lambda: started_runs(connection, running.id), what='the first job to start')
    suspend(connection)  # RQ looks at the flag between jobs
    waiting = queue.enqueue(jobs.idempotent_job)
    wait_until(lambda: running.get_status(refresh=True) == 'finished', what='the first job to finish')
    time.sleep(2)
    assert waiting.get_status(refresh=True) == 'queued'
    assert queue.get_job_ids() == [waiting.id]  # suspended: not taken, not reserved
    resume(connection)
    wait_until(lambda: waiting.get_status(refresh=True) == 'finished', what='the job to run after resume')
    assert_acked(connection, worker_class)


@pytest.mark.parametrize('worker_class', FORKING)
def test_scheduler_and_enqueue_in(connection, workers, worker_class):
    job = Queue(connection=connection).enqueue_in(timedelta(seconds=1), jobs.idempotent_job)
    assert job.get_status() == 'scheduled'
    workers.start('w1', worker_class=worker_class, args=['--with-scheduler'])
    wait_until(lambda: job.get_status(refresh=True) == 'finished', timeout=20, what='the scheduled job to run')
    assert len(started_runs(connection, job.id)) == 1
    assert_acked(connection, worker_class)


@pytest.mark.parametrize('worker_class', FORKING)
def test_max_jobs_leaves_the_rest_queued(connection, workers, worker_class):
    queue = Queue(connection=connection)
    enqueued = [queue.enqueue(jobs.idempotent_job) for _ in range(3)]
    burst(workers, worker_class, '--max-jobs', '2')
    assert [j.get_status(refresh=True) for j in enqueued] == ['finished', 'finished', 'queued']
    assert queue.get_job_ids() == [enqueued[2].id]
    assert_acked(connection, worker_class)


@pytest.mark.parametrize('worker_class', FORKING)
def test_max_idle_time(connection, workers, worker_class):
    worker = workers.start('w1', worker_class=worker_class, args=['--max-idle-time', '2'])
    started = time.monotonic()
    assert worker.wait(20) == 0
    assert 1.5 < time.monotonic() - started < 15


@pytest.mark.parametrize('worker_class', FORKING)
def test_at_front_and_unique_job_ids(connection, workers, worker_class):
    queue = Queue(connection=connection)
    first = queue.enqueue(jobs.idempotent_job, job_id='first-job')
    second = queue.enqueue(jobs.idempotent_job, job_id='second-job')
    urgent = queue.enqueue(jobs.idempotent_job, job_id='urgent-job', at_front=True)
    burst(workers, worker_class)
    order = sorted([first, second, urgent], key=lambda j: started_runs(connection, j.id)[0]['at'])
    assert [j.id for j in order] == ['urgent-job', 'first-job', 'second-job']
    assert_acked(connection, worker_class)


@pytest.mark.parametrize('worker_class', FORKING)
def test_canceled_and_deleted_jobs_never_run(connection, workers, worker_class):
    queue = Queue(connection=connection)
    canceled = queue.enqueue(jobs.idempotent_job)
    deleted = queue.enqueue(jobs.idempotent_job)
    kept = queue.enqueue(jobs.idempotent_job)
    canceled.cancel()
    deleted.delete()
    burst(workers, worker_class)
    assert started_runs(connection, canceled.id) == [] and started_runs(connection, deleted.id) == []
    assert canceled.get_status(refresh=True) == 'canceled'
    assert kept.get_status(refresh=True) == 'finished'
    assert_acked(connection, worker_class)


def test_canceled_while_reserved_is_acked_and_never_resurrected(connection, workers):
    """A worker holds the job when it is canceled: like RQ, which already popped it, the worker runs
    it; the reservation is acked; recovery never puts it back."""
    job = Queue(connection=connection).enqueue(jobs.idempotent_job)
    worker = workers.start('w1', worker_class='workers.PauseBeforeStartWorker', env={'ACKLATE_TEST_PAUSE': '2'})
    wait_until(lambda: connection.llen('test:paused:w1'), what='the worker to hold the job')
    job.cancel()
    wait_until(lambda: finished_runs(connection, job.id), what='the worker to run it anyway')
    wait_until(lambda: connection.llen('rq:acklate:reserved:w1') == 0, what='the ack')
    worker.kill()
    time.sleep(3)
    assert len(started_runs(connection, job.id)) == 1
    assert Queue(connection=connection).get_job_ids() == []


def test_worker_pool(connection, workers):
    queue = Queue(connection=connection)
    enqueued = [queue.enqueue(jobs.idempotent_job, 0.2) for _ in range(6)]
    command = [sys.executable, '-m', 'rq.cli', 'worker-pool', '--url', workers.redis_url]
    result = workers.run([*command, '-w', 'rq_acklate.LateAckWorker', '-n', '2', '--burst', 'default'], timeout=90)
    assert result.returncode == 0, result.stdout + result.stderr
    assert [j.get_status(refresh=True) for j in enqueued] == ['finished'] * 6
    assert len({started_runs(connection, j.id)[0]['pid'] for j in enqueued}) >= 1
    assert_acked(connection, 'rq_acklate.LateAckWorker')


@pytest.mark.parametrize(
    ('worker_class', 'args'),
    [
        ('workers.LateAckRoundRobinWorker', []),
        ('rq_acklate.LateAckWorker', ['--dequeue-strategy', 'round_robin']),
    ],
)
def test_round_robin_order_is_rqs_reservation_is_ours(connection, workers, worker_class, args):
    one, two = Queue('one', connection=connection), Queue('two', connection=connection)
    enqueued = [one.enqueue(jobs.idempotent_job) for _ in range(3)] + [
        two.enqueue(jobs.idempotent_job) for _ in range(3)
    ]
    burst(workers, worker_class, *args, queues=('one', 'two'))
    order = sorted(enqueued, key=lambda j: started_runs(connection, j.id)[0]['at'])
    assert [j.origin for j in order] == ['one', 'two', 'one', 'two', 'one', 'two']
    assert_acked(connection, 'rq_acklate.LateAckWorker')


def test_random_order_worker(connection, workers):
    queues = [Queue(name, connection=connection) for name in ('a', 'b', 'c')]
    enqueued = [q.enqueue(jobs.idempotent_job) for q in queues for _ in range(3)]
    burst(workers, 'workers.LateAckRandomWorker', queues=('a', 'b', 'c'))
    assert [j.get_status(refresh=True) for j in enqueued] == ['finished'] * 9
    assert_acked(connection, 'rq_acklate.LateAckWorker')


def test_spawn_worker_is_refused_with_a_clear_error(connection):
    rq_worker = pytest.importorskip('rq.worker')
    if not hasattr(rq_worker, 'SpawnWorker'):
        pytest.skip('this RQ has no SpawnWorker')
    from rq_acklate import LateAckWorkerMixin

    class LateAckSpawnWorker(LateAckWorkerMixin, rq_worker.SpawnWorker):
        pass

    with pytest.raises(ConfigurationError, match="does not support RQ's SpawnWorker"):
        LateAckSpawnWorker(['default'], connection=connection)
