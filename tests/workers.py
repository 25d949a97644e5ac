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
