"""Plain job functions for the plain-RQ side of the benchmarks (this module does not import rq-acklate)."""

from __future__ import annotations

import time

from rq import get_current_job


def noop() -> None:
    """Does nothing."""


def stamp() -> None:
    """Records when it started (for pickup latency)."""
    job = get_current_job()
    assert job is not None
    job.connection.rpush(f'bench:starts:{job.id}', f'{time.time():.6f}:0')


def sleep_plain(seconds: float) -> None:
    stamp()
    time.sleep(seconds)
