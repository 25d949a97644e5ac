"""rq-acklate: Celery-style late acks for RQ.

A late-ack job stays reserved by its worker until RQ has stored its outcome. When the worker dies,
recovery puts the job back (idempotent jobs) or fails it visibly (the others); it is never lost
and never silently run twice.
"""

from __future__ import annotations

from .errors import ConfigurationError, RedisVersionError
from .policy import REDELIVERIES_META_KEY, Policy, idempotent, late_ack, policy_meta, redeliveries
from .recovery import RecoveryReport, recover
from .settings import Settings
from .worker import LateAckSimpleWorker, LateAckWorker, LateAckWorkerMixin

__version__ = '0.1.0'


__all__ = [
    'REDELIVERIES_META_KEY',
    'ConfigurationError',
    'LateAckSimpleWorker',
    'LateAckWorker',
    'LateAckWorkerMixin',
    'Policy',
    'RecoveryReport',
    'RedisVersionError',
    'Settings',
    '__version__',
    'idempotent',
    'late_ack',
    'policy_meta',
    'recover',
    'redeliveries',
]
