"""The recovery table, on state left by workers that died at each point of a job's life."""

from __future__ import annotations

import multiprocessing
import threading

import pytest
from rq import Queue, Retry
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry, StartedJobRegistry
from rq.results import Result
from rq.serializers import JSONSerializer

from rq_acklate import Settings, keys, recover
from rq_acklate.recovery import BATCH_SIZE, GROUP_SIZE, Recoverer

import jobs
from helpers import stats
from states import begin, dead_worker, queue_ids, reserve, reserved_ids, start


def outcome_of(report, job_id):
    matches = [o for o in report.outcomes if o.job_id == job_id]
    assert len(matches) == 1, report
    return matches[0]


def test_never_started_job_is_requeued_at_the_front(connection):
    queue = Queue(connection=connection)
    job = queue.enqueue(jobs.late_job)
    worker = dead_worker(connection, 'dead')
    reserve(worker)
    other = queue.enqueue(jobs.plain_job)
    assert queue_ids(connection) == [other.id]

    report = recover(connection)

    assert outcome_of(report, job.id).action == 'requeued'
    assert outcome_of(report, job.id).reason == 'never-started'
    assert queue_ids(connection) == [job.id, other.id]
    assert reserved_ids(connection, 'dead') == []
    assert job.get_status(refresh=True) == JobStatus.QUEUED
    assert connection.hget(job.key, keys.REDELIVERIES_FIELD) is None
    assert report.dead_workers == ['dead']


def test_never_started_after_start_transaction_is_requeued_and_leaves_no_wip_entry(connection):
    queue = Queue(connection=connection)
    job = queue.enqueue(jobs.late_job)
    worker = dead_worker(connection, 'dead')
    begin(worker, reserve(worker))
    assert connection.zcard('rq:wip:default') == 1

    report = recover(connection)

    assert outcome_of(report, job.id).action == 'requeued'
    assert outcome_of(report, job.id).reason == 'never-started'
    assert connection.zcard('rq:wip:default') == 0
    assert queue_ids(connection) == [job.id]


def test_started_idempotent_job_is_redelivered_and_rq_cleanup_leaves_it_alone(connection):
    queue = Queue(connection=connection)
    job = queue.enqueue(jobs.idempotent_job)
    worker = dead_worker(connection, 'dead')
    start(worker, reserve(worker))
    assert job.get_status(refresh=True) == JobStatus.STARTED

    report = recover(connection)

    outcome = outcome_of(report, job.id)
    assert (outcome.action, outcome.reason, outcome.redeliveries) == ('requeued', 'worker-lost', 1)
    assert queue_ids(connection) == [job.id]
    assert job.get_status(refresh=True) == JobStatus.QUEUED
    assert connection.hget(job.key, keys.REDELIVERIES_FIELD) == b'1'
    # RQ's own abandoned-job cleanup, far in the future, must not fail the requeued job (rq#2061).
    StartedJobRegistry('default', connection=connection).cleanup(timestamp=10**11)
    assert job.get_status(refresh=True) == JobStatus.QUEUED
    assert job.id not in FailedJobRegistry('default', connection=connection)
    assert stats(connection)['requeued'] == 1


def test_started_non_idempotent_job_fails_with_worker_lost_reason(connection):
    queue = Queue(connection=connection)
    job = queue.enqueue(jobs.late_job)
    worker = dead_worker(connection, 'dead')
    start(worker, reserve(worker))

    report = recover(connection)

    assert (outcome_of(report, job.id).action, outcome_of(report, job.id).reason) == ('failed', 'worker-lost')
    assert queue_ids(connection) == []
    assert job.get_status(refresh=True) == JobStatus.FAILED
    assert job.id in FailedJobRegistry('default', connection=connection)
    result = job.latest_result()
    assert result.type == Result.Type.FAILED
    assert 'worker lost' in result.exc_string and 'dead' in result.exc_string
    assert connection.zcard('rq:wip:default') == 0
    assert stats(connection)['worker_lost'] == 1


def test_idempotent_job_past_max_redeliveries_fails_as_poisoned(connection):
    queue = Queue(connection=connection)
    job = queue.enqueue(jobs.poison_job)  # max_redeliveries=2
    connection.hset(job.key, keys.REDELIVERIES_FIELD, 2)
    worker = dead_worker(connection, 'dead')
    start(worker, reserve(worker))

    report = recover(connection)

    assert (outcome_of(report, job.id).action, outcome_of(report, job.id).reason) == ('failed', 'poisoned')
    assert job.get_status(refresh=True) == JobStatus.FAILED
    assert 'max_redeliveries=2 exceeded' in job.latest_result().exc_string
    assert stats(connection)['poisoned'] == 1


