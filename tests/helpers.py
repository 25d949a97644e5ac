"""Helpers for tests that run real `rq worker` processes against the test Redis."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from redis import Redis

TESTS_DIR = Path(__file__).resolve().parent
REPO_DIR = TESTS_DIR.parent

#: Settings that make worker deaths visible within seconds.
FAST = {
    'RQ_ACKLATE_LIVENESS_TTL': '2',
    'RQ_ACKLATE_HEARTBEAT_INTERVAL': '0.5',
    'RQ_ACKLATE_RECOVERY_INTERVAL': '0.5',
}

T = TypeVar('T')


def wait_until(predicate: Callable[[], T], timeout: float = 15.0, interval: float = 0.05, what: str = '') -> T:
    """Poll ``predicate`` until it returns something truthy; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f'timed out after {timeout}s waiting for {what or predicate}')
        time.sleep(interval)


def child_pids(pid: int) -> list[int]:
    """Direct children of ``pid`` (the work horse of an `rq worker` process)."""
    children = []
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open(f'/proc/{entry}/stat') as f:
                fields = f.read().rsplit(')', 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            children.append(int(entry))
    return children


def process_state(pid: int) -> str | None:
    """'R', 'S', 'T' (stopped), 'Z'... or None when the process is gone."""
    try:
        with open(f'/proc/{pid}/stat') as f:
            return f.read().rsplit(')', 1)[1].split()[0]
    except OSError:
        return None


def is_gone(pid: int) -> bool:
    return process_state(pid) in (None, 'Z', 'X')


@dataclass
class WorkerProcess:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    queues: list[str] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors='replace') if self.log_path.exists() else ''

    def horse_pid(self, timeout: float = 10.0) -> int:
        return wait_until(lambda: (child_pids(self.pid) or [0])[0], timeout, what=f'a work horse of {self.name}')

    def kill(self, sig: int = signal.SIGKILL) -> None:
        os.kill(self.pid, sig)

    def wait(self, timeout: float = 30.0) -> int:
        return self.process.wait(timeout)


class Workers:
    """Starts `rq worker` subprocesses (their own sessions) and cleans them all up."""

    def __init__(self, redis_url: str, tmp_path: Path) -> None:
        self.redis_url = redis_url
        self.tmp_path = tmp_path
        self.started: list[WorkerProcess] = []

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith('RQ_ACKLATE_')}
        env.update(FAST)
        env['PYTHONPATH'] = os.pathsep.join([str(TESTS_DIR), str(REPO_DIR), env.get('PYTHONPATH', '')])
        env['PYTHONUNBUFFERED'] = '1'
        env.update(extra or {})
        return env

    def start(
        self,
        name: str,
        queues: Iterable[str] = ('default',),
        *,
        worker_class: str = 'rq_acklate.LateAckWorker',
        args: Iterable[str] = (),
        env: dict[str, str] | None = None,
        wait_ready: bool = True,
    ) -> WorkerProcess:
        queues = list(queues)
        log_path = self.tmp_path / f'{name}.log'
        command = [
            sys.executable, '-m', 'rq.cli', 'worker', '--url', self.redis_url, '--name', name,
            '--worker-class', worker_class, *args, *queues,
        ]  # fmt: skip
        log = log_path.open('ab')
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.env(env),
            cwd=REPO_DIR,
            start_new_session=True,
        )
        log.close()
        worker = WorkerProcess(name, process, log_path, queues)
        self.started.append(worker)
        if wait_ready:
            self.wait_ready(worker)
        return worker

    def wait_ready(self, worker: WorkerProcess, timeout: float = 20.0) -> None:
        connection = Redis.from_url(self.redis_url)

        def ready() -> bool:
            if worker.process.poll() is not None:
                raise AssertionError(f'worker {worker.name} exited early:\n{worker.log()}')
            # RQ records 'started' before the worker's bootstrap ends (rq-acklate takes its lease
            # there): ready means the lease is taken, or the worker reached its work loop.
            state = connection.hget(f'rq:worker:{worker.name}', 'state')
            return state in (b'idle', b'busy') or bool(connection.exists(f'rq:acklate:alive:{worker.name}'))

        try:
            wait_until(ready, timeout, what=f'worker {worker.name} to start')
        finally:
            connection.close()

    def run(
        self,
        args: Iterable[str],
        env: dict[str, str] | None = None,
        timeout: float = 60,
        cwd: Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command (e.g. `rq worker --burst`) to completion."""
        return subprocess.run(
            list(args),
            env=self.env(env),
            cwd=cwd or REPO_DIR,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def kill_all(self) -> None:
        for worker in self.started:
            pids = [worker.pid, *child_pids(worker.pid)]
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)
                    os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(worker.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                worker.process.wait(5)


def runs(connection: Redis, job_id: str) -> list[dict[str, Any]]:
    """What the test jobs recorded about each of their runs (see jobs.py)."""
    import json

    return [json.loads(entry) for entry in connection.lrange(f'test:runs:{job_id}', 0, -1)]


def started_runs(connection: Redis, job_id: str) -> list[dict[str, Any]]:
    return [r for r in runs(connection, job_id) if r['event'] == 'start']


def finished_runs(connection: Redis, job_id: str) -> list[dict[str, Any]]:
    return [r for r in runs(connection, job_id) if r['event'] == 'end']


def reserved(connection: Redis, worker_name: str) -> list[str]:
    return [i.decode() for i in connection.lrange(f'rq:acklate:reserved:{worker_name}', 0, -1)]


def stats(connection: Redis) -> dict[str, int]:
    return {k.decode(): int(v) for k, v in connection.hgetall('rq:acklate:stats').items()}
