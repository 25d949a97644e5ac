"""The Django integration (rq_acklate.contrib.django), through a real Django project
(tests/django_project) whose django-rq queues point at the test Redis: ``manage.py check``,
``rqworker``, ``rqworker-pool`` and ``rqacklate`` run as subprocesses, and workers die by real SIGKILLs.

This process never imports Django: the core tests must not run with Django configured (the core
reads ``settings.RQ_ACKLATE`` whenever Django is configured in the process). The in-process Django
tests (pytest-django) run in a pytest process of their own: see ``test_in_process_django_tests``.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from redis import Redis
from rq import Queue
from rq.job import Job

from rq_acklate import keys

import jobs
from helpers import REPO_DIR, TESTS_DIR, WorkerProcess, Workers, finished_runs, is_gone, started_runs, stats, wait_until
from states import dead_worker, reserve, start

PROJECT = TESTS_DIR / 'django_project'
EXAMPLE = REPO_DIR / 'examples' / 'django_project'
#: Set when the tests run against an existing server (tests/conftest.py): leave its other databases alone.
EXISTING_URL = os.environ.get('ACKLATE_TEST_REDIS_URL')


def manage_env(
    redis_url: str, settings: dict[str, Any] | None = None, env: dict[str, str] | None = None
) -> dict[str, str]:
    """The environment of a ``manage.py`` run: no ``RQ_ACKLATE_*`` variable, so the project's
    ``settings.RQ_ACKLATE`` is what the workers get; ``settings`` overrides settings for this run."""
    prefixes = ('RQ_ACKLATE_', 'DJANGO_SETTINGS_MODULE', 'TESTPROJECT_', 'ACKLATE_TEST_')
    result = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    result['PYTHONPATH'] = os.pathsep.join([str(REPO_DIR), os.environ.get('PYTHONPATH', '')])
    result['PYTHONUNBUFFERED'] = '1'
    result['TESTPROJECT_REDIS_URL'] = redis_url
    if settings is not None:
        result['TESTPROJECT_SETTINGS'] = json.dumps(settings)
    result.update(env or {})
    return result


def manage(
    redis_url: str,
    *args: str,
    settings: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
    cwd: Path = PROJECT,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """Run ``manage.py`` to completion; on a timeout, SIGKILL it with whatever it forked."""
    command = [sys.executable, 'manage.py', *args]
    with subprocess.Popen(
        command,
        cwd=cwd,
        env=manage_env(redis_url, settings, env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    ) as process:
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def start_rqworker(workers: Workers, name: str, *queues: str, settings: dict[str, Any] | None = None) -> WorkerProcess:
    """``manage.py rqworker`` in its own session; the ``workers`` fixture SIGKILLs it at the end."""
    log_path = workers.tmp_path / f'{name}.log'
    with log_path.open('ab') as log:
        process = subprocess.Popen(
            [sys.executable, 'manage.py', 'rqworker', '--name', name, *queues],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=PROJECT,
            env=manage_env(workers.redis_url, settings),
            start_new_session=True,
        )
    worker = WorkerProcess(name, process, log_path, list(queues))
    workers.started.append(worker)
    workers.wait_ready(worker)
    return worker


def output(result: subprocess.CompletedProcess[str]) -> str:
    return result.stdout + result.stderr


def check_ids(result: subprocess.CompletedProcess[str]) -> list[str]:
    return sorted(re.findall(r'\((rq_acklate\.[EW]\d{3})\)', output(result)))


def line_of(text: str, worker_name: str) -> str:
    return next((line for line in text.splitlines() if line.startswith(worker_name + ' ')), '')


# -- packaging ----------------------------------------------------------------------------------------


def test_the_base_package_never_imports_django(workers):
    code = (
        'import sys\n'
        'import rq_acklate, rq_acklate.worker, rq_acklate.cli, rq_acklate.recovery, rq_acklate.status\n'
        "assert 'django' not in sys.modules, sorted(m for m in sys.modules if m.startswith('django'))\n"
        "print('no django')\n"
    )
    result = workers.run([sys.executable, '-c', code])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == 'no django'


def test_django_is_an_optional_extra():
    tomllib = pytest.importorskip('tomllib')  # Python >= 3.11
    project = tomllib.loads((REPO_DIR / 'pyproject.toml').read_text())['project']
    base = [Requirement(r).name.lower() for r in project['dependencies']]
    assert not [name for name in base if 'django' in name]
    extras = project['optional-dependencies']
    django_extra = {Requirement(r).name.lower(): Requirement(r) for r in extras['django']}
    assert set(django_extra) == {'django', 'django-rq'}
    for name, requirement in django_extra.items():
        assert requirement.specifier, f'{name} needs a supported range'
        assert requirement.specifier.contains(version(name)), f'the tested {name} {version(name)} is out of range'
    test_extra = {Requirement(r).name.lower() for r in extras['test']}
    assert {'django', 'django-rq', 'pytest-django'} <= test_extra


# -- system checks ------------------------------------------------------------------------------------


def test_check_passes_with_the_project_settings(redis_url):
    result = manage(redis_url, 'check', '--fail-level', 'WARNING')
    assert result.returncode == 0, output(result)
    assert 'System check identified no issues (0 silenced).' in result.stdout


@pytest.mark.parametrize(
    ('rq_acklate', 'messages'),
    [
        (
            {
                'LIVENESS_TTL': 'soon',
                'MAX_REDELIVERIES': -1,
                'DEFAULT_POLICY': 'sometimes',
                'LATE_ACK': 5,
                'COLOUR': 'blue',
                'SIGNALS_TO_LOG': 'yes',
            },
            [
                "RQ_ACKLATE['LIVENESS_TTL'] must be a number of seconds, got 'soon'",
                "RQ_ACKLATE['MAX_REDELIVERIES'] must not be negative, got -1",
                "RQ_ACKLATE['DEFAULT_POLICY'] must be one of early, late, got 'sometimes'",
                "RQ_ACKLATE['LATE_ACK'] must be a list of patterns, got 5",
                "unknown setting RQ_ACKLATE['COLOUR']",
                "RQ_ACKLATE['SIGNALS_TO_LOG'] must be True or False, got 'yes'",
            ],
        ),
        (
            {'LIVENESS_TTL': 4, 'HEARTBEAT_INTERVAL': 3},
            [
                "RQ_ACKLATE['LIVENESS_TTL'], RQ_ACKLATE['HEARTBEAT_INTERVAL']: heartbeat_interval (3.0) must be "
                'at most half of liveness_ttl (4.0)'
            ],
        ),
        (['LIVENESS_TTL', 2], ['settings.RQ_ACKLATE must be a dict, got list']),
    ],
    ids=['bad-values', 'contradiction', 'not-a-dict'],
)
def test_check_e001_names_each_bad_key(redis_url, rq_acklate, messages):
    result = manage(redis_url, 'check', settings={'RQ_ACKLATE': rq_acklate})
    assert result.returncode == 1, output(result)
    assert check_ids(result) == ['rq_acklate.E001'] * len(messages)
    for message in messages:
        assert f'settings.RQ_ACKLATE: (rq_acklate.E001) {message}' in result.stderr


def test_check_w001_when_rqworker_would_not_ack_late(redis_url):
    result = manage(redis_url, 'check', settings={'RQ': {'WORKER_CLASS': 'rq.Worker'}})
    assert result.returncode == 0, output(result)
    assert check_ids(result) == ['rq_acklate.W001']
    assert (
        "settings.RQ: (rq_acklate.W001) RQ['WORKER_CLASS'] = 'rq.Worker' is not a late-ack worker class, but "
        'functions are marked late_ack (shop.tasks.charge, shop.tasks.resize, shop.tasks.slow_once)'
    ) in result.stderr
    strict = manage(redis_url, 'check', '--fail-level', 'WARNING', settings={'RQ': {}})
    assert strict.returncode == 1, output(strict)
    assert check_ids(strict) == ['rq_acklate.W001']
    assert "RQ['WORKER_CLASS'] is not set" in strict.stderr
    # A project's own worker class with the mixin is a late-ack worker class.
    own_class = {'RQ': {'WORKER_CLASS': 'shop.workers.RecordingWorker'}}
    own = manage(redis_url, 'check', '--fail-level', 'WARNING', settings=own_class)
    assert own.returncode == 0, output(own)


def test_check_w002_patterns_that_match_no_function(redis_url):
    patterns = {
        'LATE_ACK': ['shop.tasks.legacy_*', 'shop.taks.*', 'shop.tasks.nothing_here'],
        'IDEMPOTENT': ['shop.tasks.res*', 'nowhere.*'],
    }
    result = manage(redis_url, 'check', settings={'RQ_ACKLATE': patterns})
    assert result.returncode == 0, output(result)
    assert check_ids(result) == ['rq_acklate.W002'] * 3
    for key, pattern in [
        ('LATE_ACK', 'shop.taks.*'),
        ('LATE_ACK', 'shop.tasks.nothing_here'),
        ('IDEMPOTENT', 'nowhere.*'),
    ]:
        assert (
            f"settings.RQ_ACKLATE: (rq_acklate.W002) RQ_ACKLATE['{key}'] has the pattern '{pattern}', "
            'which matches no importable function.'
        ) in result.stderr


# -- workers ------------------------------------------------------------------------------------------


def enqueue_mix(connection: Redis) -> dict[str, Job]:
    """One job of each policy, on two queues."""
    high, low = Queue('high', connection=connection), Queue('low', connection=connection)
    return {
        'charge': high.enqueue('shop.tasks.charge'),
        'resize': low.enqueue('shop.tasks.resize'),
        'legacy_rebuild': high.enqueue('shop.tasks.legacy_rebuild'),
        'plain': low.enqueue('shop.tasks.plain'),
    }


def assert_each_ran_once(connection: Redis, mix: dict[str, Job]) -> None:
    for name, job in mix.items():
        assert job.get_status(refresh=True) == 'finished', name
        assert len(started_runs(connection, job.id)) == len(finished_runs(connection, job.id)) == 1, name
    assert stats(connection)['reserved'] == len(mix)  # every job went through a late-ack reservation
    assert not connection.keys('rq:acklate:reserved:*')


def assert_acked_late_only(log: str, mix: dict[str, Job], worker_name: str = r'\S+') -> None:
    """Late-ack jobs (decorated, or matched by RQ_ACKLATE['LATE_ACK']) are acked after they ran; the
    plain one was acked at its start, as RQ does. SIGNALS_TO_LOG put the events in Django's LOGGING."""
    for name, job in mix.items():
        event = r'rq_acklate\.events INFO {} job_id={} queue={} worker_name={}'
        assert re.search(event.format('job_reserved', job.id, job.origin, worker_name), log), name
        acked = re.search(event.format('job_acked', job.id, job.origin, worker_name), log)
        assert bool(acked) == (name != 'plain'), name


