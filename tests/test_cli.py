"""The rq-acklate command, against the test Redis and real workers."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys

import pytest
from rq import Queue

from rq_acklate import keys

import jobs
from helpers import REPO_DIR, started_runs, wait_until
from states import dead_worker, reserve, start


def cli(workers, *args, env=None, timeout=60):
    return workers.run([sys.executable, '-m', 'rq_acklate.cli', *args], env=env, timeout=timeout)


def test_status_shows_live_and_paused_workers(connection, workers):
    busy = Queue(connection=connection).enqueue(jobs.idempotent_job, 20)
    workers.start('alive-1')
    wait_until(lambda: started_runs(connection, busy.id), what='the job to start')
    # A long lease, so the window in which it is late outlasts a slow `rq-acklate status` on a busy machine.
    paused = workers.start('paused-1', ['other'], env={'RQ_ACKLATE_LIVENESS_TTL': '10'})
    # RQ reports the worker started before rq-acklate's bootstrap took the lease: stop it after.
    wait_until(lambda: connection.exists(keys.WorkerKeys('paused-1').alive), what='the paused worker to take its lease')
    paused.kill(signal.SIGSTOP)
    try:
        # Between two heartbeats (1 s) and the end of its lease (10 s), a stopped worker shows as late.
        result = wait_until(
            lambda: (r := cli(workers, 'status', '--url', workers.redis_url)).stdout.count(' late ') and r,
            timeout=9,
            interval=0.1,
            what='the paused worker to show as late',
        )
    finally:
        paused.kill(signal.SIGCONT)
    lines = {line.split()[0]: line for line in result.stdout.splitlines() if line.strip()}
    assert ' alive ' in lines['alive-1']
    assert re.search(rf'{busy.id} \(\d+s, 0, started\)', lines['alive-1'])
    assert ' late ' in lines['paused-1']
    assert result.returncode == 0

    as_json = json.loads(cli(workers, 'status', '--json', '--url', workers.redis_url).stdout)
    by_name = {w['name']: w for w in as_json['workers']}
    assert by_name['alive-1']['reserved'][0]['job_id'] == busy.id
    assert by_name['alive-1']['reserved'][0]['policy'] == 'LI3'
    assert as_json['healthy'] is True


def test_status_flags_dead_workers_holding_reservations(connection, workers):
    dead = dead_worker(connection, 'dead-1')
    held = Queue(connection=connection).enqueue(jobs.late_job)
    start(dead, reserve(dead))

    result = cli(workers, 'status', '--url', workers.redis_url)

    assert result.returncode == 1, result.stdout + result.stderr
    line = next(line for line in result.stdout.splitlines() if line.startswith('dead-1'))
    assert 'dead (liveness lease expired)' in line and held.id in line
    assert 'UNHEALTHY: dead workers still hold reservations: dead-1' in result.stdout
    as_json = json.loads(cli(workers, 'status', '--json', '--url', workers.redis_url).stdout)
    (worker,) = as_json['workers']
    expected = {'job_id': held.id, 'status': 'started', 'started': True, 'redeliveries': 0}
    assert worker['state'] == 'dead' and worker['reserved'][0] | {'age': None} == expected | {
        'age': None,
        'policy': 'L-3',
    }
    assert as_json['healthy'] is False

    assert cli(workers, 'recover', '--url', workers.redis_url).returncode == 0
    after = cli(workers, 'status', '--url', workers.redis_url)
    assert after.returncode == 0, after.stdout
    assert 'dead-1' not in after.stdout and 'worker_lost=1' in after.stdout


def test_recover_dry_run_changes_nothing_then_recover_does(connection, workers):
    queue = Queue(connection=connection)
    job = queue.enqueue(jobs.idempotent_job)
    dead = dead_worker(connection, 'dead-1')
    start(dead, reserve(dead))
    before = {k: connection.dump(k) for k in connection.keys('*')}

    dry = cli(workers, 'recover', '--dry-run', '--url', workers.redis_url)

    assert dry.returncode == 0
    assert f'dead-1: job {job.id} (default): skipped, would requeue: worker-lost' in dry.stdout
    assert {k: connection.dump(k) for k in connection.keys('*')} == before

    real = json.loads(cli(workers, 'recover', '--json', '--url', workers.redis_url).stdout)
    assert real['counts'] == {'requeued': 1}
    assert queue.get_job_ids() == [job.id]


def test_worker_command_runs_the_late_ack_worker(connection, workers):
    job = Queue(connection=connection).enqueue(jobs.idempotent_job)
    result = cli(workers, 'worker', '--url', workers.redis_url, '--burst', '--name', 'via-cli', 'default')
    assert result.returncode == 0, result.stderr
    assert job.get_status(refresh=True) == 'finished'
    assert connection.hget(keys.STATS, 'acked') == b'1'


@pytest.mark.parametrize(
    ('args', 'code', 'message'),
    [
        (['status', '--url', 'redis://127.0.0.1:1/0'], 3, 'Error: cannot reach Redis'),
        (['recover', '--url', 'redis://127.0.0.1:1/0'], 3, 'Error: cannot reach Redis'),
        (['status', '--no-such-option'], 2, 'No such option'),
    ],
)
def test_errors_are_one_line(workers, args, code, message):
    result = cli(workers, *args)
    assert result.returncode == code
    assert message in result.stderr
    assert 'Traceback' not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith('Error: ')


def test_invalid_settings_are_one_line(workers):
    result = cli(workers, 'status', '--url', workers.redis_url, env={'RQ_ACKLATE_LIVENESS_TTL': 'x'})
    assert result.returncode == 3
    assert "Error: RQ_ACKLATE_LIVENESS_TTL must be a number of seconds, got 'x'" in result.stderr


def test_old_redis_is_one_line(workers, old_redis_url):
    result = cli(workers, 'status', '--url', old_redis_url)
    assert result.returncode == 3
    assert 'Error: rq-acklate needs Redis >= 6.2 (for LMOVE/BLMOVE); this server is 5.0.6' in result.stderr


def test_demo_finishes_and_cleans_up(connection, workers):
    result = cli(workers, 'demo', '--url', workers.redis_url, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    order = [
        'SIGKILLed in the middle of job 1',
        'detected dead',
        'requeued',
        'running again',
        'job 1 finished',
    ]
    positions = [out.index(step) for step in order]
    assert positions == sorted(positions)
    assert 'finished runs per job: ' in out and 'rq-acklate: the killed job ran again' in out
    assert "job 1 is still 'started'" in out  # the plain RQ half
    leftovers = [k for k in connection.keys('*') if b'demo' in k]
    assert leftovers == []


@pytest.mark.timeout(400)
def test_demo_runs_from_a_fresh_virtualenv_with_only_the_embedded_extra(tmp_path):
    venv = tmp_path / 'venv'
    subprocess.run([sys.executable, '-m', 'venv', str(venv)], check=True, timeout=120)
    pip = subprocess.run(
        [str(venv / 'bin' / 'pip'), 'install', '--quiet', f'{REPO_DIR}[embedded]'],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert pip.returncode == 0, pip.stderr[-2000:]
    demo = subprocess.run(
        [
            str(
                venv / 'bin' / 'rq-acklate',
            ),
            'demo',
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert 'Started an embedded Redis' in demo.stdout
    assert 'rq-acklate: the killed job ran again and finished exactly once.' in demo.stdout
