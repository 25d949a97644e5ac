"""A worker that cannot run safely refuses to start, with a clear message, and loses nothing."""

from __future__ import annotations

import sys

import pytest
from redis import Redis
from rq import Queue

import jobs


def rq_worker(workers, *args, env=None, url=None):
    return workers.run(
        [sys.executable, '-m', 'rq.cli', 'worker', '--url', url or workers.redis_url, '--burst', *args],
        env=env,
    )


@pytest.mark.parametrize(
    ('env', 'message'),
    [
        (
            {'RQ_ACKLATE_LIVENESS_TTL': 'soon'},
            "RQ_ACKLATE_LIVENESS_TTL must be a number of seconds, got 'soon'",
        ),
        ({'RQ_ACKLATE_DEFAULT_POLICY': 'maybe'}, 'RQ_ACKLATE_DEFAULT_POLICY must be one of early, late'),
        ({'RQ_ACKLATE_HEARTBEAT_INTERVAL': '5'}, 'must be at most half of liveness_ttl'),
        ({'RQ_ACKLATE_LIVENES_TTL': '5'}, 'unknown setting RQ_ACKLATE_LIVENES_TTL'),
    ],
)
def test_invalid_settings_stop_the_worker_with_a_clear_message(connection, workers, env, message):
    job = Queue(connection=connection).enqueue(jobs.late_job)
    result = rq_worker(workers, '-w', 'rq_acklate.LateAckWorker', env=env)
    assert result.returncode == 1
    assert message in result.stderr + result.stdout
    assert Queue(connection=connection).get_job_ids() == [job.id]


def test_unreachable_redis_is_a_clear_error(workers):
    result = rq_worker(workers, '-w', 'rq_acklate.LateAckWorker', url='redis://127.0.0.1:1/0')
    assert result.returncode == 1
    assert 'Connection refused' in result.stderr + result.stdout


def test_redis_older_than_6_2_stops_the_worker(old_redis_url, workers):
    # redis-py >= 8 opens with HELLO 3, which Redis 5 does not know: the URL asks for RESP2.
    connection = Redis.from_url(old_redis_url)
    assert connection.info('server')['redis_version'].startswith('5.')
    job = Queue(connection=connection).enqueue(jobs.late_job)
    result = rq_worker(workers, '-w', 'rq_acklate.LateAckWorker', url=old_redis_url)
    assert result.returncode == 1
    assert 'rq-acklate needs Redis >= 6.2 (for LMOVE/BLMOVE); this server is 5.0.6' in result.stderr
    assert Queue(connection=connection).get_job_ids() == [job.id]
