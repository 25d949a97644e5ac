"""Worker classes for tests: the real late-ack worker, with a pause at one point of a job's life
so a test can SIGKILL it exactly there. The pause announces itself in Redis first."""

from __future__ import annotations

import os
import time
from typing import Any

from rq.worker import RandomWorker, RoundRobinWorker

from rq_acklate import LateAckSimpleWorker, LateAckWorker, LateAckWorkerMixin, signals


def _pause(worker: Any, point: str, job_id: str) -> None:
    worker.connection.rpush(f'test:paused:{worker.name}', f'{point}:{job_id}')
    time.sleep(float(os.environ.get('ACKLATE_TEST_PAUSE', '60')))


class PauseBeforeStartWorker(LateAckWorker):
    """Holds each reserved job for ACKLATE_TEST_PAUSE seconds before starting it."""

    def execute_job(self, job: Any, queue: Any) -> None:
        _pause(self, 'before-start', job.id)
        super().execute_job(job, queue)


class PauseBeforeAckWorker(LateAckWorker):
    """Holds each job for ACKLATE_TEST_PAUSE seconds after RQ stored its outcome, before the ack."""

    def execute_job(self, job: Any, queue: Any) -> None:
        super().execute_job(job, queue)
        _pause(self, 'before-ack', job.id)


class PauseBeforeStartSimpleWorker(LateAckSimpleWorker):
    def execute_job(self, job: Any, queue: Any) -> None:
        _pause(self, 'before-start', job.id)
        super().execute_job(job, queue)


# Receivers connected in the worker process: one raises on every event, one records events in Redis.
def _raising_receiver(sender: Any, **payload: Any) -> None:
    raise RuntimeError('a receiver that always raises')


def _recording_receiver(sender: Any, **payload: Any) -> None:
    import json

    sender.connection.rpush('test:signals', json.dumps({'sender': sender.name, **payload}, default=str))


for _signal in signals.ALL_SIGNALS:
    _signal.connect(_raising_receiver)
    _signal.connect(_recording_receiver)


class SignalRecordingWorker(LateAckWorker):
    """A LateAckWorker in a process where every signal has a raising and a recording receiver."""


class LateAckRoundRobinWorker(LateAckWorkerMixin, RoundRobinWorker):
    """RQ's round-robin worker with late acks: its queue order, our reservations."""


class LateAckRandomWorker(LateAckWorkerMixin, RandomWorker):
    """RQ's random-order worker with late acks."""


class PauseAfterPrepareWorker(LateAckWorker):
    """Holds each job for ACKLATE_TEST_PAUSE seconds after RQ created its execution, before the fork:
    the window between the worker's ownership check and the job's start."""

    def prepare_execution(self, job: Any) -> Any:
        execution = super().prepare_execution(job)
        _pause(self, 'after-prepare', job.id)
        return execution


def _closed_port() -> int:
    """A loopback port nothing listens on: connecting to it is refused at once."""
    import socket

    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return int(sock.getsockname()[1])


class _LoseRedisAtStart:
    """Redis becomes unreachable for RQ's start transaction of each job whose id is in the set
    ``test:lose-redis`` (once per job): the connection pool is pointed at a closed port, so the
    ConnectionError is real. With ``ACKLATE_TEST_OUTAGE=horse`` Redis stays unreachable for the rest
    of the process (RQ cannot record the failure either); otherwise it comes back right after."""

    def prepare_job_execution(self, job: Any, *args: Any, **kwargs: Any) -> None:
        connection: Any = self.connection  # type: ignore[attr-defined]
        if not connection.srem('test:lose-redis', job.id):
            super().prepare_job_execution(job, *args, **kwargs)  # type: ignore[misc]
            return
        pool = connection.connection_pool
        port = pool.connection_kwargs['port']
        pool.connection_kwargs['port'] = _closed_port()
        pool.disconnect()
        pool.reset()  # pooled connections keep their own port: new ones take the closed one
        try:
            super().prepare_job_execution(job, *args, **kwargs)  # type: ignore[misc]
        finally:
            if os.environ.get('ACKLATE_TEST_OUTAGE') != 'horse':
                pool.connection_kwargs['port'] = port
                pool.disconnect()
                pool.reset()


class LoseRedisAtStartWorker(_LoseRedisAtStart, LateAckWorker):
    pass


class LoseRedisAtStartSimpleWorker(_LoseRedisAtStart, LateAckSimpleWorker):
    pass


class _DropConnectionBeforeSuccessExec:
    """For each job whose id is in the set ``test:drop-exec`` (once per job), the server closes the
    connection of RQ's success transaction after ``MULTI`` and before ``EXEC`` (``CLIENT KILL ADDR``):
    redis-py turns that into a ``WatchError`` and RQ runs the whole transaction again."""

    def increment_successful_job_count(self, pipeline: Any) -> None:
        super().increment_successful_job_count(pipeline)  # type: ignore[misc]
        execution = getattr(self, 'execution', None)
        connection: Any = self.connection  # type: ignore[attr-defined]
        if execution is None or pipeline.connection is None or not connection.srem('test:drop-exec', execution.job_id):
            return
        host, port = pipeline.connection._sock.getsockname()[:2]
        connection.execute_command('CLIENT', 'KILL', 'ADDR', f'{host}:{port}')


class DropConnectionBeforeSuccessExecWorker(_DropConnectionBeforeSuccessExec, LateAckWorker):
    pass


class DropConnectionBeforeSuccessExecSimpleWorker(_DropConnectionBeforeSuccessExec, LateAckSimpleWorker):
    pass