@pytest.mark.parametrize(
    ('args', 'settings'),
    [
        (['high', 'low'], None),
        (['--worker-class', 'rq_acklate.LateAckWorker', 'high', 'low'], {'RQ': {}}),
        (['high', 'low'], {'RQ': {'WORKER_CLASS': 'shop.workers.RecordingWorker'}}),
    ],
    ids=['RQ-WORKER_CLASS', 'worker-class-option', 'own-worker-class'],
)
def test_rqworker_burst_runs_late_ack_workers(redis_url, connection, args, settings):
    mix = enqueue_mix(connection)
    result = manage(redis_url, 'rqworker', '--burst', '--name', 'dj-burst', *args, settings=settings)
    assert result.returncode == 0, output(result)
    assert_each_ran_once(connection, mix)
    assert_acked_late_only(result.stderr, mix, 'dj-burst')
    if settings and settings['RQ'].get('WORKER_CLASS') == 'shop.workers.RecordingWorker':
        for job in mix.values():  # the queues the worker builds are django-rq's class, with late acks
            assert b'DjangoRQ' in connection.lrange(f'test:queue-class:{job.id}', 0, -1)


def test_rqworker_pool_runs_late_ack_workers(redis_url, connection):
    mix = enqueue_mix(connection)
    result = manage(redis_url, 'rqworker-pool', '--num-workers', '2', '--burst', 'high', 'low')
    assert result.returncode == 0, output(result)
    assert_each_ran_once(connection, mix)
    assert_acked_late_only(result.stderr, mix)


