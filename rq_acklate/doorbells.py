"""Waking a worker that listens on several queues, without taking anything from them.

Redis has no blocking move from several lists, and RQ's multi-queue ``BLPOP`` loses the job when
its reply is lost. So the worker takes jobs only with ``reserve.lua`` (atomic, in priority order)
and uses one *doorbell* per queue to know when to try again: a thread blocked on
``BLMOVE q q LEFT LEFT``, which pops the head of ``q`` and pushes it straight back. The list is
unchanged, nothing can be lost if the reply is, and the call returns the moment ``q`` holds a job.

A doorbell that rang stays quiet until the worker is idle again and re-arms it, so a busy worker
with a backlog does not spin. Idle workers cost no commands beyond one ``BLMOVE`` per doorbell per
``max_block`` seconds. Every idle worker on a queue wakes for a new job and one of them takes it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence

from redis import Redis
from redis.exceptions import RedisError

logger = logging.getLogger('rq_acklate.doorbells')


class Doorbells:
    def __init__(self, connection: Redis, queue_keys: Sequence[str], worker_name: str, max_block: float = 30.0) -> None:
        self.connection = connection
        self.queue_keys = list(queue_keys)
        self.worker_name = worker_name
        self.max_block = max_block
        self._rang = threading.Event()
        self._armed = [threading.Event() for _ in self.queue_keys]
        self._stopped = False
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for index, key in enumerate(self.queue_keys):
            thread = threading.Thread(
                target=self._listen, args=(index, key), name=f'rq-acklate-doorbell-{key}', daemon=True
            )
            thread.start()
            self._threads.append(thread)

    @property
    def started(self) -> bool:
        return bool(self._threads)

    def arm(self) -> None:
        """Let every doorbell that rang wait for its queue again. Call only when idle."""
        self._rang.clear()
        for armed in self._armed:
            armed.set()

    def wait(self, timeout: float) -> bool:
        """Block until a doorbell rings (True) or ``timeout`` passes (False)."""
        return self._rang.wait(timeout)

    def stop(self) -> None:
        self._stopped = True
        for armed in self._armed:
            armed.set()

    def _listen(self, index: int, key: str) -> None:
        armed = self._armed[index]
        failures = 0
        while True:
            armed.wait()
            if self._stopped:
                return
            try:
                # Redis accepts a fractional timeout; redis-py's annotation says int.
                head = self.connection.blmove(key, key, self.max_block, 'LEFT', 'LEFT')  # type: ignore[arg-type]
                rang = head is not None
                failures = 0
            except (RedisError, OSError, ValueError) as exc:  # ValueError: a socket closed under us
                if self._stopped:
                    return
                failures += 1
                if failures == 1 or failures % 60 == 0:
                    logger.warning('rq-acklate: doorbell of %s for %s failed: %s', key, self.worker_name, exc)
                time.sleep(min(5.0, 0.1 * 2 ** min(failures, 6)))
                rang = True  # something may have arrived while we were cut off: look
            if not rang or self._stopped:
                continue
            armed.clear()
            self._rang.set()
