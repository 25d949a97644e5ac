"""What the late-ack workers are doing, read from Redis: for ``rq-acklate status`` and dashboards."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from redis import Redis
from rq.utils import as_text

from . import keys
from .keys import WorkerKeys
from .reservations import StartRecord
from .settings import Settings


@dataclass
class ReservedJob:
    job_id: str
    status: str  # RQ's status of the job ('' when its hash is gone)
    started: bool  # its start record exists: it began on this worker
    age: float | None  # seconds since the worker reserved it (known once it started)
    redeliveries: int
    policy: str  # e.g. 'LI3' (late ack, idempotent, 3 redeliveries); '' before the start


@dataclass
class WorkerState:
    name: str
    state: str  # 'alive', 'late' (lease not renewed for two heartbeats: paused or overloaded), 'dead'
    dead_because: str
    heartbeat_age: float | None  # seconds since the lease was last renewed
    queues: list[str]
    pid: str
    hostname: str
    worker_class: str
    reserved: list[ReservedJob] = field(default_factory=list)


@dataclass
class ClusterStatus:
    workers: list[WorkerState]
    counters: dict[str, int]
    quarantined: dict[str, str]

    @property
    def dead_with_reservations(self) -> list[WorkerState]:
        return [w for w in self.workers if w.state == 'dead' and w.reserved]

    @property
    def healthy(self) -> bool:
        return not self.dead_with_reservations

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {'healthy': self.healthy}


def collect(connection: Redis, settings: Settings | None = None) -> ClusterStatus:
    """Read the state of every registered late-ack worker, its reservations, and the counters.

    A worker is *late* when its lease was not renewed for two of its heartbeat intervals: paused,
    or too busy to renew. ``settings`` gives the interval for workers that did not record theirs.
    """
    settings = settings or Settings.load(kwargs={}, django={})
    names = sorted(as_text(n) for n in connection.smembers(keys.WORKERS))
    now = time.time()
    with connection.pipeline(transaction=False) as pipe:
        for name in names:
            wk = WorkerKeys(name)
            pipe.get(wk.alive)
            pipe.hgetall(wk.info)
            pipe.hget(wk.rq_worker, 'death')
            pipe.lrange(wk.reserved, 0, -1)
            pipe.hgetall(wk.reservations)
        pipe.hgetall(keys.STATS)
        pipe.hgetall(keys.QUARANTINE)
        results = pipe.execute()
    workers = []
    job_ids: list[str] = []
    for index, name in enumerate(names):
        lease, info, death, reserved, records = results[5 * index : 5 * index + 5]
        info = {as_text(k): as_text(v) for k, v in info.items()}
        age = _age(lease, now)
        interval = _float(info.get('heartbeat_interval')) or settings.heartbeat_interval
        if lease is None:
            state, because = 'dead', 'liveness lease expired'
        elif death is not None:
            state, because = 'dead', 'RQ recorded its death'
        elif age is not None and age > 2 * interval:
            state, because = 'late', ''
        else:
            state, because = 'alive', ''
        worker = WorkerState(
            name=name,
            state=state,
            dead_because=because,
            heartbeat_age=age,
            queues=[q for q in info.get('queues', '').split(',') if q],
            pid=info.get('pid', ''),
            hostname=info.get('hostname', ''),
            worker_class=info.get('class', ''),
        )
        decoded = {as_text(k): StartRecord.decode(v) for k, v in records.items()}
        for raw_id in reserved:
            job_id = as_text(raw_id)
            record = decoded.get(job_id)
            worker.reserved.append(
                ReservedJob(
                    job_id=job_id,
                    status='',
                    started=record is not None,
                    age=round(now - record.reserved_at, 1) if record else None,
                    redeliveries=0,
                    policy=record.policy.to_code() if record else '',
                )
            )
            job_ids.append(job_id)
        workers.append(worker)
    if job_ids:
        with connection.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.hmget(keys.rq_job(job_id), 'status', keys.REDELIVERIES_FIELD)
            fields = iter(pipe.execute())
        for worker in workers:
            for job in worker.reserved:
                status, redeliveries = next(fields)
                job.status = as_text(status) if status else ''
                job.redeliveries = int(redeliveries or 0)
    counters = {as_text(k): int(v) for k, v in results[-2].items()}
    quarantined = {as_text(k): as_text(v) for k, v in results[-1].items()}
    return ClusterStatus(workers, counters, quarantined)


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None


def _age(lease: bytes | None, now: float) -> float | None:
    if lease is None:
        return None
    try:
        return round(max(0.0, now - float(as_text(lease))), 1)
    except ValueError:
        return None
