"""Every Redis key rq-acklate writes is named here, and only here.

Keys owned by rq-acklate (prefix ``rq:acklate:``):

=================================  ======  ===========================================================
key                                type    meaning
=================================  ======  ===========================================================
``rq:acklate:workers``             SET     names of late-ack workers that may hold reservations; a
                                           worker adds itself at startup and with every reservation,
                                           recovery removes it once it is dead and holds nothing
``rq:acklate:worker:<name>``       HASH    queues, pid, host, class and heartbeat interval of a worker,
                                           so ``status`` can describe it after RQ's worker key expired
``rq:acklate:alive:<name>``        STRING  the worker's liveness lease (``SET PX``), renewed every
                                           heartbeat interval; a missing key means the worker is dead
``rq:acklate:reserved:<name>``     LIST    ids of jobs the worker took off a queue and has not acked;
                                           the destination of the atomic ``LMOVE``/``BLMOVE``
``rq:acklate:reservations:<name>`` HASH    job id -> start record (JSON: policy, ``started_at`` before
                                           the start, reservation time), written when a late-ack job
                                           starts, so recovery never imports user code
``rq:acklate:recovery-lease``      STRING  held (``SET NX PX``) by the one worker that scans for dead
                                           workers this interval: cluster-wide cost is O(workers)
``rq:acklate:stats``               HASH    cluster-wide counters (``HINCRBY`` inside round trips the
                                           worker makes anyway)
``rq:acklate:quarantine``          HASH    job id -> JSON reason, for job hashes that could not be read
=================================  ======  ===========================================================

Fields rq-acklate adds to RQ's own job hash ``rq:job:<id>``:

* ``acklate_redeliveries``: how many times recovery put the job back after it had started.
  The worker copies it into ``job.meta`` (see :data:`rq_acklate.policy.REDELIVERIES_META_KEY`).

RQ keys rq-acklate reads or updates during recovery, named with RQ's own conventions:
``rq:queue:<q>``, ``rq:queues``, ``rq:wip:<q>`` (StartedJobRegistry), ``rq:failed:<q>``,
``rq:executions:<id>``, ``rq:results:<id>``, ``rq:job:<id>:dependents``, ``rq:worker:<name>``.
"""

from __future__ import annotations

from dataclasses import dataclass

PREFIX = 'rq:acklate:'

WORKERS = PREFIX + 'workers'
RECOVERY_LEASE = PREFIX + 'recovery-lease'
STATS = PREFIX + 'stats'
QUARANTINE = PREFIX + 'quarantine'

#: Field in RQ's job hash that counts redeliveries after a worker loss.
REDELIVERIES_FIELD = 'acklate_redeliveries'

# RQ's own key conventions (rq 2.x), kept here so every key name lives in one module.
RQ_QUEUES = 'rq:queues'
RQ_QUEUE_PREFIX = 'rq:queue:'


def rq_queue(queue_name: str) -> str:
    return RQ_QUEUE_PREFIX + queue_name


def rq_job(job_id: str) -> str:
    return 'rq:job:' + job_id


def rq_job_dependents(job_id: str) -> str:
    return f'rq:job:{job_id}:dependents'


def rq_wip(queue_name: str) -> str:
    return 'rq:wip:' + queue_name


def rq_failed(queue_name: str) -> str:
    return 'rq:failed:' + queue_name


def rq_executions(job_id: str) -> str:
    return 'rq:executions:' + job_id


def rq_results(job_id: str) -> str:
    return 'rq:results:' + job_id


def rq_worker(worker_name: str) -> str:
    return 'rq:worker:' + worker_name


@dataclass(frozen=True)
class WorkerKeys:
    """The keys that belong to one late-ack worker."""

    name: str

    @property
    def alive(self) -> str:
        return f'{PREFIX}alive:{self.name}'

    @property
    def reserved(self) -> str:
        return f'{PREFIX}reserved:{self.name}'

    @property
    def reservations(self) -> str:
        return f'{PREFIX}reservations:{self.name}'

    @property
    def info(self) -> str:
        return f'{PREFIX}worker:{self.name}'

    @property
    def rq_worker(self) -> str:
        return rq_worker(self.name)