def test_killed_rqworker_job_is_recovered_by_a_second_rqworker(redis_url, connection, workers):
    queue = Queue('default', connection=connection)
    first = start_rqworker(workers, 'dj-first', 'default')
    # RQ_ACKLATE in the project's settings made the lease 2 s long (the default is 15 s).
    assert 0 < connection.pttl(keys.WorkerKeys('dj-first').alive) <= 2000

    job = queue.enqueue('shop.tasks.slow_once', 60)
    waiting = queue.enqueue('shop.tasks.charge')  # still queued when the worker dies
    wait_until(lambda: started_runs(connection, job.id), what='the job to start')
    horse = first.horse_pid()
    assert started_runs(connection, job.id)[0]['pid'] == horse
    alive = manage(redis_url, 'rqacklate', 'status')
    assert alive.returncode == 0, output(alive)
    assert ' alive ' in line_of(alive.stdout, 'dj-first') and job.id in line_of(alive.stdout, 'dj-first')

    first.kill(signal.SIGKILL)
    first.wait(10)
    wait_until(lambda: is_gone(horse), timeout=5, what='the work horse to die with its worker')
    dead = wait_until(
        lambda: (r := manage(redis_url, 'rqacklate', 'status')).returncode == 1 and r,
        timeout=15,
        interval=0.2,
        what='status to report the dead worker',
    )
    line = line_of(dead.stdout, 'dj-first')
    assert 'dead (liveness lease expired)' in line and f'{job.id} (' in line and 'started' in line
    assert 'UNHEALTHY: dead workers still hold reservations: dj-first' in dead.stdout
    assert job.get_status(refresh=True) == 'started' and len(finished_runs(connection, job.id)) == 0

    second = start_rqworker(workers, 'dj-second', 'default')
    wait_until(lambda: waiting.get_status(refresh=True) == 'finished', timeout=20, what='both jobs to finish')

    assert job.get_status(refresh=True) == 'finished'
    runs = started_runs(connection, job.id)
    assert [r['redeliveries'] for r in runs] == [0, 1]  # ran again, once, knowing it was redelivered
    assert len(finished_runs(connection, job.id)) == 1
    assert len(started_runs(connection, waiting.id)) == len(finished_runs(connection, waiting.id)) == 1
    assert stats(connection)['requeued'] == 1
    assert f'job_requeued job_id={job.id} queue=default worker_name=dj-first redeliveries=1 reason=worker-lost' in (
        second.log()
    )

    after = manage(redis_url, 'rqacklate', 'status')
    assert after.returncode == 0, output(after)
    assert line_of(after.stdout, 'dj-first') == '' and 'UNHEALTHY' not in after.stdout
    assert ' alive ' in line_of(after.stdout, 'dj-second')
    assert 'requeued=1' in after.stdout

    second.kill(signal.SIGTERM)  # a warm shutdown: the worker leaves the registry
    assert second.wait(20) == 0
    empty = manage(redis_url, 'rqacklate', 'status')
    assert empty.returncode == 0 and 'No late-ack workers are registered.' in empty.stdout


