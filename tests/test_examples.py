"""Every example runs as written, against the test Redis."""

from __future__ import annotations

import sys

from rq import Queue

from rq_acklate import keys

import jobs
from helpers import REPO_DIR

EXAMPLES = REPO_DIR / 'examples'


def test_basic_example(connection, workers):
    basic = EXAMPLES / 'basic'
    enqueue = workers.run([sys.executable, 'enqueue.py', workers.redis_url], cwd=basic)
    assert enqueue.returncode == 0, enqueue.stderr
    job_ids = [line.split()[-1] for line in enqueue.stdout.splitlines()]
    assert len(job_ids) == 3
    command = [sys.executable, '-m', 'rq.cli', 'worker', '--url', workers.redis_url]
    work = workers.run([*command, '-w', 'rq_acklate.LateAckWorker', '--burst', 'default'], cwd=basic)
    assert work.returncode == 0, work.stderr
    assert [connection.hget(f'rq:job:{i}', 'status') for i in job_ids] == [b'finished'] * 3
    assert connection.hget(keys.STATS, 'reserved') == b'3'


def test_custom_worker_example(connection, workers):
    job = Queue(connection=connection).enqueue(jobs.idempotent_job)
    result = workers.run([sys.executable, str(EXAMPLES / 'custom_worker.py'), workers.redis_url, 'default'])
    assert result.returncode == 0, result.stderr
    assert f'audited-worker: starting {job.id} from default' in result.stderr
    assert f'audited-worker: done with {job.id}: finished' in result.stderr
    assert connection.hget(keys.STATS, 'acked') == b'1'


def test_signals_logging_example(connection, workers):
    job = Queue(connection=connection).enqueue(jobs.idempotent_job)
    result = workers.run([sys.executable, str(EXAMPLES / 'signals_logging.py'), workers.redis_url, 'default'])
    assert result.returncode == 0, result.stderr
    assert f"rq_acklate.events: job_reserved {{'job_id': '{job.id}'" in result.stderr
    assert f"rq_acklate.events: job_acked {{'job_id': '{job.id}'" in result.stderr
    assert "counts: {'job_reserved': 1, 'job_acked': 1}" in result.stderr
