"""Signals fire with their documented payloads; a receiver that raises breaks nothing."""

from __future__ import annotations

import json

from rq import Queue

from rq_acklate import keys, recover, signals

import jobs
from helpers import wait_until
from states import dead_worker, reserve, start


def test_worker_signals_fire_and_a_raising_receiver_breaks_nothing(connection, workers):
    job = Queue(connection=connection).enqueue(jobs.idempotent_job)
    worker = workers.start('w1', worker_class='workers.SignalRecordingWorker')
    wait_until(lambda: job.get_status(refresh=True) == 'finished', what='the job to finish')
    wait_until(lambda: connection.llen('test:signals') >= 2, what='the signals')
    events = [json.loads(e) for e in connection.lrange('test:signals', 0, -1)]
    reserved, acked = events[0], events[1]
    assert reserved == {
        'sender': 'w1',
        'job_id': job.id,
        'queue': 'default',
        'worker_name': 'w1',
        'redeliveries': 0,
    }
    assert acked == {'sender': 'w1', 'job_id': job.id, 'queue': 'default', 'worker_name': 'w1'}
    assert 'a receiver that always raises' in worker.log()  # logged...
    assert worker.process.poll() is None  # ...and the worker goes on
    assert connection.hget(keys.STATS, 'acked') == b'1'


def test_recovery_signals_carry_their_payloads(connection):
    received: list[tuple[str, dict]] = []

    def record(name):
        def receiver(sender, **payload):
            received.append((name, payload))

        return receiver

    def explode(sender, **payload):
        raise RuntimeError('boom')

    receivers = {s.name: record(s.name) for s in signals.ALL_SIGNALS}
    for s in signals.ALL_SIGNALS:
        s.connect(explode)
        s.connect(receivers[s.name])
    try:
        queue = Queue(connection=connection)
        worker = dead_worker(connection, 'dead')
        idem = queue.enqueue(jobs.idempotent_job)
        start(worker, reserve(worker))
        lost = queue.enqueue(jobs.late_job)
        start(worker, reserve(worker))
        poison = queue.enqueue(jobs.poison_job)
        connection.hset(poison.key, keys.REDELIVERIES_FIELD, 2)
        start(worker, reserve(worker))

        report = recover(connection)
    finally:
        for s in signals.ALL_SIGNALS:
            s.disconnect(explode)
            s.disconnect(receivers[s.name])

    assert report.counts() == {'requeued': 1, 'failed': 2}
    by_name = {}
    for name, payload in received:
        by_name.setdefault(name, []).append(payload)
    assert by_name['job_requeued'] == [
        {
            'job_id': idem.id,
            'queue': 'default',
            'worker_name': 'dead',
            'redeliveries': 1,
            'reason': 'worker-lost',
        }
    ]
    assert by_name['job_worker_lost'] == [
        {'job_id': lost.id, 'queue': 'default', 'worker_name': 'dead', 'reason': 'worker-lost'}
    ]
    assert by_name['job_poisoned'] == [
        {
            'job_id': poison.id,
            'queue': 'default',
            'worker_name': 'dead',
            'redeliveries': 3,
            'max_redeliveries': 2,
        }
    ]
    assert by_name['worker_recovered'] == [{'worker_name': 'dead', 'counts': {'requeued': 1, 'failed': 2}}]
