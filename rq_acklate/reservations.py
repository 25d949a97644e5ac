"""A worker's reservations: taking jobs atomically, recording their start, and acking them.

Life of a reservation (``W`` is the worker, ``J`` the job):

1. **reserve**: ``J``'s id moves from its queue to ``rq:acklate:reserved:W`` in one command:
   ``reserve.lua`` tries every queue in priority order; a single-queue worker then waits with
   ``BLMOVE``, a multi-queue one with its doorbells (:mod:`rq_acklate.doorbells`). There is no
   moment at which ``J`` is in neither list. A reply lost on the network leaves
   ``J`` in ``W``'s list, where ``W`` finds it: ``reserve.lua`` refuses to reserve more while the
   list is not empty, and the ``LRANGE`` ``W`` adds to its next heartbeat spots it at once.
2. **start**: in the same ``MULTI`` in which RQ creates ``J``'s execution, ``W`` writes a
   :class:`StartRecord` (late ack) with ``J``'s policy and its ``started_at`` *before* this start.
   RQ rewrites ``started_at`` when the job really starts in the work horse, which is how recovery
   later tells "never ran" from "was running". An early-ack reservation is dropped in that second
   ``MULTI``, where RQ marks ``J`` started, so ``J`` is always either reserved or started.
3. **ack** (late ack only): after RQ stored ``J``'s outcome, ``ack.lua`` drops the reservation. It
   rides in the pipeline of RQ's next worker heartbeat, so it costs no round trip of its own.

Whatever is still reserved when ``W`` dies is settled by :mod:`rq_acklate.recovery`.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from redis import Redis
from redis.client import Pipeline
from rq.utils import as_text

from . import keys
from .keys import WorkerKeys
from .policy import Policy
from .scripts import Scripts


@dataclass(frozen=True)
class StartRecord:
    """What a worker writes next to a late-ack reservation when the job starts."""

    policy: Policy
    #: The job's ``started_at`` as stored before this start ('' when it never ran).
    previous_started_at: str
    #: When the worker took the job off its queue (Unix seconds).
    reserved_at: float

    def encode(self) -> str:
        return json.dumps(
            {'p': self.policy.to_code(), 's': self.previous_started_at, 't': round(self.reserved_at, 3)},
            separators=(',', ':'),
        )

    @classmethod
    def decode(cls, raw: str | bytes | None) -> StartRecord | None:
        """``None`` for a missing or unreadable record (recovery then uses the safe policy)."""
        if raw is None:
            return None
        text = as_text(raw)
        # Recovery decodes one record per job: read what encode() writes without the JSON parser.
        if exact := _ENCODED_RECORD.fullmatch(text):
            return cls(Policy.from_code(exact[1]), exact[2], float(exact[3]))
        try:
            data = json.loads(text)
            return cls(Policy.from_code(data['p']), str(data['s']), float(data['t']))
        except (ValueError, KeyError, TypeError):
            return None


#: The exact form :meth:`StartRecord.encode` writes, for a fast path; anything else goes to ``json``.
_ENCODED_RECORD = re.compile(r'\{"p":"([LE][I-]\d{1,9})","s":"([0-9A-Za-z:.+-]*)","t":(\d{1,12}(?:\.\d{1,17})?)\}')

#: What :meth:`Reservations.reserve` returns when the worker's reserved list is not empty.
NOT_EMPTY = 'not-empty'


class Reserved(NamedTuple):
    queue_key: str
    job_id: str
    #: True when the job is known to be the only one in the reserved list (``reserve.lua`` checked);
    #: False after a ``BLMOVE``, so the worker looks for a job whose reply was lost.
    alone: bool


class Reservations:
    """Redis operations on one worker's reservations."""

    def __init__(self, connection: Redis, worker_keys: WorkerKeys, scripts: Scripts) -> None:
        self.connection = connection
        self.keys = worker_keys
        self.scripts = scripts

    def reserve(
        self, queue_keys: Sequence[str], timeout: float | None, *, check_empty: bool = True
    ) -> Reserved | str | None:
        """Take the first job of the first non-empty queue (``reserve.lua``); when it is empty and a
        ``timeout`` is given (single-queue workers), block on it for up to that long (``BLMOVE``).

        Returns the :class:`Reserved` job, ``None`` when nothing came, or :data:`NOT_EMPTY` when the
        worker's list already holds jobs it never received (see ``reserve.lua``).
        """
        found = self.scripts.reserve(
            [self.keys.reserved, keys.WORKERS, *queue_keys], ['1' if check_empty else '0', self.keys.name]
        )
        if isinstance(found, bytes | str):
            return NOT_EMPTY
        if found:
            return Reserved(as_text(found[0]), as_text(found[1]), alone=check_empty)
        if timeout is None:
            return None
        # Redis accepts a fractional timeout; redis-py's annotation says int.
        job_id = self.connection.blmove(queue_keys[0], self.keys.reserved, timeout, 'LEFT', 'RIGHT')  # type: ignore[arg-type]
        # If the client retried a BLMOVE whose reply was lost, an earlier job sits in the list too.
        return Reserved(queue_keys[0], as_text(job_id), alone=False) if job_id is not None else None

    def record_start(self, pipeline: Pipeline, job_id: str, record: StartRecord | None) -> None:
        """Queue the start bookkeeping in RQ's first start transaction (the execution): store the
        start record of a late-ack job. An early-ack job keeps its reservation until
        :meth:`queue_early_ack`."""
        pipeline.hincrby(keys.STATS, 'reserved', 1)
        if record is not None:
            pipeline.hset(self.keys.reservations, job_id, record.encode())

    def queue_early_ack(self, pipeline: Pipeline, job_id: str) -> None:
        """Drop an early-ack reservation in the transaction in which RQ marks the job started, so
        the job is always either reserved (never started) or started."""
        pipeline.lrem(self.keys.reserved, 1, job_id)
        pipeline.hincrby(keys.STATS, 'acked', 1)

    def drop(self, job_id: str) -> None:
        """Give up a reservation this worker will not start (its job hash vanished or is unreadable)."""
        with self.connection.pipeline() as pipe:
            pipe.lrem(self.keys.reserved, 1, job_id)
            pipe.hdel(self.keys.reservations, job_id)
            pipe.execute()

    def ack_args(self, job_id: str) -> tuple[list[str], list[Any]]:
        return (
            [self.keys.reserved, self.keys.reservations, keys.rq_job(job_id), keys.STATS],
            [job_id, self.keys.name],
        )

    def queue_ack(self, pipeline: Pipeline, job_id: str) -> None:
        self.scripts.ack.queue_in(pipeline, *self.ack_args(job_id))

    def ack_result(self, job_id: str, result: Any) -> int:
        """1 acked, 0 taken over by recovery, -1 outcome not stored (kept reserved)."""
        return int(self.scripts.ack.retry_if_missing(result, *self.ack_args(job_id)))

    def queue_held_check(self, pipeline: Pipeline) -> None:
        pipeline.lrange(self.keys.reserved, 0, -1)

    def held(self) -> list[str]:
        return [as_text(job_id) for job_id in self.connection.lrange(self.keys.reserved, 0, -1)]

    def fence(self, job_id: str, ttl_ms: int, lease_value: str) -> bool:
        """True when ``job_id`` is still this worker's; then the lease is renewed for ``ttl_ms``."""
        return bool(self.scripts.fence([self.keys.alive, self.keys.reserved], [job_id, ttl_ms, lease_value]))

    def register(
        self, queue_names: Sequence[str], pid: int | None, hostname: str | None, cls: str, heartbeat_interval: float
    ) -> None:
        """Add the worker to the registry of late-ack workers, with what ``status`` shows of it."""
        with self.connection.pipeline() as pipe:
            pipe.sadd(keys.WORKERS, self.keys.name)
            pipe.hset(
                self.keys.info,
                mapping={
                    'queues': ','.join(queue_names),
                    'pid': str(pid or ''),
                    'hostname': hostname or '',
                    'class': cls,
                    'heartbeat_interval': str(heartbeat_interval),
                    'started_at': f'{time.time():.3f}',
                },
            )
            pipe.execute()

    def release_lease(self) -> None:
        self.connection.delete(self.keys.alive)

    def forget_if_idle(self) -> bool:
        """Leave the registry when this worker's lease is gone and it holds nothing."""
        return bool(
            self.scripts.forget_worker(
                [keys.WORKERS, self.keys.alive, self.keys.reserved, self.keys.reservations, self.keys.info],
                [self.keys.name],
            )
        )
