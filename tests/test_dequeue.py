"""The reserving dequeue, driven in-process through RQ's own entry point (queue_class.dequeue_any)."""

from __future__ import annotations

import threading
import time

import pytest
from rq import Queue
from rq.exceptions import DequeueTimeout

from rq_acklate import LateAckWorker, keys

import jobs
from states import queue_ids, reserved_ids


@pytest.fixture
def worker_on(connection):
    made = []

    def make(_connection, *queues, **kwargs):
        made.append(LateAckWorker(list(queues), name='w', connection=connection, **kwargs))
        return made[-1]

    yield make
    for worker in made:  # what teardown does: the doorbell threads go quiet
        if worker._doorbells is not None:
            worker._doorbells.stop()


def dequeue(worker, timeout=None):
    return worker.queue_class.dequeue_any(
        worker._ordered_queues, timeout, connection=worker.connection, job_class=worker.job_class
    )


def test_reserves_in_priority_order_and_atomically(connection, worker_on):
    high, low = Queue('high', connection=connection), Queue('low', connection=connection)
    low_job = low.enqueue(jobs.plain_job)
    high_job = high.enqueue(jobs.plain_job)
    worker = worker_on(connection, 'high', 'low')

    job, queue = dequeue(worker)

    assert (job.id, queue.name) == (high_job.id, 'high')
    assert reserved_ids(connection, 'w') == [high_job.id]
    assert high.get_job_ids() == [] and low.get_job_ids() == [low_job.id]


def test_returns_none_when_empty_without_timeout(connection, worker_on):
    assert dequeue(worker_on(connection, 'a', 'b')) is None


def test_raises_dequeue_timeout_after_the_timeout(connection, worker_on):
    worker = worker_on(connection, 'a', 'b')
    started = time.monotonic()
    with pytest.raises(DequeueTimeout):
        dequeue(worker, timeout=1)
    assert 0.9 < time.monotonic() - started < 2


@pytest.mark.parametrize(
    ('queues', 'target', 'bound'), [(['a'], 'a', 0.1), (['a', 'b'], 'a', 0.1), (['a', 'b', 'c'], 'c', 0.1)]
)
def test_a_blocked_worker_picks_up_new_jobs(connection, worker_on, queues, target, bound):
    worker = worker_on(connection, *queues)
    enqueued = {}

    def enqueue_later():
        time.sleep(0.4)
        enqueued['at'] = time.monotonic()
        enqueued['job'] = Queue(target, connection=connection).enqueue(jobs.plain_job)

    threading.Thread(target=enqueue_later).start()
    job, queue = dequeue(worker, timeout=5)
    waited = time.monotonic() - enqueued['at']
    assert (job.id, queue.name) == (enqueued['job'].id, target)
    assert waited < bound


def test_a_job_whose_reply_was_lost_is_put_back_first(connection, worker_on):
    queue = Queue('default', connection=connection)
    lost = queue.enqueue(jobs.plain_job)
    other = queue.enqueue(jobs.plain_job)
    connection.lmove('rq:queue:default', 'rq:acklate:reserved:w', 'LEFT', 'RIGHT')  # moved; reply never came
    worker = worker_on(connection, 'default')

    job, _ = dequeue(worker)

    assert job.id == lost.id
    assert reserved_ids(connection, 'w') == [lost.id]
    assert queue_ids(connection) == [other.id]


def test_vanished_jobs_are_skipped(connection, worker_on):
    queue = Queue('default', connection=connection)
    gone = queue.enqueue(jobs.plain_job)
    kept = queue.enqueue(jobs.plain_job)
    connection.delete(gone.key)

    job, _ = dequeue(worker_on(connection, 'default'))

    assert job.id == kept.id
    assert reserved_ids(connection, 'w') == [kept.id]


def test_unreadable_job_is_quarantined_not_lost(connection, worker_on):
    queue = Queue('default', connection=connection)
    broken = queue.enqueue(jobs.plain_job)
    kept = queue.enqueue(jobs.plain_job)
    connection.hset(broken.key, 'created_at', 'not a date')

    job, _ = dequeue(worker_on(connection, 'default'))

    assert job.id == kept.id
    assert connection.hexists(keys.QUARANTINE, broken.id)
    assert connection.exists(broken.key)  # the job itself is kept for inspection
    assert reserved_ids(connection, 'w') == [kept.id]


def test_redelivery_count_reaches_the_job_meta(connection, worker_on):
    queue = Queue('default', connection=connection)
    enqueued = queue.enqueue(jobs.idempotent_job)
    connection.hset(enqueued.key, keys.REDELIVERIES_FIELD, 2)

    job, _ = dequeue(worker_on(connection, 'default'))

    from rq_acklate import redeliveries

    assert redeliveries(job) == 2
