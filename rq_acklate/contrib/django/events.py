"""Log every rq-acklate signal through the logger ``rq_acklate.events``, so Django's ``LOGGING``
decides where the events go (``RQ_ACKLATE['SIGNALS_TO_LOG'] = True`` connects this at startup).

A line reads ``job_requeued job_id=... queue=default worker_name=... redeliveries=1 reason=worker-lost``;
the payload is also on the record as ``record.acklate`` (and the signal name as
``record.acklate_signal``) for structured handlers. Losses and poison pills are errors, requeues and
takeovers warnings, the rest info.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from rq_acklate import signals

logger = logging.getLogger('rq_acklate.events')

LEVELS = {
    'job_reserved': logging.INFO,
    'job_acked': logging.INFO,
    'job_requeued': logging.WARNING,
    'job_worker_lost': logging.ERROR,
    'job_poisoned': logging.ERROR,
    'reservation_taken_over': logging.WARNING,
    'worker_recovered': logging.INFO,
}

Receiver = Callable[..., None]

#: The connected receivers, by signal name. blinker holds receivers weakly by default; these are
#: connected with ``weak=False`` and kept here too, so that :func:`disconnect` can find them.
_receivers: dict[str, Receiver] = {}


def receiver_for(name: str) -> Receiver:
    level = LEVELS.get(name, logging.INFO)

    def log_signal(sender: Any, **payload: Any) -> None:
        details = ' '.join(f'{key}={value}' for key, value in payload.items())
        logger.log(level, '%s %s', name, details, extra={'acklate_signal': name, 'acklate': payload})

    return log_signal


def connect() -> None:
    """Connect a logging receiver to every signal (again: a no-op)."""
    for signal in signals.ALL_SIGNALS:
        if signal.name not in _receivers:
            receiver = receiver_for(signal.name)
            signal.connect(receiver, weak=False)
            _receivers[signal.name] = receiver


def disconnect() -> None:
    """Undo :func:`connect`."""
    for signal in signals.ALL_SIGNALS:
        receiver = _receivers.pop(signal.name, None)
        if receiver is not None:
            signal.disconnect(receiver)


def connected() -> bool:
    return bool(_receivers)
