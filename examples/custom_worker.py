"""The late-ack mixin on your own worker class.

    python custom_worker.py REDIS_URL [QUEUE...]      # runs it in burst mode
    rq worker -w custom_worker.AuditedWorker default   # or through RQ's CLI (with this directory on sys.path)

Put LateAckWorkerMixin first, in front of any RQ worker class. Settings can be class attributes.
"""

from __future__ import annotations

import logging
import sys

import rq
from redis import Redis

from rq_acklate import LateAckWorkerMixin

log = logging.getLogger('audited-worker')


class AuditedWorker(LateAckWorkerMixin, rq.Worker):
    """A forking worker with late acks, a shorter lease, and its own logging around each job."""

    liveness_ttl = 10
    heartbeat_interval = 2

    def execute_job(self, job, queue):  # type: ignore[no-untyped-def]
        log.info('starting %s from %s', job.id, queue.name)
        super().execute_job(job, queue)
        log.info('done with %s: %s', job.id, job.get_status(refresh=True).value)


def main(url: str, *queues: str) -> bool:
    logging.basicConfig(level=logging.INFO, format='%(name)s: %(message)s')
    worker = AuditedWorker(list(queues) or ['default'], connection=Redis.from_url(url))
    return worker.work(burst=True)


if __name__ == '__main__':
    main(*sys.argv[1:])
