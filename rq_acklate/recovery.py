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
cluster-wide cost per interval is O(workers). Work is done in batches of at most
:data:`BATCH_SIZE` jobs per script call, so Redis is never blocked by a long script, and dead
workers in groups of :data:`GROUP_SIZE`, one pipeline per step; with more than one group, an I/O
thread runs the next group's reads and this group's writes while the caller's thread decides.
"""

from __future__ import annotations

import inspect
import json
import logging
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
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
from .scripts import LuaScript, Scripts
from .settings import Settings

logger = logging.getLogger('rq_acklate.recovery')

#: RQ's own rule for job ids (``rq.job.JOB_ID_PATTERN`` in 2.x).
_JOB_ID = re.compile(r'[A-Za-z0-9_-]+')
_FINAL_OR_ELSEWHERE = ('finished', 'failed', 'stopped', 'canceled', 'scheduled', 'deferred')
#: RQ >= 2.6 records the worker's name in each result.
_RESULT_TAKES_WORKER_NAME = 'worker_name' in inspect.signature(Result).parameters
BATCH_SIZE = 200
#: Dead workers handled per pipeline round.
GROUP_SIZE = 50


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
    def from_row(cls, job_id: str, row: Sequence[Any]) -> JobSnapshot:
        """From one row of ``snapshot.lua``."""
        exists, status, origin, started_at, worker_name, failure_ttl, redeliveries = row[:7]
        if not exists:
            return cls(job_id, exists=False)
        return cls(
            job_id,
            exists=True,
            status=status,
            origin=origin,
            started_at=started_at,
            worker_name=worker_name,
            failure_ttl=_int_or_none(failure_ttl),
            redeliveries=_int_or_none(redeliveries) or 0,
        )


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


@dataclass
class _GroupRead:
    """What :meth:`Recoverer._read_group` found for a group of dead workers."""

    busy: list[tuple[WorkerKeys, list[str]]] = field(default_factory=list)  # with their job ids
    empty: list[WorkerKeys] = field(default_factory=list)
    leftovers: list[str] = field(default_factory=list)  # hold more than one batch
    snapshots: list[Any] = field(default_factory=list)  # one snapshot.lua answer per busy worker


@dataclass
class _Batch:
    """One ``settle.lua`` call: the decisions it carries, and its keys and argument."""

    plans: list[tuple[JobSnapshot, str, Decision]] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    args: list[str] = field(default_factory=list)

    def dry_run(self) -> list[JobOutcome]:
        return [
            JobOutcome(s.job_id, s.origin, 'skipped', f'would {d.action}: {d.reason}', s.redeliveries)
            for s, _fp, d in self.plans
        ]


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
        for group, result in self._recover_groups(list(_chunks(report.dead_workers, GROUP_SIZE)), dry_run):
            if isinstance(result, Exception):  # fall back to one worker at a time
                logger.warning('rq-acklate: grouped recovery failed (%s); going worker by worker', result)
                leftovers = group
            else:
                done, leftovers = result
                report.workers += done
            for name in leftovers:
                try:
                    report.workers.append(self.recover_worker(name, require_dead=True, dry_run=dry_run))
                except Exception as exc:  # keep going: one bad worker must not block the others
                    logger.exception('rq-acklate: recovery of worker %s failed', name)
                    report.errors.append(f'{name}: {type(exc).__name__}: {exc}')
            if self.between_batches is not None:
                self.between_batches()
        report.duration = time.monotonic() - started
        if report.outcomes or report.errors:
            logger.warning(
                'rq-acklate: recovery: %d dead worker(s) %s; jobs: %s%s',
                len(report.dead_workers),
                _names(report.dead_workers),
                report.counts(),
                f'; errors: {report.errors}' if report.errors else '',
            )
        return report

    def _recover_groups(
        self, groups: list[list[str]], dry_run: bool
    ) -> Iterator[tuple[list[str], tuple[list[WorkerRecovery], list[str]] | Exception]]:
        """Settle groups of dead workers, yielding each group with its result (or the exception that
        stopped it). With several groups, one I/O thread reads the next group and writes the current
        one while this thread plans: Redis's work and Python's overlap instead of taking turns.
        Each group's steps still run in order (read, plan, write, finish)."""
        if len(groups) <= 1:
            for group in groups:
                try:
                    read = self._read_group(group)
                    batches = self._plan_group(read)
                    answers = None if dry_run else self._write_group(batches)
                    yield group, self._finish_group(read, batches, answers)
                except Exception as exc:
                    yield group, exc
            return
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix='rq-acklate-recovery') as io:
            # Reads run two groups ahead, so the I/O thread never waits for this one to plan.
            reads = [io.submit(self._read_group, group) for group in groups[:2]]
            previous: tuple[list[str], _GroupRead, list[_Batch], Future[list[Any]] | None] | None = None
            for index, group in enumerate(groups):
                if index + 2 < len(groups):
                    reads.append(io.submit(self._read_group, groups[index + 2]))
                current = None
                try:
                    read = reads[index].result()
                    batches = self._plan_group(read)
                    current = (group, read, batches, None if dry_run else io.submit(self._write_group, batches))
                except Exception as exc:
                    yield group, exc
                if previous is not None:
                    yield previous[0], self._finish_pending(previous)
                previous = current
            if previous is not None:
                yield previous[0], self._finish_pending(previous)

    def _finish_pending(
        self, pending: tuple[list[str], _GroupRead, list[_Batch], Future[list[Any]] | None]
    ) -> tuple[list[WorkerRecovery], list[str]] | Exception:
        _group, read, batches, written = pending
        try:
            return self._finish_group(read, batches, written.result() if written is not None else None)
        except Exception as exc:
            return exc

    def _read_group(self, names: list[str]) -> _GroupRead:
        """Read several dead workers' reserved jobs and their snapshots, one pipeline per step.
        Workers that hold more than one batch are left over for :meth:`recover_worker`."""
        workers = [WorkerKeys(name) for name in names]
        with self.connection.pipeline(transaction=False) as pipe:
            for wk in workers:
                pipe.lrange(wk.reserved, 0, BATCH_SIZE)
            listed = [[as_text(i) for i in ids] for ids in pipe.execute()]
        read = _GroupRead()
        for wk, ids in zip(workers, listed, strict=True):
            if len(ids) > BATCH_SIZE:
                read.leftovers.append(wk.name)
            elif ids:
                read.busy.append((wk, ids))
            else:
                read.empty.append(wk)
        read.snapshots = self._pipelined(
            self.scripts.snapshot, [([wk.reservations, *map(keys.rq_job, ids)], ids) for wk, ids in read.busy]
        )
        return read

    def _plan_group(self, read: _GroupRead) -> list[_Batch]:
        return [
            self._plan_batch(wk, ids, rows, True, 'worker-lost')
            for (wk, ids), rows in zip(read.busy, read.snapshots, strict=True)
        ]

    def _write_group(self, batches: list[_Batch]) -> list[Any]:
        return self._pipelined(self.scripts.settle, [(b.keys, b.args) for b in batches])

    def _finish_group(
        self, read: _GroupRead, batches: list[_Batch], answers: list[Any] | None
    ) -> tuple[list[WorkerRecovery], list[str]]:
        """Turn the answers into outcomes, send signals, and unregister the settled workers. Workers
        whose state moved meanwhile are returned as leftovers for :meth:`recover_worker`."""
        done: list[WorkerRecovery] = []
        leftovers = list(read.leftovers)
        if answers is None:  # dry run
            for (wk, _ids), batch in zip(read.busy, batches, strict=True):
                done.append(WorkerRecovery(wk.name, batch.dry_run()))
            return done + [WorkerRecovery(wk.name) for wk in read.empty], leftovers
        settled = []
        for (wk, _ids), batch, answer in zip(read.busy, batches, answers, strict=True):
            outcomes = self._apply_batch(wk, batch, answer)
            if any(o.action in ('retry', 'stop') for o in outcomes):
                done_here = [o for o in outcomes if o.action not in ('retry', 'stop')]
                if done_here:
                    done.append(WorkerRecovery(wk.name, done_here))
                leftovers.append(wk.name)
                continue
            settled.append((wk, WorkerRecovery(wk.name, outcomes)))
        forget = [wk for wk, _r in settled] + read.empty
        forgotten = self._pipelined(
            self.scripts.forget_worker,
            [([keys.WORKERS, wk.alive, wk.reserved, wk.reservations, wk.info], [wk.name]) for wk in forget],
        )
        for (wk, result), was_forgotten in zip(settled, forgotten, strict=False):
            result.forgotten = bool(was_forgotten)
            logger.info('rq-acklate: settled the jobs of dead worker %s: %s', wk.name, result.counts())
            signals.send(signals.worker_recovered, self, worker_name=wk.name, counts=result.counts())
            done.append(result)
        for wk, was_forgotten in zip(read.empty, forgotten[len(settled) :], strict=True):
            done.append(WorkerRecovery(wk.name, forgotten=bool(was_forgotten)))
        return done, leftovers

    def _pipelined(self, script: LuaScript, calls: list[tuple[list[str], list[Any]]]) -> list[Any]:
        """Run ``script`` once per call in one pipeline (repeating any the server had lost)."""
        if not calls:
            return []
        with self.connection.pipeline(transaction=False) as pipe:
            for script_keys, args in calls:
                script.queue_in(pipe, script_keys, args)
            results = pipe.execute(raise_on_error=False)
        return [
            script.retry_if_missing(result, script_keys, args)
            for (script_keys, args), result in zip(calls, results, strict=True)
        ]

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
            pending = [i for i in ids if i not in excluded and i not in settled and (only is None or i in only)]
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
            logger.warning('rq-acklate: settled the jobs of worker %s (%s): %s', worker_name, loss, result.counts())
            signals.send(signals.worker_recovered, self, worker_name=worker_name, counts=result.counts())
        return result

    def _settle_batch(
        self, wk: WorkerKeys, job_ids: list[str], require_dead: bool, dry_run: bool, loss: str
    ) -> list[JobOutcome]:
        rows = self.scripts.snapshot([wk.reservations, *map(keys.rq_job, job_ids)], job_ids)
        batch = self._plan_batch(wk, job_ids, rows, require_dead, loss)
        if dry_run:
            return batch.dry_run()
        return self._apply_batch(wk, batch, self.scripts.settle(batch.keys, batch.args))

    def _plan_batch(self, wk: WorkerKeys, job_ids: list[str], raw_rows: Any, require_dead: bool, loss: str) -> _Batch:
        """Decide each job's action from ``snapshot.lua``'s rows, and build the ``settle.lua`` call."""
        # Garbage in a job hash may not be UTF-8: decide on a readable copy, guard with the fingerprint.
        rows = json.loads(raw_rows.decode('utf-8', 'replace') if isinstance(raw_rows, bytes) else raw_rows)
        batch = _Batch()
        for job_id, row in zip(job_ids, rows, strict=True):
            snapshot = JobSnapshot.from_row(job_id, row)
            record = StartRecord.decode(row[7] or None)
            decision = decide(snapshot, record, wk.name, self.settings.max_redeliveries, loss=loss)
            batch.plans.append((snapshot, row[8], decision))

        now_dt = now()
        now_text = utcformat(now_dt)
        origins: list[str] = sorted({s.origin for s, _fp, d in batch.plans if d.action != 'drop'})
        origin_index = {origin: i + 1 for i, origin in enumerate(origins)}
        batch.keys = [wk.alive, wk.rq_worker, wk.reserved, wk.reservations, keys.STATS, keys.RQ_QUEUES]
        batch.keys.append(keys.QUARANTINE)
        for origin in origins:
            batch.keys += [keys.rq_queue(origin), keys.rq_wip(origin), keys.rq_failed(origin)]
        jobs = []
        failure_results: dict[str, list[Any]] = {}
        for snapshot, fingerprint, decision in batch.plans:
            job_id = snapshot.job_id
            # Only the keys the action touches: the job; its executions unless dropped; its results
            # and dependents when failed.
            first_key = len(batch.keys) + 1
            batch.keys.append(keys.rq_job(job_id))
            if decision.action != 'drop':
                batch.keys.append(keys.rq_executions(job_id))
            if decision.action == 'fail':
                batch.keys += [keys.rq_results(job_id), keys.rq_job_dependents(job_id)]
                if decision.failure_text not in failure_results:
                    failure_results[decision.failure_text] = self._failure_result(wk.name, decision)
            jobs.append(
                {
                    'id': job_id,
                    'key': first_key,
                    'action': decision.action,
                    'origin': origin_index.get(snapshot.origin, 0) if decision.action != 'drop' else 0,
                    'fp': fingerprint,
                    'counter': decision.counter,
                    'redeliver': 1 if decision.count_redelivery else 0,
                    'reason': decision.failure_text,
                    'ttl': snapshot.failure_ttl if snapshot.failure_ttl is not None else DEFAULT_FAILURE_TTL,
                    'quarantine': _quarantine_record(decision.quarantine, wk.name, now_text),
                    'result': failure_results.get(decision.failure_text, []),
                }
            )
        plan = {
            'dead': 1 if require_dead else 0,
            'now': now_text,
            'ts': round(now_dt.timestamp(), 6),
            'origins': len(origins),
            'jobs': jobs,
        }
        batch.args = [json.dumps(plan, separators=(',', ':'))]
        return batch

    def _apply_batch(self, wk: WorkerKeys, batch: _Batch, raw: Any) -> list[JobOutcome]:
        """Turn ``settle.lua``'s answer into outcomes, and do what must follow (signals, dependents)."""
        if as_text(raw) == 'alive':
            return [JobOutcome(batch.plans[0][0].job_id, '', 'stop', 'alive')]
        outcomes = []
        for (snapshot, _fp, decision), (status, redeliveries, dependents) in zip(
            batch.plans, json.loads(as_text(raw)), strict=True
        ):
            if status != 'ok':
                outcomes.append(JobOutcome(snapshot.job_id, snapshot.origin, 'retry', status))
                continue
            outcomes.append(self._after_settle(wk, snapshot, decision, int(redeliveries), int(dependents)))
        return outcomes

    def _failure_result(self, worker_name: str, decision: Decision) -> list[Any]:
        """The fields RQ's own ``Result.create_failure`` would store for this failure."""
        options: dict[str, Any] = {'exc_string': decision.failure_text, 'serializer': self.serializer}
        if _RESULT_TAKES_WORKER_NAME:
            options['worker_name'] = worker_name
        result = Result('', Result.Type.FAILED, connection=self.connection, **options)
        fields: list[Any] = []
        for name, value in result.serialize().items():
            fields += [name, value]
        return fields

    def _after_settle(
        self, wk: WorkerKeys, snapshot: JobSnapshot, decision: Decision, redeliveries: int, dependents: int
    ) -> JobOutcome:
        job_id, queue = snapshot.job_id, snapshot.origin
        action = {'requeue': 'requeued', 'fail': 'failed', 'drop': 'dropped'}[decision.action]
        outcome = JobOutcome(job_id, queue, action, decision.reason, redeliveries)
        if logger.isEnabledFor(logging.INFO):
            logger.info('rq-acklate: %s job %s of worker %s (%s)', action, job_id, wk.name, decision.reason)
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
                self.scripts.forget_worker([keys.WORKERS, wk.alive, wk.reserved, wk.reservations, wk.info], [wk.name])
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
    return Recoverer(connection, settings, serializer=serializer).recover(dry_run=dry_run, worker_names=worker_names)


def _chunks(items: Sequence[str], size: int) -> Iterable[list[str]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def _names(names: list[str], shown: int = 5) -> str:
    more = f' and {len(names) - shown} more' if len(names) > shown else ''
    return '(' + ', '.join(names[:shown]) + more + ')'


def _quarantine_record(reason: str, worker_name: str, at: str) -> str:
    if not reason:
        return ''
    return json.dumps({'reason': reason, 'worker': worker_name, 'at': at})


def _int_or_none(value: str | None) -> int | None:
    try:
        return int(value) if value not in (None, '') else None
    except ValueError:
        return None