@pytest.mark.parametrize('final', ['finished', 'failed', 'stopped', 'canceled', 'scheduled', 'deferred'])
def test_job_with_a_stored_outcome_is_only_dropped(connection, final):
    queue = Queue(connection=connection)
    job = queue.enqueue(jobs.idempotent_job)
    worker = dead_worker(connection, 'dead')
    start(worker, reserve(worker))
    connection.hset(job.key, 'status', final)  # the outcome was stored, the ack was not

    report = recover(connection)

    assert (outcome_of(report, job.id).action, outcome_of(report, job.id).reason) == ('dropped', final)
    assert job.get_status(refresh=True) == final
    assert queue_ids(connection) == []
    assert reserved_ids(connection, 'dead') == []


def test_job_requeued_by_rq_retry_before_the_ack_is_not_queued_twice(connection):
    queue = Queue(connection=connection)
    job = queue.enqueue(jobs.failing_job, retry=Retry(max=2))
    worker = dead_worker(connection, 'dead')
    start(worker, reserve(worker))
    job = Job.fetch(job.id, connection=connection)
    with connection.pipeline() as pipe:  # what RQ's failure handling does for a job with retries left
        job.retry(queue, pipe)
        pipe.execute()
    assert queue_ids(connection) == [job.id]

    report = recover(connection)

    assert outcome_of(report, job.id).action == 'dropped'
    assert queue_ids(connection) == [job.id]


def test_job_started_by_another_worker_is_left_alone(connection):
    queue = Queue(connection=connection)
    job = queue.enqueue(jobs.late_job)
    worker = dead_worker(connection, 'dead')
    reserve(worker)
    connection.hset(job.key, mapping={'status': 'started', 'worker_name': 'someone-else'})

    report = recover(connection)

    assert outcome_of(report, job.id).action == 'dropped'
    assert job.get_status(refresh=True) == JobStatus.STARTED


def test_bad_input_is_skipped_and_reported_without_losing_other_jobs(connection):
    queue = Queue(connection=connection)
    worker = dead_worker(connection, 'dead')
    good = queue.enqueue(jobs.idempotent_job)
    start(worker, reserve(worker))
    deleted = queue.enqueue(jobs.late_job)
    start(worker, reserve(worker))
    deleted.delete()
    bad_meta = queue.enqueue(jobs.idempotent_job)
    start(worker, reserve(worker))
    connection.hset(bad_meta.key, 'meta', b'\x80garbage')
    unimportable = queue.enqueue('no_such_module.task')
    start(worker, reserve(worker))
    json_queue = Queue('json', connection=connection, serializer=JSONSerializer)
    json_job = json_queue.enqueue(jobs.idempotent_job)
    json_worker = dead_worker(connection, 'dead-json', ['json'], serializer=JSONSerializer)
    start(json_worker, reserve(json_worker))
    connection.rpush('rq:acklate:reserved:dead', 'not a job id!', 'unknown-id')
    connection.hset('rq:acklate:reservations:dead', good.id, '{broken json')  # unreadable start record

    report = recover(connection)

    assert not report.errors
    assert outcome_of(report, good.id).action == 'failed'  # unreadable record: the safe policy
    assert outcome_of(report, deleted.id).reason == 'vanished'
    assert outcome_of(report, bad_meta.id).action == 'requeued'
    assert outcome_of(report, unimportable.id).action == 'failed'  # safe policy: not idempotent
    assert outcome_of(report, json_job.id).action == 'requeued'
    assert outcome_of(report, 'not a job id!').reason == 'garbage-id'
    assert outcome_of(report, 'unknown-id').reason == 'vanished'
    assert connection.hexists(keys.QUARANTINE, 'not a job id!')
    assert reserved_ids(connection, 'dead') == [] and reserved_ids(connection, 'dead-json') == []
    assert queue_ids(connection, 'json') == [json_job.id]
    assert Job.fetch(json_job.id, connection=connection, serializer=JSONSerializer).get_status() == 'queued'


def test_live_workers_are_not_touched(connection):
    queue = Queue(connection=connection)
    job = queue.enqueue(jobs.idempotent_job)
    worker = dead_worker(connection, 'alive')
    start(worker, reserve(worker))
    connection.set('rq:acklate:alive:alive', '1', px=10_000)

    report = recover(connection)

    assert report.dead_workers == [] and report.outcomes == []
    assert reserved_ids(connection, 'alive') == [job.id]


def test_rq_death_record_marks_a_worker_dead_even_with_a_lease(connection):
    queue = Queue(connection=connection)
    job = queue.enqueue(jobs.idempotent_job)
    worker = dead_worker(connection, 'gone')
    reserve(worker)
    connection.set('rq:acklate:alive:gone', '1', px=10_000)
    connection.hset('rq:worker:gone', 'death', '2026-01-01T00:00:00.000000Z')

    report = recover(connection)

    assert outcome_of(report, job.id).action == 'requeued'


def test_dry_run_changes_nothing(connection):
    queue = Queue(connection=connection)
    job = queue.enqueue(jobs.idempotent_job)
    worker = dead_worker(connection, 'dead')
    start(worker, reserve(worker))
    before = {k: connection.dump(k) for k in connection.keys('*')}

    report = recover(connection, dry_run=True)

    assert outcome_of(report, job.id).action == 'skipped'
    assert 'would requeue' in outcome_of(report, job.id).reason
    assert {k: connection.dump(k) for k in connection.keys('*')} == before


