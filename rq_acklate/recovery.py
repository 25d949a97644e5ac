"""Recovery: settle the reservations of workers that died, and of a worker's own lost replies.

For each job still in a dead worker's reserved list, :func:`decide` picks one action from a snapshot
of the job hash and the reservation's start record; ``settle.lua`` then re-checks the snapshot and
applies the action atomically, removing the reservation first so that racing recoverers act once.

=======================================================  ==========================================
job in the dead worker's reserved list                   action
=======================================================  ==========================================
never started (any policy), still ``queued``             requeue at the front of its queue
started here, late ack and idempotent                    requeue and count a redelivery; past
                                                         ``max_redeliveries``: fail as poisoned
started here, late ack, not idempotent                   fail with a worker-lost reason
finished / failed / stopped / canceled / requeued or     drop the reservation only
scheduled by RQ / started by another worker / deleted
=======================================================  ==========================================

Recovery reads only Redis hashes: it never imports or unpickles user code. One worker per
``recovery_interval`` holds ``rq:acklate:recovery-lease`` and scans every registered worker, so the
cluster-wide cost per interval is O(workers). Work is done in batches (every script handles one
job), so Redis is never blocked by a long script.
"""

from __future__ import annotations

import logging
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from redis import Redis
from rq.defaults import DEFAULT_FAILURE_TTL
from rq.job import Job
from rq.queue import Queue
from rq.results import Result
from rq.serializers import resolve_serializer
from rq.utils import as_text, now, utcformat

from . import keys, signals
from .keys import WorkerKeys
from .policy import SAFE_POLICY, Policy
from .reservations import StartRecord
from .scripts import Scripts
from .settings import Settings

logger = logging.getLogger('rq_acklate.recovery')

#: RQ's own rule for job ids (``rq.job.JOB_ID_PATTERN`` in 2.x).
_JOB_ID = re.compile(r'[A-Za-z0-9_-]+')
_FINAL_OR_ELSEWHERE = ('finished', 'failed', 'stopped', 'canceled', 'scheduled', 'deferred')
BATCH_SIZE = 200


@dataclass(frozen=True)
class JobSnapshot:
    """The fields of RQ's job hash that recovery decides on."""

    job_id: str
    exists: bool
    status: str = ''
    origin: str = ''
    started_at: str = ''
    worker_name: str = ''
    failure_ttl: int | None = None
    redeliveries: int = 0

    @classmethod
    def from_hmget(cls, job_id: str, values: Sequence[Any]) -> JobSnapshot:
        status, origin, started_at, worker_name, failure_ttl, redeliveries = (
            as_text(v) if v is not None else None for v in values
        )
        if status is None and origin is None:
            return cls(job_id, exists=False)
        return cls(
            job_id,
            exists=True,
            status=status or '',
            origin=origin or '',
            started_at=started_at or '',
            worker_name=worker_name or '',
            failure_ttl=_int_or_none(failure_ttl),
            redeliveries=_int_or_none(redeliveries) or 0,
        )


SNAPSHOT_FIELDS = ('status', 'origin', 'started_at', 'worker_name', 'failure_ttl', keys.REDELIVERIES_FIELD)


@dataclass(frozen=True)
class Decision:
    action: str  # 'requeue' | 'fail' | 'drop'
    reason: str  # stable, short: 'never-started', 'worker-lost', 'poisoned', 'finished', ...
    counter: str = ''
    count_redelivery: bool = False
    failure_text: str = ''
    quarantine: str = ''
    max_redeliveries: int = 0