@pytest.mark.skipif(bool(EXISTING_URL), reason='uses a second database of the test Redis')
def test_rqacklate_queue_and_all_pick_the_connections(redis_url, connection):
    other = Redis.from_url(redis_url).connection_pool.connection_kwargs
    other_db = Redis(host=other['host'], port=other['port'], db=int(other.get('db') or 0) + 1)
    other_db.flushdb()
    try:
        job = Queue('other', connection=other_db).enqueue(jobs.idempotent_job)  # importable here, unlike shop
        dead = dead_worker(other_db, 'dj-dead', ['other'])
        start(dead, reserve(dead))

        default = manage(redis_url, 'rqacklate', 'status')
        assert default.returncode == 0 and 'No late-ack workers are registered.' in default.stdout
        chosen = manage(redis_url, 'rqacklate', 'status', '--queue', 'other')
        assert chosen.returncode == 1 and 'dead (liveness lease expired)' in line_of(chosen.stdout, 'dj-dead')
        everything = manage(redis_url, 'rqacklate', 'status', '--all', '--json')
        assert everything.returncode == 1
        report = json.loads(everything.stdout)
        assert report['healthy'] is False
        assert [c['queues'] for c in report['connections']] == [['default', 'high', 'low'], ['other']]
        assert [[w['name'] for w in c['workers']] for c in report['connections']] == [[], ['dj-dead']]

        dry = manage(redis_url, 'rqacklate', 'recover', '-q', 'other', '--dry-run')
        assert dry.returncode == 0, output(dry)
        assert f'dj-dead: job {job.id} (other): skipped, would requeue: worker-lost' in dry.stdout
        assert Queue('other', connection=other_db).get_job_ids() == []

        recovered = manage(redis_url, 'rqacklate', 'recover', '--all')
        assert recovered.returncode == 0, output(recovered)
        assert '== Redis ' in recovered.stdout and '(queues: other) ==' in recovered.stdout
        assert f'dj-dead: job {job.id} (other): requeued, worker-lost, redeliveries=1' in recovered.stdout
        assert Queue('other', connection=other_db).get_job_ids() == [job.id]  # its fate: back in its queue
        assert job.get_status(refresh=True) == 'queued'
        healthy = manage(redis_url, 'rqacklate', 'status', '--all')
        assert healthy.returncode == 0, output(healthy)

        for args, message in [
            (
                ['status', '-q', 'nope'],
                "CommandError: no queue 'nope' in settings.RQ_QUEUES; known: default, high, low, other",
            ),
            (['status', '--queue', 'other', '--all'], 'CommandError: give --queue or --all, not both'),
            (['status', '--dry-run'], 'CommandError: --dry-run only applies to recover'),
        ]:
            result = manage(redis_url, 'rqacklate', *args)
            assert result.returncode == 2 and message in result.stderr, output(result)  # as rq-acklate's
        unreachable = manage('redis://127.0.0.1:1/0', 'rqacklate', 'status')
        assert unreachable.returncode == 3 and 'CommandError: cannot reach Redis' in unreachable.stderr
    finally:
        other_db.flushdb()
        other_db.close()


