"""The chaos soak's jobs: each records its starts and ends in Redis so the soak can count runs."""

from __future__ import annotations

import json
import os
import time

import redis
from rq import get_current_job

from rq_acklate import idempotent, late_ack, redeliveries


def _record(event: str) -> None:
    """Append this event to the job's runs. The soak's ``CLIENT KILL`` also cuts the job's own
    connection, and a Redis error raised by a job's own code fails it, as in RQ; this bookkeeping is
    the soak's instrument, not the job under test, so it retries (the soak ignores duplicates: each
    entry is unique by pid and time)."""
    job = get_current_job()
    assert job is not None
    entry = json.dumps({'e': event, 'pid': os.getpid(), 't': time.time(), 'r': redeliveries()})
    for _attempt in range(50):
        try:
            job.connection.rpush(f'chaos:runs:{job.id}', entry)
            return
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
            time.sleep(0.1)
    job.connection.rpush(f'chaos:runs:{job.id}', entry)


def _work(seconds: float) -> None:
    _record('start')
    time.sleep(seconds)
    _record('end')


@late_ack
@idempotent
def idempotent_job(seconds: float) -> None:
    _work(seconds)


@late_ack
def late_job(seconds: float) -> None:
    _work(seconds)


def plain_job(seconds: float) -> None:
    _work(seconds)
