"""Late-ack job functions for the rq-acklate side of the benchmarks (plain ones: bench_plain.py)."""

from __future__ import annotations

import time

from rq import get_current_job

from rq_acklate import idempotent, late_ack, redeliveries


@late_ack
@idempotent
def noop_late() -> None:
    """A late-ack job that does nothing: every run pays for its reservation record and its ack."""


def _record_start() -> None:
    job = get_current_job()
    assert job is not None
    job.connection.rpush(f'bench:starts:{job.id}', f'{time.time():.6f}:{redeliveries()}')


@late_ack
@idempotent
def stamp_late() -> None:
    _record_start()


@late_ack
@idempotent
def sleep_late(seconds: float) -> None:
    """Records each start, then sleeps (for recovery latency)."""
    _record_start()
    time.sleep(seconds)
