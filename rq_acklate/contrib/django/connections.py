"""The Redis connections of django-rq's ``RQ_QUEUES``, grouped as django-rq groups them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from importlib import import_module
from typing import Any

from django.conf import settings
from django.core.management.base import CommandError


@dataclass
class Target:
    """One Redis connection and the queues of ``RQ_QUEUES`` that use it."""

    queues: list[str]
    connection: Any  # redis.Redis, as django-rq builds it
    serializer: Any

    @property
    def description(self) -> str:
        """Where it points, without credentials: ``host:port/db`` or ``unix:path/db``."""
        kwargs = self.connection.connection_pool.connection_kwargs
        db = kwargs.get('db', 0)
        if 'path' in kwargs:
            return f'unix:{kwargs["path"]}/{db}'
        return f'{kwargs.get("host", "?")}:{kwargs.get("port", "?")}/{db}'


def targets(queue_names: Iterable[str] | None, all_queues: bool) -> list[Target]:
    """The connections of the named queues (default: ``'default'``), or of every queue with ``all_queues``.

    Queues whose connection settings are equal (django-rq's ``filter_connection_params``) share one.
    Exit status as ``rq-acklate``: 2 for an unknown queue, 3 for a configuration without queues.
    """
    try:
        from django_rq.queues import get_queue
    except ImportError:
        raise CommandError(
            'rqacklate works on the queues of django-rq: pip install "rq-acklate[django]"', returncode=3
        ) from None

    configured: dict[str, Any] = getattr(settings, 'RQ_QUEUES', None) or {}
    if not configured:
        raise CommandError('settings.RQ_QUEUES defines no queues (see django-rq)', returncode=3)
    names = sorted(configured) if all_queues else list(dict.fromkeys(queue_names or ['default']))
    unknown = [name for name in names if name not in configured]
    if unknown:
        raise CommandError(
            f'no queue {", ".join(map(repr, unknown))} in settings.RQ_QUEUES; known: {", ".join(sorted(configured))}',
            returncode=2,
        )
    groups: list[tuple[dict[str, Any], Target]] = []
    for name in names:
        params = _connection_params(configured[name])
        for group_params, target in groups:
            if group_params == params:
                target.queues.append(name)
                break
        else:
            queue = get_queue(name)
            groups.append((params, Target([name], queue.connection, queue.serializer)))
    return [target for _params, target in groups]


def _connection_params(queue_config: dict[str, Any]) -> dict[str, Any]:
    """django-rq's own test of "same connection" (``filter_connection_params``, wherever this version keeps it)."""
    try:
        module = import_module('django_rq.connection_utils')
    except ImportError:  # older django-rq: in django_rq.queues
        module = import_module('django_rq.queues')
    params: dict[str, Any] = module.filter_connection_params(queue_config)
    return params
