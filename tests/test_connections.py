"""Serializers and connections: JSON jobs, TLS (rediss://), ACL users, Sentinel, scripts flushed from the
server. Each runs real workers and asserts what happened to every job."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import Redis
from rq import Queue
from rq.serializers import JSONSerializer

from rq_acklate import keys, recover

import jobs
from helpers import TESTS_DIR, finished_runs, started_runs, wait_until
from states import dead_worker, reserve, start


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return int(s.getsockname()[1])


def burst(workers, *args, env=None):
    command = [sys.executable, '-m', 'rq.cli', 'worker', '--burst', '-w', 'rq_acklate.LateAckWorker', *args]
    result = workers.run(command, env=env, timeout=90)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def no_reservations_left(connection: Redis) -> bool:
    return all(connection.llen(k) == 0 for k in connection.scan_iter(f'{keys.PREFIX}reserved:*'))


def test_json_serializer_jobs_survive_a_worker_death(connection, workers):
    queue = Queue(connection=connection, serializer=JSONSerializer)
    job = queue.enqueue(jobs.idempotent_job, 3, result='json')
    first = workers.start('w1', args=['--serializer', 'rq.serializers.JSONSerializer'])
    wait_until(lambda: started_runs(connection, job.id), what='the job to start')
    first.kill()
    workers.start('w2', args=['--serializer', 'rq.serializers.JSONSerializer'])
    wait_until(lambda: finished_runs(connection, job.id), timeout=20, what='the job to finish on w2')
    assert [r['redeliveries'] for r in started_runs(connection, job.id)] == [0, 1]
    wait_until(lambda: no_reservations_left(connection), what='the ack')


def test_scripts_flushed_from_the_server_are_loaded_again(connection, workers):
    queue = Queue(connection=connection)
    before = queue.enqueue(jobs.idempotent_job)
    workers.start('w1')
    wait_until(lambda: before.get_status(refresh=True) == 'finished', what='the first job')
    connection.script_flush()
    after = queue.enqueue(jobs.idempotent_job)
    wait_until(lambda: after.get_status(refresh=True) == 'finished', what='a job after SCRIPT FLUSH')
    wait_until(lambda: no_reservations_left(connection), what='its ack after SCRIPT FLUSH')

    dead = dead_worker(connection, 'dead', ['elsewhere'])
    orphan = Queue('elsewhere', connection=connection).enqueue(jobs.late_job)
    start(dead, reserve(dead))
    connection.script_flush()
    report = recover(connection)
    assert [(o.job_id, o.action) for o in report.outcomes] == [(orphan.id, 'failed')]


def test_acl_user(connection, workers):
    connection.execute_command('ACL', 'SETUSER', 'acklate', 'on', '>s3cret', '~*', '&*', '+@all')
    try:
        url = workers.redis_url.replace('redis://', 'redis://acklate:s3cret@')
        job = Queue(connection=connection).enqueue(jobs.idempotent_job)
        burst(workers, '--url', url, 'default')
        assert job.get_status(refresh=True) == 'finished'
        assert no_reservations_left(connection)
        status = workers.run([sys.executable, '-m', 'rq_acklate.cli', 'status', '--url', url])
        assert status.returncode == 0, status.stderr
    finally:
        connection.execute_command('ACL', 'DELUSER', 'acklate')


def _tls_capable_servers() -> Iterator[str]:
    seen = set()
    for candidate in [shutil.which('redis-server'), '/usr/bin/redis-server', '/usr/local/bin/redis-server']:
        if candidate and os.path.exists(candidate) and os.path.realpath(candidate) not in seen:
            seen.add(os.path.realpath(candidate))
            yield candidate


@pytest.fixture
def tls_redis_url(tmp_path: Path) -> Iterator[str]:
    """A redis-server speaking TLS only, with a certificate signed by a CA made for the test."""
    if not shutil.which('openssl'):
        pytest.skip('openssl is needed to make certificates')
    ca, server_crt, server_key = tmp_path / 'ca.crt', tmp_path / 'server.crt', tmp_path / 'server.key'
    commands = [
        ['openssl', 'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', str(tmp_path / 'ca.key'),
         '-out', str(ca), '-days', '1', '-subj', '/CN=rq-acklate test CA',
         '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'],
        ['openssl', 'req', '-newkey', 'rsa:2048', '-nodes', '-keyout', str(server_key), '-out',
         str(tmp_path / 'server.csr'), '-subj', '/CN=127.0.0.1'],
        ['openssl', 'x509', '-req', '-in', str(tmp_path / 'server.csr'), '-CA', str(ca), '-CAkey',
         str(tmp_path / 'ca.key'), '-CAcreateserial', '-out', str(server_crt), '-days', '1', '-extfile',
         str(tmp_path / 'ext.cnf')],
    ]  # fmt: skip
    # What Python 3.13's strict certificate checks ask of a server certificate.
    (tmp_path / 'ext.cnf').write_text(
        'subjectAltName=IP:127.0.0.1\nkeyUsage=critical,digitalSignature,keyEncipherment\n'
        'extendedKeyUsage=serverAuth\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid,issuer\n'
    )
    for command in commands:
        subprocess.run(command, check=True, capture_output=True, timeout=60)
    for binary in _tls_capable_servers():
        port = free_port()
        server = subprocess.Popen(
            [binary, '--port', '0', '--tls-port', str(port), '--tls-cert-file', str(server_crt),
             '--tls-key-file', str(server_key), '--tls-ca-cert-file', str(ca), '--tls-auth-clients', 'no',
             '--save', '', '--dir', str(tmp_path), '--bind', '127.0.0.1'],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        url = f'rediss://127.0.0.1:{port}/0?ssl_ca_certs={ca}'
        try:
            try:
                wait_until(_up_or_exited(Redis.from_url(url), server), timeout=10)
            except AssertionError:
                continue
            if server.poll() is not None:
                continue  # this build has no TLS
            yield url
            return
        finally:
            with contextlib.suppress(ProcessLookupError):
                server.kill()
            server.wait()
    pytest.skip('no redis-server built with TLS on this machine')


def _up_or_exited(client: Redis, server: subprocess.Popen[bytes]):  # type: ignore[no-untyped-def]
    return lambda: _pings(client) or server.poll() is not None


def _pings(client: Redis) -> bool:
    try:
        return bool(client.ping())
    except Exception:
        return False


def test_rediss_url(tls_redis_url, workers):
    connection = Redis.from_url(tls_redis_url)
    job = Queue(connection=connection).enqueue(jobs.idempotent_job)
    burst(workers, '--url', tls_redis_url, 'default')
    assert job.get_status(refresh=True) == 'finished'
    assert no_reservations_left(connection)
    assert connection.hget(keys.STATS, 'acked') == b'1'


@pytest.fixture
def sentinel_settings(redis_url: str, redis_server, tmp_path: Path) -> Iterator[Path]:
    """A Redis Sentinel watching the test server, and an RQ settings module that connects through it."""
    port = free_port()
    config = tmp_path / 'sentinel.conf'
    config.write_text(
        f'port {port}\nbind 127.0.0.1\ndir {tmp_path}\n'
        f'sentinel monitor acklate {redis_server.host} {redis_server.port} 1\n'
    )
    binary = getattr(redis_server, 'executable', None) or shutil.which('redis-server')
    if not binary:
        pytest.skip('no redis-server to run a sentinel with')
    sentinel = subprocess.Popen([binary, str(config), '--sentinel'], stdout=subprocess.DEVNULL)
    try:
        client = Redis(port=port)
        wait_until(lambda: _pings(client), timeout=10, what='the sentinel to start')
        wait_until(lambda: client.execute_command('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', 'acklate'), timeout=10)
        module = tmp_path / 'sentinel_settings.py'
        module.write_text(f"SENTINEL = {{'INSTANCES': [('127.0.0.1', {port})], 'MASTER_NAME': 'acklate', 'DB': 0}}\n")
        yield module
    finally:
        sentinel.kill()
        sentinel.wait()


def test_sentinel_through_rqs_config(connection, workers, sentinel_settings):
    job = Queue(connection=connection).enqueue(jobs.idempotent_job)
    env = {'PYTHONPATH': os.pathsep.join([str(sentinel_settings.parent), str(TESTS_DIR), str(TESTS_DIR.parent)])}
    burst(workers, '-c', 'sentinel_settings', 'default', env=env)
    assert job.get_status(refresh=True) == 'finished'
    assert no_reservations_left(connection)
    status = workers.run([sys.executable, '-m', 'rq_acklate.cli', 'status', '-c', 'sentinel_settings'], env=env)
    assert status.returncode == 0, status.stderr
