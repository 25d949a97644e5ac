"""Job functions the tests enqueue. Each run records a start and an end event in Redis, so tests
can assert exactly how often a job started and finished, and on which process."""

from __future__ import annotations

import json
import os
import signal
import time

from rq import get_current_job

from rq_acklate import idempotent, late_ack, redeliveries


def _record(event: str, **extra: object) -> None:
    job = get_current_job()
    assert job is not None
    entry = {'event': event, 'pid': os.getpid(), 'redeliveries': redeliveries(), 'at': time.time(), **extra}
    job.connection.rpush(f'test:runs:{job.id}', json.dumps(entry))


def _run(seconds: float, result: object) -> object:
    _record('start')
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
    _record('end')
    return result


@late_ack
@idempotent
def idempotent_job(seconds: float = 0.0, result: object = 'ok') -> object:
    return _run(seconds, result)


@late_ack
def late_job(seconds: float = 0.0, result: object = 'ok') -> object:
    return _run(seconds, result)


def plain_job(seconds: float = 0.0, result: object = 'ok') -> object:
    return _run(seconds, result)


@idempotent
@late_ack(max_redeliveries=2)
def poison_job() -> None:
    """Kills its own work horse, like an OOM kill, every time it runs."""
    _record('start')
    os.kill(os.getpid(), signal.SIGKILL)


@late_ack(idempotent=True)
def failing_job() -> None:
    _record('start')
    raise ValueError('boom')


def undecorated(seconds: float = 0.0) -> object:
    return _run(seconds, 'undecorated')


@late_ack(idempotent=True)
def returns_retry() -> object:
    """Asks RQ for a retry by returning Retry, the first two times it runs."""
    from rq import Retry

    _record('start')
    job = get_current_job()
    assert job is not None
    if len(job.connection.lrange(f'test:runs:{job.id}', 0, -1)) < 3:
        return Retry(max=3)
    _record('end')
    return 'done after retries'


@late_ack(idempotent=True)
def returns(value: object) -> object:
    _record('start')
    _record('end')
    return value


def record_success(job, connection, result, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
    connection.rpush('test:callbacks', f'success:{job.id}:{result}')


def record_failure(job, connection, type, value, traceback) -> None:  # type: ignore[no-untyped-def]
    connection.rpush('test:callbacks', f'failure:{job.id}:{type.__name__}')


@late_ack(idempotent=True)
def raises_connection_error() -> None:
    """A job whose own code loses Redis: a job failure, as in RQ, not a worker loss."""
    import redis

    _record('start')
    raise redis.exceptions.ConnectionError('the job lost its own connection')