def decide(
    snapshot: JobSnapshot,
    record: StartRecord | None,
    worker_name: str,
    default_max_redeliveries: int,
    *,
    loss: str = 'worker-lost',
) -> Decision:
    """What to do with a job left in ``worker_name``'s reserved list (see the module table)."""
    job_id = snapshot.job_id
    if not _JOB_ID.fullmatch(job_id):
        return Decision('drop', 'garbage-id', 'quarantined', quarantine='not an RQ job id')
    if not snapshot.exists:
        return Decision('drop', 'vanished', 'dropped')
    status = snapshot.status
    if record is not None:
        started_here = snapshot.started_at != record.previous_started_at
    else:
        started_here = status == 'started' and snapshot.worker_name == worker_name
    if not started_here:
        if status != 'queued':
            return Decision('drop', status or 'no-status', 'dropped')
        if not snapshot.origin:
            return Decision('drop', 'no-origin', 'quarantined', quarantine='job hash has no origin queue')
        return Decision('requeue', 'never-started', 'requeued')
    if status != 'started' or snapshot.worker_name != worker_name:
        # RQ stored an outcome (or requeued/scheduled it through Retry) before the ack.
        return Decision('drop', status if status in _FINAL_OR_ELSEWHERE else 'settled-by-rq', 'dropped')
    policy = (
        record.policy
        if record is not None
        else Policy(SAFE_POLICY.late_ack, SAFE_POLICY.idempotent, default_max_redeliveries)
    )
    if not policy.late_ack:
        return Decision('drop', 'early-ack', 'dropped')  # RQ's abandoned-job handling owns it
    if not snapshot.origin:
        return Decision('drop', 'no-origin', 'quarantined', quarantine='job hash has no origin queue')
    if policy.idempotent:
        if snapshot.redeliveries + 1 > policy.max_redeliveries:
            return Decision(
                'fail',
                'poisoned',
                'poisoned',
                max_redeliveries=policy.max_redeliveries,
                failure_text=(
                    f'rq-acklate: poisoned: the job was lost with its worker '
                    f'{snapshot.redeliveries + 1} times (last: {worker_name}, {loss}); '
                    f'max_redeliveries={policy.max_redeliveries} exceeded, so it is failed instead of '
                    'being redelivered again'
                ),
            )
        return Decision('requeue', loss, 'requeued', count_redelivery=True)
    return Decision(
        'fail',
        loss,
        'worker_lost',
        failure_text=(
            f'rq-acklate: worker lost: worker {worker_name} stopped ({loss}) while the job was running. '
            'The job is not marked idempotent, so it was not run again; requeue it by hand if that is safe.'
        ),
    )


@dataclass
class JobOutcome:
    job_id: str
    queue: str
    action: str  # 'requeued' | 'failed' | 'dropped' | 'skipped' (would have: dry run)
    reason: str
    redeliveries: int = 0
    error: str = ''


@dataclass
class WorkerRecovery:
    worker_name: str
    outcomes: list[JobOutcome] = field(default_factory=list)
    forgotten: bool = False

    def counts(self) -> dict[str, int]:
        return dict(Counter(o.action for o in self.outcomes))


@dataclass
class RecoveryReport:
    """What one recovery pass did (or, with ``dry_run``, would do)."""

    dry_run: bool = False
    checked_workers: int = 0
    dead_workers: list[str] = field(default_factory=list)
    workers: list[WorkerRecovery] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    duration: float = 0.0

    @property
    def outcomes(self) -> list[JobOutcome]:
        return [o for w in self.workers for o in w.outcomes]

    def counts(self) -> dict[str, int]:
        return dict(Counter(o.action for o in self.outcomes))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {'counts': self.counts()}


