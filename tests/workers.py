"""Worker classes for tests: the real late-ack worker, with a pause at one point of a job's life
so a test can SIGKILL it exactly there. The pause announces itself in Redis first."""

from __future__ import annotations

import os
import time
from typing import Any

from rq_acklate import LateAckSimpleWorker, LateAckWorker


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
