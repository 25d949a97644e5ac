"""Job functions of the test project. Each run records a start and an end event in Redis
(``test:runs:<job id>``, as tests/jobs.py does), so tests can count runs."""

from __future__ import annotations

import json
import os
import time

from rq import get_current_job

from rq_acklate import idempotent, late_ack, redeliveries


def _record(event: str) -> None:
    job = get_current_job()
    assert job is not None
    entry = {'event': event, 'pid': os.getpid(), 'redeliveries': redeliveries(), 'at': time.time()}
    job.connection.rpush(f'test:runs:{job.id}', json.dumps(entry))


def _run(seconds: float) -> str:
    _record('start')
    time.sleep(seconds)
    _record('end')
    return 'ok'


@late_ack
def charge(seconds: float = 0.0) -> str:
    """Late ack, not idempotent: failed, not rerun, if its worker dies."""
    return _run(seconds)


@late_ack
@idempotent
def resize(seconds: float = 0.0) -> str:
    """Late ack and idempotent: redelivered if its worker dies."""
    return _run(seconds)


@late_ack(idempotent=True)
def slow_once(seconds: float) -> str:
    """Takes ``seconds`` the first time, no time when redelivered: a job to kill a worker under."""
    return _run(seconds if redeliveries() == 0 else 0.0)


def legacy_rebuild() -> str:
    """Not decorated: late ack and idempotent through RQ_ACKLATE's LATE_ACK and IDEMPOTENT patterns."""
    return _run(0.0)


def plain() -> str:
    """Not decorated, not matched: early ack, RQ's default."""
    return _run(0.0)