class Recoverer:
    """Settles reservations. Used by workers (periodically, at startup, for their own lost replies)
    and by :func:`recover` / ``rq-acklate recover``."""

    def __init__(
        self,
        connection: Redis,
        settings: Settings | None = None,
        *,
        serializer: Any = None,
        name: str = 'recoverer',
        between_batches: Callable[[], None] | None = None,
    ) -> None:
        self.connection = connection
        self.settings = settings or Settings.load(kwargs={}, django={})
        self.serializer = resolve_serializer(serializer)
        self.name = name
        self.scripts = Scripts(connection)
        self.between_batches = between_batches

    # -- scanning -------------------------------------------------------------------------------

    def registered_workers(self) -> list[str]:
        return sorted(as_text(n) for n in self.connection.smembers(keys.WORKERS))

    def dead_workers(self, names: Iterable[str]) -> list[str]:
        """Workers whose lease is gone, or whose RQ worker key records a death."""
        names = list(names)
        dead = []
        for chunk in _chunks(names, 500):
            with self.connection.pipeline(transaction=False) as pipe:
                for name in chunk:
                    wk = WorkerKeys(name)
                    pipe.exists(wk.alive)
                    pipe.hexists(wk.rq_worker, 'death')
                results = pipe.execute()
            for i, name in enumerate(chunk):
                alive, died = results[2 * i], results[2 * i + 1]
                if not alive or died:
                    dead.append(name)
        return dead

    def try_lease(self) -> bool:
        """Take the cluster-wide recovery lease for one interval; False if another worker holds it."""
        ttl_ms = max(100, int(self.settings.recovery_interval * 1000) - 50)
        return bool(self.connection.set(keys.RECOVERY_LEASE, self.name, nx=True, px=ttl_ms))

    def recover(
        self, *, dry_run: bool = False, worker_names: Iterable[str] | None = None, exclude: Iterable[str] = ()
    ) -> RecoveryReport:
        """One pass over the registered (or the given) workers: settle what the dead ones hold."""
        started = time.monotonic()
        report = RecoveryReport(dry_run=dry_run)
        names = list(worker_names) if worker_names is not None else self.registered_workers()
        names = [n for n in names if n not in set(exclude)]
        report.checked_workers = len(names)
        report.dead_workers = self.dead_workers(names)
        for name in report.dead_workers:
            try:
                report.workers.append(self.recover_worker(name, require_dead=True, dry_run=dry_run))
            except Exception as exc:  # keep going: one bad worker must not block the others
                logger.exception('rq-acklate: recovery of worker %s failed', name)
                report.errors.append(f'{name}: {type(exc).__name__}: {exc}')
            if self.between_batches is not None:
                self.between_batches()
        report.duration = time.monotonic() - started
        return report

    # -- one worker ------------------------------------------------------------------------------

    def recover_worker(
        self,
        worker_name: str,
        *,
        require_dead: bool = True,
        dry_run: bool = False,
        exclude_ids: Iterable[str] = (),
        job_ids: Iterable[str] | None = None,
        loss: str = 'worker-lost',
        max_rounds: int = 50,
    ) -> WorkerRecovery:
        """Settle what ``worker_name`` holds: everything, or only ``job_ids``, minus ``exclude_ids``
        (a live worker's current job). ``loss`` names the cause in reasons and failure texts."""
        wk = WorkerKeys(worker_name)
        result = WorkerRecovery(worker_name)
        excluded = set(exclude_ids)
        only = set(job_ids) if job_ids is not None else None
        settled: set[str] = set()
        for _round in range(max_rounds):
            ids = [as_text(i) for i in self.connection.lrange(wk.reserved, 0, -1)]
            pending = [
                i for i in ids if i not in excluded and i not in settled and (only is None or i in only)
            ]
            if not pending:
                break
            progressed = False
            for batch in _chunks(pending, BATCH_SIZE):
                for outcome in self._settle_batch(wk, batch, require_dead, dry_run, loss):
                    if outcome.action == 'retry':
                        continue
                    if outcome.action == 'stop':
                        return result  # the worker is alive again: leave its jobs alone
                    settled.add(outcome.job_id)
                    result.outcomes.append(outcome)
                    progressed = True
                if self.between_batches is not None:
                    self.between_batches()
            if dry_run or not progressed:
                break
        if not dry_run and require_dead and not excluded and only is None:
            result.forgotten = self._forget(wk)
        if result.outcomes and not dry_run:
            signals.send(signals.worker_recovered, self, worker_name=worker_name, counts=result.counts())
        return result

    def _settle_batch(
        self, wk: WorkerKeys, job_ids: list[str], require_dead: bool, dry_run: bool, loss: str
    ) -> list[JobOutcome]:
        with self.connection.pipeline(transaction=False) as pipe:
            pipe.hmget(wk.reservations, job_ids)
            for job_id in job_ids:
                pipe.hmget(keys.rq_job(job_id), SNAPSHOT_FIELDS)
            raw = pipe.execute()
        raw_records = raw[0]
        snapshots = [
            JobSnapshot.from_hmget(job_id, values) for job_id, values in zip(job_ids, raw[1:], strict=True)
        ]
        plans = []
        for snapshot, raw_record in zip(snapshots, raw_records, strict=True):
            record = StartRecord.decode(raw_record)
            decision = decide(snapshot, record, wk.name, self.settings.max_redeliveries, loss=loss)
            plans.append((snapshot, raw_record, decision))
        if dry_run:
            return [
                JobOutcome(s.job_id, s.origin, 'skipped', f'would {d.action}: {d.reason}', s.redeliveries)
                for s, _r, d in plans
            ]

        now_dt = now()
        with self.connection.pipeline(transaction=False) as pipe:
            calls = []
            for snapshot, raw_record, decision in plans:
                keys_, args = self._settle_call(wk, snapshot, raw_record, decision, require_dead, now_dt)
                self.scripts.settle.queue_in(pipe, keys_, args)
                calls.append((keys_, args))
            results = pipe.execute(raise_on_error=False)

        outcomes = []
        for (snapshot, _raw_record, decision), (keys_, args), result in zip(
            plans, calls, results, strict=True
        ):
            try:
                status, redeliveries, dependents = self.scripts.settle.retry_if_missing(result, keys_, args)
            except Exception as exc:
                logger.error(
                    'rq-acklate: could not settle job %s of worker %s: %s', snapshot.job_id, wk.name, exc
                )
                outcomes.append(
                    JobOutcome(snapshot.job_id, snapshot.origin, 'error', decision.reason, error=str(exc))
                )
                continue
            status = as_text(status)
            if status == 'alive':
                return [*outcomes, JobOutcome(snapshot.job_id, snapshot.origin, 'stop', 'alive')]
            if status in ('changed', 'gone'):
                outcomes.append(JobOutcome(snapshot.job_id, snapshot.origin, 'retry', status))
                continue
            outcomes.append(self._after_settle(wk, snapshot, decision, int(redeliveries), int(dependents)))
        return outcomes

    def _settle_call(
        self,
        wk: WorkerKeys,
        snapshot: JobSnapshot,
        raw_record: Any,
        decision: Decision,
        require_dead: bool,
        now_dt: Any,
    ) -> tuple[list[str], list[Any]]:
        job_id, origin = snapshot.job_id, snapshot.origin
        keys_ = [
            wk.alive,
            wk.rq_worker,
            wk.reserved,
            wk.reservations,
            keys.rq_job(job_id),
            keys.rq_executions(job_id),
            keys.rq_queue(origin),
            keys.rq_wip(origin),
            keys.rq_failed(origin),
            keys.rq_results(job_id),
            keys.rq_job_dependents(job_id),
            keys.RQ_QUEUES,
            keys.STATS,
            keys.QUARANTINE,
        ]
        failure_ttl = snapshot.failure_ttl if snapshot.failure_ttl is not None else DEFAULT_FAILURE_TTL
        args: list[Any] = [
            job_id,
            decision.action,
            '1' if require_dead else '0',
            snapshot.status if snapshot.exists else '',
            snapshot.started_at,
            as_text(raw_record) if raw_record is not None else '',
            utcformat(now_dt),
            f'{now_dt.timestamp():.6f}',
            decision.counter,
            '1' if decision.count_redelivery else '0',
            decision.failure_text,
            str(failure_ttl),
            decision.quarantine and f'{decision.quarantine} (worker {wk.name}, {utcformat(now_dt)})',
        ]
        if decision.action == 'fail':
            result = Result(
                job_id,
                Result.Type.FAILED,
                connection=self.connection,
                exc_string=decision.failure_text,
                worker_name=wk.name,
                serializer=self.serializer,
            )
            for name, value in result.serialize().items():
                args.extend([name, value])
        return keys_, args

    def _after_settle(
        self, wk: WorkerKeys, snapshot: JobSnapshot, decision: Decision, redeliveries: int, dependents: int
    ) -> JobOutcome:
        job_id, queue = snapshot.job_id, snapshot.origin
        action = {'requeue': 'requeued', 'fail': 'failed', 'drop': 'dropped'}[decision.action]
        outcome = JobOutcome(job_id, queue, action, decision.reason, redeliveries)
        log = logger.warning if decision.action != 'drop' else logger.info
        log('rq-acklate: %s job %s of worker %s (%s)', action, job_id, wk.name, decision.reason)
        if decision.action == 'requeue':
            signals.send(
                signals.job_requeued,
                self,
                job_id=job_id,
                queue=queue,
                worker_name=wk.name,
                redeliveries=redeliveries,
                reason=decision.reason,
            )
        elif decision.reason == 'poisoned':
            signals.send(
                signals.job_poisoned,
                self,
                job_id=job_id,
                queue=queue,
                worker_name=wk.name,
                redeliveries=snapshot.redeliveries + 1,
                max_redeliveries=decision.max_redeliveries,
            )
        elif decision.action == 'fail':
            signals.send(
                signals.job_worker_lost,
                self,
                job_id=job_id,
                queue=queue,
                worker_name=wk.name,
                reason=decision.reason,
            )
        if decision.action == 'fail' and dependents:
            outcome.error = self._enqueue_dependents(job_id, queue)
        return outcome

    def _enqueue_dependents(self, job_id: str, queue_name: str) -> str:
        """Let RQ enqueue the dependents of a job recovery failed (those that allow failures)."""
        try:
            job = Job.fetch(job_id, connection=self.connection, serializer=self.serializer)
            Queue(queue_name, connection=self.connection, serializer=self.serializer).enqueue_dependents(job)
            return ''
        except Exception as exc:
            logger.exception('rq-acklate: could not enqueue the dependents of failed job %s', job_id)
            return f'dependents not enqueued: {type(exc).__name__}: {exc}'

    def _forget(self, wk: WorkerKeys) -> bool:
        try:
            return bool(
                self.scripts.forget_worker(
                    [keys.WORKERS, wk.alive, wk.reserved, wk.reservations, wk.info], [wk.name]
                )
            )
        except Exception:
            logger.exception('rq-acklate: could not unregister dead worker %s', wk.name)
            return False


def recover(
    connection: Redis,
    *,
    settings: Settings | None = None,
    serializer: Any = None,
    dry_run: bool = False,
    worker_names: Iterable[str] | None = None,
) -> RecoveryReport:
    """Run one recovery pass now and report what it did: settle the reservations of every dead
    late-ack worker (see :mod:`rq_acklate.recovery` for the rules). ``dry_run`` changes nothing."""
    return Recoverer(connection, settings, serializer=serializer).recover(
        dry_run=dry_run, worker_names=worker_names
    )


def _chunks(items: Sequence[str], size: int) -> Iterable[list[str]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def _int_or_none(value: str | None) -> int | None:
    try:
        return int(value) if value not in (None, '') else None
    except ValueError:
        return None
