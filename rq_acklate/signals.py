"""Named blinker signals for everything rq-acklate does to a job.

Connect receivers with ``signals.job_requeued.connect(receiver)``. The sender is the worker
(for events inside a worker) or the :class:`~rq_acklate.recovery.Recoverer`. Keyword payloads:

=========================  ==================================================================
signal                     keyword arguments
=========================  ==================================================================
``job_reserved``           ``job_id``, ``queue``, ``worker_name``, ``redeliveries``
``job_acked``              ``job_id``, ``queue``, ``worker_name``, ``status`` (the job's final RQ status)
``job_requeued``           ``job_id``, ``queue``, ``worker_name`` (the worker that lost it),
                           ``redeliveries``, ``reason`` (``never-started``, ``worker-lost``,
                           ``horse-killed``, ``lost-reply`` ...)
``job_worker_lost``        ``job_id``, ``queue``, ``worker_name``, ``reason``: a non-idempotent job
                           failed because its worker died while it ran
``job_poisoned``           ``job_id``, ``queue``, ``worker_name``, ``redeliveries``,
                           ``max_redeliveries``: failed after too many redeliveries
``reservation_taken_over`` ``job_id``, ``worker_name``: a worker that was paused past its lease
                           found its job settled by recovery, and did not record it again
``worker_recovered``       ``worker_name``, ``counts`` (dict action -> number of jobs)
=========================  ==================================================================

A receiver that raises is logged and skipped; it never breaks a worker or loses a job.
"""

from __future__ import annotations

import logging
from typing import Any

from blinker import NamedSignal, Namespace

logger = logging.getLogger('rq_acklate.signals')

namespace = Namespace()

job_reserved: NamedSignal = namespace.signal('job_reserved')
job_acked: NamedSignal = namespace.signal('job_acked')
job_requeued: NamedSignal = namespace.signal('job_requeued')
job_worker_lost: NamedSignal = namespace.signal('job_worker_lost')
job_poisoned: NamedSignal = namespace.signal('job_poisoned')
reservation_taken_over: NamedSignal = namespace.signal('reservation_taken_over')
worker_recovered: NamedSignal = namespace.signal('worker_recovered')

ALL_SIGNALS: tuple[NamedSignal, ...] = (
    job_reserved,
    job_acked,
    job_requeued,
    job_worker_lost,
    job_poisoned,
    reservation_taken_over,
    worker_recovered,
)


def send(signal: NamedSignal, sender: Any, **payload: Any) -> None:
    """Send ``signal`` to each receiver in turn; a receiver that raises is logged, the rest still run."""
    if not signal.receivers:
        return
    for receiver in signal.receivers_for(sender):
        try:
            receiver(sender, **payload)
        except Exception:
            logger.exception('rq-acklate: receiver %r of signal %s raised; ignored', receiver, signal.name)
