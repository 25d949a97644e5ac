"""The chaos soak's jobs: each records its starts and ends in Redis so the soak can count runs."""

from __future__ import annotations

import json
import os
import time

from rq import get_current_job

from rq_acklate import idempotent, late_ack, redeliveries


def _record(event: str) -> None:
    job = get_current_job()
    assert job is not None
    entry = {'e': event, 'pid': os.getpid(), 't': time.time(), 'r': redeliveries()}
    job.connection.rpush(f'chaos:runs:{job.id}', json.dumps(entry))


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
