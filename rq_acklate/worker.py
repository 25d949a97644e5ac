"""The late-ack worker: a mixin that goes in front of any RQ worker class.

``LateAckWorkerMixin`` overrides a few narrow RQ methods and calls ``super()`` in each. No RQ
method is copied; the overrides follow RQ 2.0 to 2.12, which the test matrix runs.

================================  =============================================================
RQ method                         what the mixin adds
================================  =============================================================
``__init__``                      reads the settings; refuses RQ's ``SpawnWorker``
``bootstrap``                     checks Redis >= 6.2, settles what an earlier worker of the same
                                  name left reserved, takes the liveness lease, runs a recovery
                                  pass, starts the liveness thread
``register_birth``                lets a restart reuse the name of a late-ack worker whose lease
                                  expired (RQ would refuse until its old key expires)
``queue_class.dequeue_any``       reserves atomically into this worker's list (a per-worker
                                  subclass of the worker's queue class carries the override)
``execute_job``                   resolves the job's policy, checks the reservation is still held
                                  after a pause, queues the ack after RQ stored the outcome
``set_state`` (BUSY) /            record the start in RQ's own start transaction
``prepare_execution``
``heartbeat``,                    RQ's heartbeat, its last writes for the job (state idle, working
``set_state`` (IDLE),             time reset), the pending ack and the lost-reply check travel in
``set_current_job_working_time``  one pipeline: fewer round trips per job than plain RQ
``handle_job_success`` /          do not store an outcome for a job recovery took over while this
``handle_job_failure`` /          worker was paused; do not fail a late-ack job because RQ's own
``handle_job_retry``              Redis calls around it lost the connection (a worker loss)
``handle_work_horse_killed``      a horse killed under a live worker (OOM, segfault) is a worker
                                  loss: idempotent late-ack jobs are redelivered; a horse that lost
                                  Redis settles any late-ack job by its policy
``cleanup_execution``             also in RQ's retry of its success transaction (after a lost
                                  connection), or the finished job is later failed as abandoned
``kill_horse``                    remembers that the worker itself killed the horse (stop/kill
                                  commands, timeouts, cold shutdown): not a worker loss
``main_work_horse``               the horse dies with its worker (``PR_SET_PDEATHSIG`` on Linux)
``perform_job``                   re-checks ownership after a pause before RQ marks the job started;
                                  a horse that lost Redis around a late-ack job says so in its exit
                                  code
``teardown``                      stops the threads, acks, settles leftovers, releases the lease
================================  =============================================================
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import json
import logging
import os
import signal
import sys
import time
import traceback
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import redis.exceptions
from rq.exceptions import DequeueTimeout
from rq.job import Job
from rq.utils import as_text, now, utcformat
from rq.worker import SimpleWorker, Worker, WorkerStatus

try:
    from rq.worker import SpawnWorker
except ImportError:  # older RQ 2.x releases have no SpawnWorker
    SpawnWorker = None  # type: ignore[assignment,misc]

from . import keys, signals
from .doorbells import Doorbells
from .errors import ConfigurationError
from .keys import WorkerKeys
from .liveness import LeaseState, LivenessThread, lease_value
from .policy import REDELIVERIES_META_KEY, Policy, PolicyResolver
from .recovery import Recoverer
from .reservations import NOT_EMPTY, Reservations, Reserved, StartRecord
from .scripts import Scripts
from .server import require_supported_redis
from .settings import Settings

if TYPE_CHECKING:
    from redis.client import Pipeline
    from rq.queue import Queue

logger = logging.getLogger('rq_acklate.worker')


@dataclass
class HeldJob:
    """The job this worker took, from its reservation until its ack."""

    job_id: str
    queue_name: str
    previous_started_at: str
    reserved_at: float
    lapses_at_reserve: int
    policy: Policy | None = None
    #: Until when the lease was last known fresh (monotonic): a work horse inherits it, and checks
    #: it without reading the shared lease record (each page a horse touches costs a fault).
    fresh_until: float = 0.0


class LateAckWorkerMixin:
    """Put it in front of an RQ worker class: ``class MyWorker(LateAckWorkerMixin, rq.Worker)``.

    Settings (see :class:`rq_acklate.settings.Settings`) may be set as class attributes of the
    worker class, or passed as keyword arguments.
    """

    liveness_ttl: float | None = None
    heartbeat_interval: float | None = None
    recovery_interval: float | None = None
    max_redeliveries: int | None = None
    default_policy: str | None = None

    # Attributes provided by RQ's BaseWorker, declared for type checkers.
    if TYPE_CHECKING:
        name: str
        connection: Any
        serializer: Any
        queue_class: Any
        job_class: Any
        log: logging.Logger
        pid: int | None
        hostname: str | None
        is_horse: bool
        horse_pid: int
        queues: list[Any]
        execution: Any

        def queue_names(self) -> list[str]: ...
        def wait_for_horse(self) -> Any: ...

    def __init__(
        self,
        *args: Any,
        liveness_ttl: float | None = None,
        heartbeat_interval: float | None = None,
        recovery_interval: float | None = None,
        max_redeliveries: int | None = None,
        default_policy: str | None = None,
        **kwargs: Any,
    ) -> None:
        if SpawnWorker is not None and isinstance(self, SpawnWorker):
            raise ConfigurationError(
                "rq-acklate does not support RQ's SpawnWorker: its work horse is a new process that rebuilds "
                'a plain rq.Worker, so the horse would neither die with its worker (PR_SET_PDEATHSIG) nor check '
                'that it still holds its job before storing the outcome. Use LateAckWorker (fork) or '
                'LateAckSimpleWorker.'
            )
        super().__init__(*args, **kwargs)
        class_attrs = {name: getattr(type(self), name, None) for name in Settings.names()}
        self.acklate_settings = Settings.load(
            kwargs={
                'liveness_ttl': liveness_ttl,
                'heartbeat_interval': heartbeat_interval,
                'recovery_interval': recovery_interval,
                'max_redeliveries': max_redeliveries,
                'default_policy': default_policy,
            },
            class_attrs=class_attrs,
        )
        self.queue_class = _reserving_queue_class(self.queue_class, self)
        self._acklate_keys = WorkerKeys(self.name)
        self._acklate_reservations: Reservations | None = None
        self._acklate_lease = LeaseState()
        self._acklate_liveness: LivenessThread | None = None
        self._acklate_policies = PolicyResolver(self.acklate_settings)
        self._acklate_parent_pid = os.getpid()
        self._held: HeldJob | None = None
        self._start_pending = False
        self._pending_ack: str | None = None
        self._pending_held_check = False
        self._needs_reconcile = False
        self._horse_killed_on_purpose = False
        self._settled_here: str | None = None
        self._bookkeeping_lost: str | None = None
        self._early_ack_pending = False
        self._cleaned_execution: Any = None
        self._doorbells: Doorbells | None = None
        self._deferred: Pipeline | None = None
        self._defer_writes = False

    # -- shared helpers --------------------------------------------------------------------------

    @property
    def _reservations(self) -> Reservations:
        if self._acklate_reservations is None:
            self._acklate_reservations = Reservations(self.connection, self._acklate_keys, Scripts(self.connection))
        return self._acklate_reservations

    def _recoverer(self) -> Recoverer:
        between = self._acklate_liveness.renew_if_due if self._acklate_liveness is not None else None
        return Recoverer(
            self.connection,
            self.acklate_settings,
            serializer=self.serializer,
            name=self.name,
            between_batches=between,
        )

    def _lease_is_fresh(self, held: HeldJob) -> bool:
        if time.monotonic() < held.fresh_until:
            return True
        s = self.acklate_settings
        held.fresh_until = self._acklate_lease.fresh_until(held.lapses_at_reserve, s.liveness_ttl, s.heartbeat_interval)
        return time.monotonic() < held.fresh_until

    def _still_held(self, held: HeldJob) -> bool:
        """Free when the lease stayed fresh; after a pause, one round trip that also renews the lease."""
        if self._lease_is_fresh(held):
            return True
        return self._reservations.fence(held.job_id, self.acklate_settings.liveness_ttl_ms, lease_value())

    def _taken_over(self, job_id: str, *, count: bool) -> None:
        self.log.warning(
            'Worker %s: job %s was taken over by recovery while this worker was paused or cut off; '
            'this worker does not store its outcome',
            self.name,
            job_id,
        )
        if count:
            with contextlib.suppress(redis.exceptions.RedisError):
                self.connection.hincrby(keys.STATS, 'taken_over', 1)
            signals.send(signals.reservation_taken_over, self, job_id=job_id, worker_name=self.name)

    # -- startup ---------------------------------------------------------------------------------

    def bootstrap(self, *args: Any, **kwargs: Any) -> None:
        require_supported_redis(self.connection)
        super().bootstrap(*args, **kwargs)  # type: ignore[misc]
        _log_like_rq(*args, **kwargs)
        if _ON_LINUX:
            _prctl()  # look it up here, not in every work horse
        own = self._recoverer().recover_worker(self.name, require_dead=True, loss='worker-restarted')
        if own.outcomes:
            self.log.warning(
                'Worker %s: settled %d job(s) an earlier worker of this name left reserved: %s',
                self.name,
                len(own.outcomes),
                own.counts(),
            )
        self._register()
        self._acklate_liveness = LivenessThread(
            self.connection,
            self._acklate_keys,
            self.acklate_settings,
            self._acklate_lease,
            on_recovery_due=self._periodic_recovery,
            on_lapse=self._register,
        )
        self._acklate_liveness.acquire()
        self._periodic_recovery()
        self._acklate_liveness.start()

    def _register(self) -> None:
        self._reservations.register(
            self.queue_names(),
            self.pid,
            self.hostname,
            _class_path(type(self)),
            self.acklate_settings.heartbeat_interval,
        )

    def register_birth(self) -> None:
        wk = self._acklate_keys
        with self.connection.pipeline(transaction=False) as pipe:
            pipe.exists(wk.rq_worker)
            pipe.hexists(wk.rq_worker, 'death')
            pipe.exists(wk.alive)
            pipe.sismember(keys.WORKERS, self.name)
            exists, died, alive, registered = pipe.execute()
        if exists and not died and not alive and registered:
            self.log.warning(
                'Worker %s: the previous late-ack worker of this name is dead (its lease expired); '
                'recording its death so this one can start',
                self.name,
            )
            self.connection.hset(wk.rq_worker, 'death', utcformat(now()))
        super().register_birth()  # type: ignore[misc]

    def _periodic_recovery(self) -> None:
        recoverer = self._recoverer()
        if recoverer.try_lease():
            recoverer.recover(exclude=[self.name])  # logs what it did

    # -- dequeue ---------------------------------------------------------------------------------

    def _acklate_dequeue(
        self,
        queue_cls: type[Queue],
        queues: list[Queue],
        timeout: float | None,
        job_class: type[Job] | None,
        serializer: Any,
        death_penalty_class: Any,
    ) -> tuple[Job, Queue] | None:
        """What ``Queue.dequeue_any`` does, but reserving: see :mod:`rq_acklate.reservations`."""
        self._flush_pending()
        queue_keys = [q.key for q in queues]
        deadline = None if timeout is None else time.monotonic() + timeout
        check_empty = True
        while True:
            wait = None
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining < 0.01:
                    raise DequeueTimeout(timeout, queue_keys)
                # Come back at least every recovery_interval: lost replies are found on the way.
                wait = min(remaining, self.acklate_settings.recovery_interval)
            lapses = self._acklate_lease.read()[1]
            # One queue: BLMOVE waits and takes in one step. Several: reserve.lua takes, doorbells wait.
            found = self._reservations.reserve(
                queue_keys, wait if len(queue_keys) == 1 else None, check_empty=check_empty
            )
            if found == NOT_EMPTY:
                held_before = self._reservations.held()
                self._reconcile()
                # A leftover that cannot be settled now must not stop the worker from working.
                check_empty = self._reservations.held() != held_before
                continue
            if found is None:
                if wait is None:
                    return None
                if len(queue_keys) > 1:
                    doorbells = self._doorbells_for(queue_keys)
                    doorbells.arm()
                    doorbells.wait(wait)
                continue
            assert isinstance(found, Reserved)
            queue_key, job_id = found.queue_key, found.job_id
            job, raw = self._load_reserved_job(job_id, queue_key, job_class or Job, serializer)
            if job is None:
                continue
            queue = queue_cls.from_queue_key(
                queue_key,
                connection=self.connection,
                job_class=job_class,
                serializer=serializer,
                death_penalty_class=death_penalty_class,
            )
            self._held = HeldJob(
                job_id=job_id,
                queue_name=queue.name,
                previous_started_at=as_text(raw.get(b'started_at') or b''),
                reserved_at=time.time(),
                lapses_at_reserve=lapses,
            )
            self._pending_held_check = not found.alone
            signals.send(
                signals.job_reserved,
                self,
                job_id=job_id,
                queue=queue.name,
                worker_name=self.name,
                redeliveries=job.meta.get(REDELIVERIES_META_KEY, 0),
            )
            return job, queue

    def _doorbells_for(self, queue_keys: list[str]) -> Doorbells:
        """The doorbells of these queues (RQ's round-robin strategy reorders, never changes, them)."""
        if self._doorbells is None or set(self._doorbells.queue_keys) != set(queue_keys):
            if self._doorbells is not None:
                self._doorbells.stop()
            block = self._doorbell_block()
            self._doorbells = Doorbells(self.connection, queue_keys, self.name, max_block=block)
            self._doorbells.start()
        return self._doorbells

    def _doorbell_block(self) -> float:
        """How long a doorbell blocks per call: well inside RQ's socket timeout for this connection."""
        socket_timeout = self.connection.connection_pool.connection_kwargs.get('socket_timeout') or 60
        return max(1.0, min(30.0, float(socket_timeout) - 5))

    def _load_reserved_job(
        self, job_id: str, queue_key: str, job_class: type[Job], serializer: Any
    ) -> tuple[Job | None, dict[bytes, bytes]]:
        raw = self.connection.hgetall(keys.rq_job(job_id))
        if not raw:
            self.log.info('Worker %s: reserved job %s no longer exists; skipped', self.name, job_id)
            self._reservations.drop(job_id)
            return None, {}
        job = job_class(job_id, connection=self.connection, serializer=serializer)
        try:
            job.restore(raw)
        except Exception as exc:
            reason = f'unreadable job hash: {type(exc).__name__}: {exc}'
            self.log.error('Worker %s: job %s from %s: %s; quarantined', self.name, job_id, queue_key, reason)
            self._quarantine(job_id, queue_key, reason)
            return None, {}
        redeliveries = int(as_text(raw.get(keys.REDELIVERIES_FIELD.encode()) or b'0') or 0)
        if redeliveries:
            job.meta[REDELIVERIES_META_KEY] = redeliveries
        return job, raw

    def _quarantine(self, job_id: str, queue_key: str, reason: str) -> None:
        record = json.dumps({'queue': queue_key, 'worker': self.name, 'reason': reason, 'at': utcformat(now())})
        with self.connection.pipeline() as pipe:
            pipe.hset(keys.QUARANTINE, job_id, record)
            pipe.hincrby(keys.STATS, 'quarantined', 1)
            pipe.lrem(self._acklate_keys.reserved, 1, job_id)
            pipe.execute()

    # -- start -----------------------------------------------------------------------------------

    def execute_job(self, job: Job, queue: Queue) -> None:
        held = self._held
        if held is None or held.job_id != job.id:
            # Not taken through our dequeue (a subclass calling execute_job directly): RQ semantics.
            super().execute_job(job, queue)  # type: ignore[misc]
            return
        held.policy = self._acklate_policies.resolve(job)
        self._horse_killed_on_purpose = False
        self._settled_here = None
        self._bookkeeping_lost = None
        self._early_ack_pending = False
        if not self._still_held(held):
            self._held = None
            self._pending_held_check = False
            self._taken_over(job.id, count=True)
            return
        self._start_pending = True
        # RQ's last writes for the job (working time reset, state idle) ride with the heartbeat RQ
        # sends right after, together with the ack: one round trip for the three.
        self._defer_writes = True
        super().execute_job(job, queue)  # type: ignore[misc]
        # Reached only when RQ returns normally: the outcome is stored, unless RQ lost Redis around
        # an in-process job (SimpleWorker). A cold shutdown raises SystemExit through here and leaves
        # the job reserved for teardown to settle.
        if self._held is not None and self._held.job_id == job.id:
            if self._bookkeeping_lost == job.id:
                self._held, self._bookkeeping_lost, self._needs_reconcile = None, None, True
            elif held.policy.late_ack:
                self._pending_ack = job.id
            else:
                self._held = None

    def set_state(self, state: str, pipeline: Pipeline | None = None) -> None:
        if pipeline is None and state == WorkerStatus.IDLE and self._defer_writes:
            pipeline = self._deferred_pipeline()
        super().set_state(state, pipeline=pipeline)  # type: ignore[misc]
        if pipeline is not None and state == WorkerStatus.BUSY and self._start_pending:
            self._queue_start(pipeline)

    def _deferred_pipeline(self) -> Pipeline:
        if self._deferred is None:
            self._deferred = self.connection.pipeline(transaction=False)
        return self._deferred

    def set_current_job_working_time(self, working_time: float, pipeline: Pipeline | None = None) -> None:
        if pipeline is None and working_time == 0 and self._defer_writes:
            pipeline = self._deferred_pipeline()  # RQ resets it once the horse is gone
        super().set_current_job_working_time(working_time, pipeline=pipeline)  # type: ignore[misc]

    def prepare_execution(self, job: Job) -> Any:
        execution = super().prepare_execution(job)  # type: ignore[misc]
        if self._start_pending:  # RQ did not set the state inside its start transaction
            with self.connection.pipeline() as pipe:
                self._queue_start(pipe)
                pipe.execute()
        return execution

    def _queue_start(self, pipeline: Pipeline) -> None:
        held = self._held
        self._start_pending = False
        if held is None or held.policy is None:
            return
        record = StartRecord(held.policy, held.previous_started_at, held.reserved_at) if held.policy.late_ack else None
        self._reservations.record_start(pipeline, held.job_id, record)
        self._early_ack_pending = not held.policy.late_ack

    def set_current_job_id(self, job_id: str | None = None, pipeline: Pipeline | None = None) -> None:
        """RQ sets the current job in the transaction that marks the job started (in the horse,
        or in-process for SimpleWorker): an early-ack reservation is dropped in that same step."""
        held = self._held
        if pipeline is not None and self._early_ack_pending and held is not None and job_id == held.job_id:
            self._early_ack_pending = False
            self._reservations.queue_early_ack(pipeline, job_id)
        super().set_current_job_id(job_id, pipeline=pipeline)  # type: ignore[misc]

    # -- ack and the lost-reply check, in RQ's heartbeat pipeline ---------------------------------

    def heartbeat(self, timeout: int | None = None, pipeline: Pipeline | None = None) -> None:
        """RQ's heartbeat; when there is something to send with it (the ack, the lost-reply check, RQ's
        own last writes for a job), all of it goes in one pipeline."""
        nothing_to_add = not (self._pending_ack or self._pending_held_check or self._deferred is not None)
        if pipeline is not None or self.is_horse or nothing_to_add:
            super().heartbeat(timeout, pipeline=pipeline)  # type: ignore[misc]
            return
        deferred, self._deferred, self._defer_writes = self._deferred, None, False
        with deferred if deferred is not None else self.connection.pipeline(transaction=False) as pipe:
            super().heartbeat(timeout, pipeline=pipe)  # type: ignore[misc]
            ours = len(pipe)
            self._queue_pending(pipe)
            results = pipe.execute(raise_on_error=False)
        for result in results[:ours]:
            if isinstance(result, Exception):
                raise result
        if len(results) > ours:
            self._handle_pending(results[ours:])

    def _flush_pending(self) -> None:
        self._defer_writes = False
        if self._deferred is not None:  # RQ did not send its heartbeat after the job
            deferred, self._deferred = self._deferred, None
            with deferred:
                deferred.execute()
        if self._pending_ack or self._pending_held_check:
            with self.connection.pipeline(transaction=False) as pipe:
                self._queue_pending(pipe)
                results = pipe.execute(raise_on_error=False)
            self._handle_pending(results)
        if self._needs_reconcile:
            self._reconcile()

    def _queue_pending(self, pipe: Pipeline) -> None:
        if self._pending_ack:
            self._reservations.queue_ack(pipe, self._pending_ack)
        if self._pending_held_check:
            self._reservations.queue_held_check(pipe)

    def _handle_pending(self, results: list[Any]) -> None:
        results = list(results)
        if self._pending_ack:
            job_id, self._pending_ack = self._pending_ack, None
            held, self._held = self._held, None
            acked = self._reservations.ack_result(job_id, results.pop(0))
            if acked == 1:
                signals.send(
                    signals.job_acked,
                    self,
                    job_id=job_id,
                    queue=held.queue_name if held else '',
                    worker_name=self.name,
                )
            elif acked == 0 and held is not None and self._lease_is_fresh(held):
                # The lease never lapsed, so no recoverer touched the job: this was our own ack,
                # retried by the client after its reply was lost.
                signals.send(signals.job_acked, self, job_id=job_id, queue=held.queue_name, worker_name=self.name)
            elif acked == 0:
                self._taken_over(job_id, count=True)
            else:
                self.log.warning(
                    'Worker %s: the outcome of job %s was not stored (Redis error?); it stays reserved '
                    'and is settled by its policy',
                    self.name,
                    job_id,
                )
                self._needs_reconcile = True
        if self._pending_held_check:
            self._pending_held_check = False
            result = results.pop(0)
            if isinstance(result, Exception):
                raise result
            held_ids = {as_text(i) for i in result}
            if self._held is not None:
                held_ids.discard(self._held.job_id)
            if held_ids:
                self.log.warning(
                    'Worker %s: found %d job(s) in its reserved list that it never received '
                    '(a lost reply); putting them back',
                    self.name,
                    len(held_ids),
                )
                self._needs_reconcile = True
        if self._needs_reconcile:
            self._reconcile()

    def _reconcile(self) -> None:
        """Settle what this live worker holds but is not running: jobs whose dequeue reply was lost,
        and jobs whose outcome could not be stored."""
        self._needs_reconcile = False
        exclude = [self._held.job_id] if self._held is not None else []
        result = self._recoverer().recover_worker(
            self.name, require_dead=False, exclude_ids=exclude, loss='outcome-not-stored'
        )
        if result.outcomes:
            self.log.warning('Worker %s: settled its own leftovers: %s', self.name, result.counts())

    # -- storing outcomes ------------------------------------------------------------------------

    def _may_store_outcome(self, job: Job) -> bool:
        held = self._held
        if held is None or held.job_id != job.id or held.policy is None or not held.policy.late_ack:
            return True
        if self._still_held(held):
            return True
        self._taken_over(job.id, count=False)  # the main process counts it when its ack finds it gone
        return False

    # These three take RQ's arguments as they are: their signatures changed across RQ 2.x.
    def handle_job_success(self, job: Job, queue: Queue, *args: Any, **kwargs: Any) -> None:
        if self._may_store_outcome(job):
            super().handle_job_success(job, queue, *args, **kwargs)  # type: ignore[misc]
        else:
            self._forget_execution(job)

    def handle_job_retry(self, job: Job, queue: Queue, *args: Any, **kwargs: Any) -> None:
        if self._may_store_outcome(job):
            super().handle_job_retry(job, queue, *args, **kwargs)  # type: ignore[misc]
        else:
            self._forget_execution(job)

    def handle_job_failure(self, job: Job, queue: Queue, *args: Any, **kwargs: Any) -> None:
        if self._settled_here == job.id:
            # handle_work_horse_killed already requeued or failed it: only tidy the worker's side.
            self._settled_here = None
            self._forget_execution(job)
        elif self._lost_redis_in_bookkeeping(job):
            self.log.warning(
                'Worker %s: RQ lost its Redis connection while starting job %s or storing its outcome '
                "(not in the job's own code); the job is not failed for it: it stays reserved and is "
                'settled by its policy (requeued if it never started or is idempotent)',
                self.name,
                job.id,
            )
            self._bookkeeping_lost = job.id
        elif self._may_store_outcome(job):
            super().handle_job_failure(job, queue, *args, **kwargs)  # type: ignore[misc]
        else:
            self._forget_execution(job)

    def _lost_redis_in_bookkeeping(self, job: Job) -> bool:
        """True when RQ is failing a late-ack job because one of its own Redis calls around the job
        (the start transaction, ``Job.perform``'s ``PERSIST``, storing the outcome) lost the
        connection: a worker loss, not a job failure. Errors raised in the job's function or its
        callbacks stay job failures, as in RQ."""
        held = self._held
        if held is None or held.job_id != job.id or held.policy is None or not held.policy.late_ack:
            return False
        error = sys.exc_info()[1]  # RQ calls handle_job_failure in the except block of perform_job
        return isinstance(error, REDIS_CONNECTION_ERRORS) and not raised_in_job_code(error)

    def cleanup_execution(self, job: Job, pipeline: Pipeline) -> None:
        """RQ's, made safe to repeat. RQ lets go of ``self.execution`` while it queues the cleanup; when
        its success transaction is then retried after a ``WatchError`` (redis-py raises one for a
        connection lost while WATCHing), the retry no longer removed the execution, and RQ's registry
        cleanup failed the finished job as abandoned about 90 s later (rq#2424, fixed upstream by
        rq#2466 after RQ 2.12). The retry now removes it too; with a fixed RQ this does nothing."""
        cleaned = self._cleaned_execution
        if getattr(self, 'execution', None) is None and cleaned is not None and cleaned.job_id == job.id:
            self.execution = cleaned
        self._cleaned_execution = getattr(self, 'execution', None)
        super().cleanup_execution(job, pipeline)  # type: ignore[misc]

    def _forget_execution(self, job: Job) -> None:
        """Remove this worker's execution of a job it no longer owns from RQ's StartedJobRegistry:
        left there, RQ's registry cleanup would later fail the job's next run as abandoned."""
        with self.connection.pipeline() as pipe:
            self.cleanup_execution(job, pipeline=pipe)
            pipe.execute()

    # -- horses ----------------------------------------------------------------------------------

    def kill_horse(self, sig: signal.Signals = signal.SIGKILL) -> None:
        self._horse_killed_on_purpose = True
        super().kill_horse(sig)  # type: ignore[misc]

    def handle_work_horse_killed(self, job: Job, retpid: int, ret_val: int, rusage: Any) -> None:
        super().handle_work_horse_killed(job, retpid, ret_val, rusage)  # type: ignore[misc]
        held = self._held
        lost_redis = isinstance(ret_val, int) and os.WIFEXITED(ret_val) and os.WEXITSTATUS(ret_val) == LOST_REDIS_EXIT
        if (
            self._horse_killed_on_purpose
            or held is None
            or held.job_id != job.id
            or held.policy is None
            or not held.policy.late_ack
            or not (held.policy.idempotent or lost_redis)
        ):
            return  # RQ fails it, as it does for any job whose horse died
        loss = 'lost-redis-connection' if lost_redis else 'horse-killed'
        result = self._recoverer().recover_worker(self.name, require_dead=False, job_ids=[job.id], loss=loss)
        if any(o.job_id == job.id and o.action in ('requeued', 'failed') for o in result.outcomes):
            self._settled_here = job.id
            self._held = None

    def main_work_horse(self, job: Job, queue: Queue) -> None:
        die_with_parent(self._acklate_parent_pid)
        super().main_work_horse(job, queue)  # type: ignore[misc]

    def perform_job(self, job: Job, queue: Queue) -> bool:
        """RQ's perform_job (in the horse, or in-process for SimpleWorker), unless recovery took the
        job while this worker was paused after its ownership check in execute_job: then the job is
        not started at all (RQ marks it started only here), so it never runs twice.

        A horse in which RQ lost Redis around a late-ack job exits with :data:`LOST_REDIS_EXIT`
        instead of RQ's 0, so that its main process settles the job."""
        held = self._held
        ours = held is not None and held.job_id == job.id and held.policy is not None and held.policy.late_ack
        if ours and held is not None and not self._still_held(held):
            self._taken_over(job.id, count=False)  # the main process counts it when its ack finds it gone
            self._forget_execution(job)
            return False
        try:
            performed = bool(super().perform_job(job, queue))  # type: ignore[misc]
        except REDIS_CONNECTION_ERRORS:
            if not ours:
                raise
            # Redis was gone for RQ's failure path too: nothing was stored, the job stays reserved.
            self.log.warning('Worker %s: lost Redis while handling job %s; it stays reserved', self.name, job.id)
            self._bookkeeping_lost, performed = job.id, False
        if self._bookkeeping_lost == job.id and self.is_horse:
            # Tell the main process, which settles the job by its policy (handle_work_horse_killed).
            os._exit(LOST_REDIS_EXIT)
        return performed

    # -- shutdown --------------------------------------------------------------------------------

    def teardown(self) -> None:
        if not self.is_horse:
            self._acklate_shutdown()
        super().teardown()  # type: ignore[misc]

    def _acklate_shutdown(self) -> None:
        if self._acklate_liveness is None:
            return  # never bootstrapped
        self._acklate_liveness.stop()
        if self._doorbells is not None:
            self._doorbells.stop()
        try:
            if self.horse_pid:
                # Leaving with a horse still running (an error in the main loop): take it down
                # first, or recovery would put its job back while it runs.
                self.kill_horse()
                self.wait_for_horse()
            self._flush_pending()
            leftovers = self._recoverer().recover_worker(self.name, require_dead=False, loss='worker-shutdown')
            if leftovers.outcomes:
                self.log.warning('Worker %s: settled on shutdown: %s', self.name, leftovers.counts())
            reservations = self._reservations
            reservations.release_lease()
            reservations.forget_if_idle()
        except redis.exceptions.RedisError as exc:
            self.log.warning(
                'Worker %s: could not settle its reservations on shutdown (%s); recovery will once its lease expires',
                self.name,
                exc,
            )


def _reserving_queue_class(base: type[Queue], worker: LateAckWorkerMixin) -> type[Queue]:
    """A subclass of the worker's queue class whose ``dequeue_any`` reserves for ``worker``.

    RQ calls ``self.queue_class.dequeue_any(...)``, a classmethod that knows nothing of the worker,
    so the worker gets its own subclass; queues it builds still behave as ``base`` in every other way.
    """
    if getattr(base, '_acklate_worker', None) is not None:
        base = base.__mro__[1]

    def dequeue_any(
        cls: type[Queue],
        queues: list[Queue],
        timeout: float | None,
        connection: Any = None,
        job_class: type[Job] | None = None,
        serializer: Any = None,
        death_penalty_class: Any = None,
    ) -> tuple[Job, Queue] | None:
        return worker._acklate_dequeue(cls, list(queues), timeout, job_class, serializer, death_penalty_class)

    return type(
        base.__name__,
        (base,),
        {
            '__module__': base.__module__,
            '__qualname__': base.__qualname__,
            '_acklate_worker': worker,
            'dequeue_any': classmethod(dequeue_any),
        },
    )


#: The exit code of a work horse in which RQ lost Redis while starting a late-ack job or storing
#: its outcome (``EX_TEMPFAIL``): its main process settles the job by the job's policy.
LOST_REDIS_EXIT = 75
REDIS_CONNECTION_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
#: RQ's ``Job`` methods that call the job's own code: its function and its callbacks.
_JOB_CODE_ENTRIES = frozenset({'_execute', 'execute_success_callback', 'execute_failure_callback'})


def raised_in_job_code(error: BaseException) -> bool:
    """Whether ``error`` came out of the job's function or a callback (its traceback passes through
    the ``Job`` method that calls them), rather than out of RQ's own bookkeeping."""
    return any(
        frame.f_code.co_name in _JOB_CODE_ENTRIES and isinstance(frame.f_locals.get('self'), Job)
        for frame, _line in traceback.walk_tb(error.__traceback__)
    )


_PR_SET_PDEATHSIG = 1
_SIGKILL = int(signal.SIGKILL)
_ON_LINUX = sys.platform.startswith('linux')


@functools.cache
def _prctl() -> Any:
    """libc's prctl, looked up once in the worker's main process (horses inherit it). Without
    ``use_errno``: every object or library page a horse touches is a copy-on-write fault."""
    return ctypes.CDLL(None).prctl


def die_with_parent(parent_pid: int) -> None:
    """Have the kernel SIGKILL this process when ``parent_pid`` dies (Linux ``PR_SET_PDEATHSIG``).

    RQ puts the work horse in its own process group, so a SIGKILL of the worker's main process
    would leave the horse running the job unseen while recovery hands the job to another worker.
    """
    if not _ON_LINUX:
        return
    if _prctl()(_PR_SET_PDEATHSIG, _SIGKILL, 0, 0, 0) != 0:
        logger.warning('rq-acklate: could not set PR_SET_PDEATHSIG; a horse may outlive its worker')
        return
    if os.getppid() != parent_pid:  # the parent died before the call took effect
        os._exit(1)


def _log_like_rq(
    logging_level: str | None = 'INFO',
    date_format: str | None = None,
    log_format: str | None = None,
    **_: Any,
) -> None:
    """Send rq-acklate's log records where RQ sends the worker's, formatted the same way."""
    from rq.logutils import setup_loghandlers

    options: dict[str, Any] = {'name': 'rq_acklate'}
    if date_format is not None:
        options['date_format'] = date_format
    if log_format is not None:
        options['log_format'] = log_format
    setup_loghandlers(logging_level, **options)


def _class_path(cls: type) -> str:
    return f'{cls.__module__}.{cls.__qualname__}'


class LateAckWorker(LateAckWorkerMixin, Worker):
    """RQ's forking ``Worker`` with late acks: ``rq worker -w rq_acklate.LateAckWorker``."""


class LateAckSimpleWorker(LateAckWorkerMixin, SimpleWorker):
    """RQ's ``SimpleWorker`` (runs jobs in-process) with late acks.

    Its lease is renewed by a thread, so a job that holds the GIL for longer than ``liveness_ttl``
    (C code that never releases it) makes the worker look dead; use :class:`LateAckWorker` for those.
    """
