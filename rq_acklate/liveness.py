"""Worker liveness: a lease in Redis, renewed by a thread of the worker's main process.

The lease is ``rq:acklate:alive:<worker>``, set with ``PX liveness_ttl``. A thread renews it every
``heartbeat_interval`` whatever the main thread does: blocking in a dequeue, waiting for a work
horse, or (for ``LateAckSimpleWorker``) running a job of any length. A stopped process (SIGSTOP)
stops the thread too, so a frozen worker stops renewing and its jobs are recovered.

The thread records, in memory shared with the work horses it forks, when the lease was last
renewed and how many times it lapsed. Before a worker stores a job's outcome or starts a job, it
reads that record: if the lease is fresh, no recoverer can have taken the job and nothing needs
checking; only after a pause does it ask Redis (``fence.lua``).
"""

from __future__ import annotations

import logging
import mmap
import struct
import threading
import time
from collections.abc import Callable

from redis import Redis
from redis.exceptions import RedisError

from .keys import WorkerKeys
from .settings import Settings

logger = logging.getLogger('rq_acklate.liveness')

_LAYOUT = struct.Struct('=QdQ')  # sequence number, last renewal (monotonic seconds), lapse count
_SEQ = struct.Struct('=Q')
_DATA = struct.Struct('=dQ')


class LeaseState:
    """When the lease was last renewed, shared across ``fork()`` (one writer: the liveness thread).

    A sequence lock keeps a reader from seeing half of an update.
    """

    def __init__(self) -> None:
        self._buffer = mmap.mmap(-1, _LAYOUT.size)  # anonymous and MAP_SHARED: visible to forked horses
        self._lock = threading.Lock()
        _LAYOUT.pack_into(self._buffer, 0, 0, 0.0, 0)

    def renewed(self, at: float, lapsed: bool) -> None:
        with self._lock:
            seq, _last, lapses = _LAYOUT.unpack_from(self._buffer, 0)
            _SEQ.pack_into(self._buffer, 0, seq + 1)  # odd: an update is under way
            _DATA.pack_into(self._buffer, _SEQ.size, at, lapses + (1 if lapsed else 0))
            _SEQ.pack_into(self._buffer, 0, seq + 2)

    def read(self) -> tuple[float, int]:
        """``(last renewal, lapse count)``."""
        while True:
            seq, last, lapses = _LAYOUT.unpack_from(self._buffer, 0)
            if seq % 2 == 0 and _SEQ.unpack_from(self._buffer, 0)[0] == seq:
                return last, lapses

    def fresh_until(self, lapses_seen: int, ttl: float, margin: float) -> float:
        """Until when (monotonic seconds) recovery cannot touch this worker's reservations, as far
        as the last renewal tells: ``margin`` before it can expire; 0 if it lapsed since ``lapses_seen``.
        A later lapse needs the lease to expire first, so the answer stays true until then."""
        last, lapses = self.read()
        return last + ttl - margin if lapses == lapses_seen and last > 0 else 0.0

    def is_fresh(self, lapses_seen: int, ttl: float, margin: float) -> bool:
        """True when the lease has not lapsed since ``lapses_seen`` and stays valid for ``margin`` more
        seconds: recovery cannot touch this worker's reservations before then."""
        return time.monotonic() < self.fresh_until(lapses_seen, ttl, margin)


def lease_value() -> str:
    """What the liveness key holds: the Unix time of the renewal, for ``rq-acklate status``."""
    return f'{time.time():.3f}'


class LivenessThread(threading.Thread):
    """Renews the lease every ``heartbeat_interval`` and calls ``on_recovery_due`` every
    ``recovery_interval``; after a lapse, calls ``on_lapse``. Uses the worker's connection pool."""

    def __init__(
        self,
        connection: Redis,
        keys: WorkerKeys,
        settings: Settings,
        state: LeaseState,
        on_recovery_due: Callable[[], None] | None = None,
        on_lapse: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(name=f'rq-acklate-liveness-{keys.name}', daemon=True)
        self.on_lapse = on_lapse
        self.connection = connection
        self.keys = keys
        self.settings = settings
        self.state = state
        self.on_recovery_due = on_recovery_due
        self._stop_event = threading.Event()
        self._error_logged_at = 0.0

    def acquire(self) -> None:
        """Create the lease (before the thread starts, so the worker is alive from its first dequeue)."""
        started = time.monotonic()
        self.connection.set(self.keys.alive, lease_value(), px=self.settings.liveness_ttl_ms)
        self.state.renewed(started, lapsed=False)

    def renew(self) -> None:
        started = time.monotonic()
        try:
            renewed = self.connection.set(self.keys.alive, lease_value(), px=self.settings.liveness_ttl_ms, xx=True)
            lapsed = not renewed
            if lapsed:
                logger.warning(
                    'rq-acklate: worker %s lost its liveness lease (paused or cut off for longer than %ss); '
                    'renewing it, and checking each job before storing its outcome',
                    self.keys.name,
                    self.settings.liveness_ttl,
                )
                self.connection.set(self.keys.alive, lease_value(), px=self.settings.liveness_ttl_ms)
                if self.on_lapse is not None:
                    self.on_lapse()  # recovery may have forgotten this worker meanwhile: rejoin the registry
            self.state.renewed(started, lapsed=lapsed)
        except RedisError as exc:
            self._log_error('renew the liveness lease', exc)

    def run(self) -> None:
        interval = self.settings.heartbeat_interval
        next_recovery = time.monotonic() + self.settings.recovery_interval
        while not self._stop_event.wait(interval):
            self.renew()
            if self.on_recovery_due is not None and time.monotonic() >= next_recovery:
                next_recovery = time.monotonic() + self.settings.recovery_interval
                try:
                    self.on_recovery_due()
                except RedisError as exc:
                    self._log_error('run recovery', exc)
                except Exception:
                    logger.exception('rq-acklate: recovery pass failed; will try again next interval')

    def renew_if_due(self) -> None:
        """Called between recovery batches so a long pass never starves the lease."""
        last, _ = self.state.read()
        if time.monotonic() - last >= self.settings.heartbeat_interval:
            self.renew()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop_event.set()
        if self.is_alive() and threading.current_thread() is not self:
            self.join(timeout)

    def _log_error(self, what: str, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._error_logged_at > 10:
            self._error_logged_at = now
            logger.warning('rq-acklate: could not %s for worker %s: %s', what, self.keys.name, exc)