def test_dead_worker_holding_nothing_is_forgotten(connection):
    dead_worker(connection, 'empty')
    connection.hset('rq:acklate:worker:empty', 'queues', 'default')
    report = recover(connection)
    assert report.workers[0].forgotten
    assert not connection.sismember(keys.WORKERS, 'empty')
    assert not connection.exists('rq:acklate:worker:empty')


def test_many_dead_workers_are_settled_in_several_overlapped_groups(connection):
    """More dead workers than one group (recovery's I/O thread then reads and writes while the main
    thread plans), one of them holding more than one batch: every job settled exactly once."""
    queue = Queue(connection=connection)
    never_started, redelivered, failed = [], [], []
    for i in range(GROUP_SIZE * 2 + 7):
        worker = dead_worker(connection, f'dead-{i:03}')
        queue.enqueue(jobs.late_job)
        never_started.append(reserve(worker).id)
        queue.enqueue(jobs.idempotent_job)
        running = reserve(worker)
        start(worker, running)
        redelivered.append(running.id)
        if i % 10 == 0:
            queue.enqueue(jobs.late_job)
            running = reserve(worker)
            start(worker, running)
            failed.append(running.id)
    big = dead_worker(connection, 'dead-big')
    for _ in range(BATCH_SIZE + 5):
        queue.enqueue(jobs.late_job)
        never_started.append(reserve(big).id)
    holders = [n.decode() for n in connection.smembers(keys.WORKERS)]
    total = len(never_started) + len(redelivered) + len(failed)

    dry = recover(connection, dry_run=True)
    assert dry.counts() == {'skipped': total}
    assert queue.count == 0 and sum(len(reserved_ids(connection, n)) for n in holders) == total

    report = recover(connection)
    assert report.counts() == {'requeued': len(never_started) + len(redelivered), 'failed': len(failed)}
    assert sorted(o.job_id for o in report.outcomes) == sorted(never_started + redelivered + failed)
    assert sorted(queue.get_job_ids()) == sorted(never_started + redelivered)
    for job_id in redelivered:
        assert int(connection.hget(keys.rq_job(job_id), 'acklate_redeliveries')) == 1
    assert not any(connection.hexists(keys.rq_job(i), 'acklate_redeliveries') for i in never_started)
    counters = stats(connection)
    assert (counters['requeued'], counters['worker_lost']) == (len(never_started) + len(redelivered), len(failed))
    for job_id in failed:
        assert Job.fetch(job_id, connection=connection).get_status() == JobStatus.FAILED
    assert StartedJobRegistry('default', connection=connection).get_job_ids() == []
    assert connection.scard(keys.WORKERS) == 0
    assert not report.errors


def _recover_in_subprocess(url: str, results: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    from redis import Redis

    report = recover(Redis.from_url(url))
    results.put([(o.job_id, o.action) for o in report.outcomes])


def test_racing_recoverers_requeue_each_job_exactly_once(connection, redis_url):
    queue = Queue(connection=connection)
    worker = dead_worker(connection, 'dead')
    enqueued = [queue.enqueue(jobs.idempotent_job) for _ in range(60)]
    for _ in range(30):
        start(worker, reserve(worker))
    for _ in range(30):
        reserve(worker)  # the other half never started
    assert len(reserved_ids(connection, 'dead')) == 60

    barrier = threading.Barrier(4)
    thread_results: list = []

    def run() -> None:
        barrier.wait()
        thread_results.append(recover(connection))

    context = multiprocessing.get_context('fork')
    results: multiprocessing.Queue = context.Queue()  # type: ignore[type-arg]
    processes = [context.Process(target=_recover_in_subprocess, args=(redis_url, results)) for _ in range(2)]
    threads = [threading.Thread(target=run) for _ in range(4)]
    for p in processes:
        p.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    for p in processes:
        p.join(30)
    actions = [(o.job_id, o.action) for r in thread_results for o in r.outcomes]
    for _ in processes:
        actions.extend(results.get(timeout=5))

    requeued = [job_id for job_id, action in actions if action == 'requeued']
    assert sorted(requeued) == sorted(j.id for j in enqueued)
    assert sorted(queue_ids(connection)) == sorted(j.id for j in enqueued)
    redeliveries = [connection.hget(j.key, keys.REDELIVERIES_FIELD) for j in enqueued]
    assert sorted(redeliveries, key=str) == sorted([b'1'] * 30 + [None] * 30, key=str)


def test_recovery_lease_gives_one_scan_per_interval(connection):
    settings = Settings.load(kwargs={'recovery_interval': 5}, environ={}, django={})
    first = Recoverer(connection, settings, name='a')
    second = Recoverer(connection, settings, name='b')
    assert first.try_lease() is True
    assert second.try_lease() is False
    assert 4000 < connection.pttl(keys.RECOVERY_LEASE) <= 5000
