"""``manage.py rqacklate status|recover``: the ``rq-acklate`` command on django-rq's connections.

``--queue NAME`` (repeatable) picks the Redis connections of those queues of ``RQ_QUEUES``
(default: the ``default`` queue), ``--all`` every connection. The output for each connection is that
of ``rq-acklate``; with several, each gets a header line. Exit status as ``rq-acklate``: 1 when
``status`` finds dead workers still holding reservations, 2 for a bad option or queue name, 3 when
Redis cannot be reached or a setting is invalid.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click
from django.core.management.base import BaseCommand, CommandError

from rq_acklate.cli import render_report, render_status, talking_to_redis
from rq_acklate.recovery import recover
from rq_acklate.server import require_supported_redis
from rq_acklate.settings import Settings
from rq_acklate.status import collect

from ...connections import Target, targets


class Command(BaseCommand):  # type: ignore[misc]  # Django ships no type hints
    help = (
        'status: late-ack workers, what each holds reserved, and the counters (exit 1 when dead workers '
        'still hold reservations). recover: one recovery pass now. On the Redis connections of RQ_QUEUES.'
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument('action', choices=['status', 'recover'])
        parser.add_argument(
            '--queue',
            '-q',
            action='append',
            dest='queues',
            metavar='QUEUE',
            help="use the Redis connection of this queue of RQ_QUEUES (repeatable; default: 'default')",
        )
        parser.add_argument('--all', action='store_true', dest='all_queues', help='every connection of RQ_QUEUES')
        parser.add_argument('--json', action='store_true', dest='as_json', help='print JSON for scripts')
        parser.add_argument('--dry-run', action='store_true', help='recover: show what would be done; change nothing')

    def handle(self, *args: Any, **options: Any) -> None:
        action = options['action']
        if options['queues'] and options['all_queues']:
            raise CommandError('give --queue or --all, not both', returncode=2)
        if options['dry_run'] and action != 'recover':
            raise CommandError('--dry-run only applies to recover', returncode=2)
        chosen = targets(options['queues'], options['all_queues'])
        try:
            with talking_to_redis():  # the same one-line errors (and exit status 3) as rq-acklate
                settings = Settings.load(kwargs={})
                for target in chosen:
                    require_supported_redis(target.connection)
                if action == 'status':
                    healthy = self._status(chosen, settings, options['as_json'])
                else:
                    self._recover(chosen, settings, options['as_json'], options['dry_run'])
                    healthy = True
        except click.ClickException as exc:
            raise CommandError(exc.format_message(), returncode=exc.exit_code) from None
        if not healthy:
            sys.exit(1)

    def _status(self, chosen: list[Target], settings: Settings, as_json: bool) -> bool:
        clusters = [(target, collect(target.connection, settings)) for target in chosen]
        healthy = all(cluster.healthy for _target, cluster in clusters)
        if as_json:
            connections = [_describe(target) | cluster.to_dict() for target, cluster in clusters]
            self.stdout.write(json.dumps({'healthy': healthy, 'connections': connections}, indent=2))
        else:
            for target, cluster in clusters:
                self._header(chosen, target)
                self.stdout.write(render_status(cluster))
        return healthy

    def _recover(self, chosen: list[Target], settings: Settings, as_json: bool, dry_run: bool) -> None:
        reports = [
            (target, recover(target.connection, settings=settings, serializer=target.serializer, dry_run=dry_run))
            for target in chosen
        ]
        if as_json:
            connections = [_describe(target) | report.to_dict() for target, report in reports]
            self.stdout.write(json.dumps({'connections': connections}, indent=2))
        else:
            for target, report in reports:
                self._header(chosen, target)
                self.stdout.write(render_report(report))

    def _header(self, chosen: list[Target], target: Target) -> None:
        if len(chosen) > 1:
            self.stdout.write(f'== Redis {target.description} (queues: {", ".join(target.queues)}) ==')


def _describe(target: Target) -> dict[str, Any]:
    return {'redis': target.description, 'queues': target.queues}
