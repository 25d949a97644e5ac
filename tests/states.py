"""Build the Redis state a late-ack worker leaves behind when it dies at a given point, by driving the
worker's real code paths in-process (reserve, start transaction, RQ's start in the horse) and then
simply not going on: no lease, no ack. Real-process deaths are in test_worker_deaths.py."""

from __future__ import annotations

import time
from typing import Any

from redis import Redis
from rq import Queue
from rq.job import Job

from rq_acklate import LateAckWorker, keys
from rq_acklate.worker import HeldJob


def dead_worker(connection: Redis, name: str, queues: list[str] | None = None, **kwargs: Any) -> LateAckWorker:
    worker = LateAckWorker(queues or ['default'], name=name, connection=connection, **kwargs)
    connection.sadd(keys.WORKERS, name)
    return worker


def reserve(worker: LateAckWorker) -> Job:
    """Reserve the next job as the worker's dequeue does. A real worker holds one job at a time (and
    treats anything else in its list as a lost reply); these dead workers may hold many."""
    found = worker._reservations.reserve([q.key for q in worker.queues], None, check_empty=False)
    assert found is not None and not isinstance(found, str), 'nothing to reserve'
    job, raw = worker._load_reserved_job(found.job_id, found.queue_key, worker.job_class, worker.serializer)
    assert job is not None
    worker._held = HeldJob(job.id, job.origin, (raw.get(b'started_at') or b'').decode(), time.time(), 0)
    return job


def begin(worker: LateAckWorker, job: Job) -> None:
    """The worker's start transaction (RQ's prepare_execution + the start record), not the horse yet."""
    held = worker._held
    assert held is not None and held.job_id == job.id
    held.policy = worker._acklate_policies.resolve(job)
    worker._start_pending = True
    worker.prepare_execution(job)


def start(worker: LateAckWorker, job: Job) -> None:
    """Up to the moment the horse runs the function: RQ marks the job started."""
    begin(worker, job)
    worker.prepare_job_execution(job)


def reserved_ids(connection: Redis, name: str) -> list[str]:
    return [i.decode() for i in connection.lrange(f'rq:acklate:reserved:{name}', 0, -1)]


def queue_ids(connection: Redis, queue: str = 'default') -> list[str]:
    return Queue(queue, connection=connection).get_job_ids()
