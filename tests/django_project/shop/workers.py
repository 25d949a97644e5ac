"""A project's own worker class with late acks: the mixin goes first in the bases."""

from __future__ import annotations

from typing import Any

import rq

from rq_acklate import LateAckWorkerMixin


class RecordingWorker(LateAckWorkerMixin, rq.Worker):
    """Records the class hierarchy of the queue each job came from, so tests can see that the worker
    uses django-rq's queue class."""

    def execute_job(self, job: Any, queue: Any) -> None:
        names = [cls.__name__ for cls in type(queue).__mro__]
        self.connection.rpush(f'test:queue-class:{job.id}', *names)
        super().execute_job(job, queue)