# -- the example and the in-process tests ---------------------------------------------------------------


def test_the_django_example_runs_as_written(redis_url, connection):
    env = {'REDIS_URL': redis_url}
    check = manage(redis_url, 'check', cwd=EXAMPLE, env=env)
    assert check.returncode == 0 and 'no issues' in check.stdout, output(check)
    enqueued = [
        manage(redis_url, 'rqenqueue', '-q', 'default', 'shop.tasks.resize', '42', '0', cwd=EXAMPLE, env=env),
        manage(redis_url, 'rqenqueue', '-q', 'high', 'shop.legacy.rebuild_index', 'products', cwd=EXAMPLE, env=env),
    ]
    ids = []
    for result in enqueued:
        assert result.returncode == 0, output(result)
        ids.append(re.search(r'Job (\S+) created', result.stdout).group(1))
    work = manage(redis_url, 'rqworker', '--burst', 'high', 'default', 'low', cwd=EXAMPLE, env=env)
    assert work.returncode == 0, output(work)
    fetched = [Job.fetch(i, connection=connection) for i in ids]
    assert [j.get_status() for j in fetched] == ['finished', 'finished']
    assert [j.return_value() for j in fetched] == ['resized 42 (redelivery 0)', 'rebuilt products']
    assert stats(connection) == {'reserved': 2, 'acked': 2}
    assert f'job_acked job_id={ids[1]} queue=high' in work.stderr  # late ack through the LATE_ACK pattern
    status = manage(redis_url, 'rqacklate', 'status', cwd=EXAMPLE, env=env)
    assert status.returncode == 0 and 'Counters: acked=2, reserved=2' in status.stdout, output(status)


def test_in_process_django_tests(redis_url):
    """tests/django_project/inprocess with pytest-django, in a pytest process of its own."""
    env = manage_env(redis_url, env={'ACKLATE_TEST_REDIS_URL': redis_url})
    result = subprocess.run(
        [sys.executable, '-m', 'pytest', '-q', '--ds', 'testproject.settings', str(PROJECT / 'inprocess')],
        cwd=REPO_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]
    assert re.search(r'\b\d+ passed\b', result.stdout), result.stdout


def test_this_process_never_imported_django():
    """Everything above ran Django in other processes: the core tests in this one run without it."""
    assert 'django' not in sys.modules
