"""Settings, where they come from, and their validation.

Precedence, lowest first: built-in defaults, Django's ``settings.RQ_ACKLATE`` (only when Django is
already imported and configured; this module never imports Django), environment variables
``RQ_ACKLATE_<NAME>``, class attributes of the worker class, constructor keyword arguments.
Environment variables are how ``rq worker -w rq_acklate.LateAckWorker`` users tune a worker.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from .errors import ConfigurationError

ENV_PREFIX = 'RQ_ACKLATE_'
POLICIES = ('early', 'late')

#: Keys of ``settings.RQ_ACKLATE`` that only the Django integration reads.
DJANGO_ONLY_KEYS = frozenset({'SIGNALS_TO_LOG'})


@dataclass(frozen=True)
class Settings:
    """Tunables of a late-ack worker and of recovery.

    With the defaults, a SIGKILLed worker's idempotent job runs again within about
    ``liveness_ttl + recovery_interval`` (20 s); ``liveness_ttl=3, heartbeat_interval=1,
    recovery_interval=1`` brings that under 5 s.
    """

    #: Seconds a worker's liveness lease lasts without renewal; after that it counts as dead.
    liveness_ttl: float = 15.0
    #: Seconds between lease renewals. At most half of ``liveness_ttl``.
    heartbeat_interval: float = 3.0
    #: Seconds between recovery scans (one scan per interval across the whole cluster).
    recovery_interval: float = 5.0
    #: Redeliveries allowed after worker losses before an idempotent job is failed as poisoned.
    max_redeliveries: int = 3
    #: Policy of jobs neither decorated, matched by a pattern, nor overridden in meta.
    default_policy: str = 'early'
    #: Glob patterns of dotted function names that are late-ack (for functions you cannot decorate).
    late_ack: tuple[str, ...] = ()
    #: Glob patterns of dotted function names that are idempotent.
    idempotent: tuple[str, ...] = ()

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def load(
        cls,
        *,
        kwargs: Mapping[str, Any] | None = None,
        class_attrs: Mapping[str, Any] | None = None,
        environ: Mapping[str, str] | None = None,
        django: Mapping[str, Any] | None = None,
    ) -> Settings:
        """Merge every source by precedence and validate the result.

        ``django`` defaults to ``settings.RQ_ACKLATE`` when Django is imported and configured;
        pass ``{}`` to ignore it.
        """
        if django is None:
            django = django_settings()
        if environ is None:
            environ = os.environ
        layers: list[tuple[str, Mapping[str, Any]]] = [
            ("Django's settings.RQ_ACKLATE", _from_django(django)),
            ('the environment', _from_environ(environ)),
            ('the worker class', {k: v for k, v in (class_attrs or {}).items() if v is not None}),
            ('keyword arguments', {k: v for k, v in (kwargs or {}).items() if v is not None}),
        ]
        values: dict[str, Any] = {}
        for source, layer in layers:
            for name, raw in layer.items():
                values[name] = _parse(name, raw, source)
        settings = replace(cls(), **values)
        settings.validate()
        return settings

    def validate(self) -> None:
        """Raise :class:`ConfigurationError` naming the first inconsistent setting."""
        if self.liveness_ttl < 1:
            raise ConfigurationError(f'liveness_ttl must be at least 1 second, got {self.liveness_ttl}')
        if self.heartbeat_interval > self.liveness_ttl / 2:
            raise ConfigurationError(
                f'heartbeat_interval ({self.heartbeat_interval}) must be at most half of liveness_ttl '
                f'({self.liveness_ttl}), or one late heartbeat would make a live worker look dead'
            )

    @property
    def liveness_ttl_ms(self) -> int:
        return int(self.liveness_ttl * 1000)


def _positive_float(name: str, raw: Any, source: str) -> float:
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise ConfigurationError(f'{_label(name, source)} must be a number of seconds, got {raw!r}') from None
    if not math.isfinite(value) or value <= 0:
        raise ConfigurationError(f'{_label(name, source)} must be a positive number of seconds, got {raw!r}')
    return value


def _non_negative_int(name: str, raw: Any, source: str) -> int:
    if isinstance(raw, bool):
        raise ConfigurationError(f'{_label(name, source)} must be a whole number, got {raw!r}')
    try:
        value = int(str(raw).strip())
    except ValueError:
        raise ConfigurationError(f'{_label(name, source)} must be a whole number, got {raw!r}') from None
    if value < 0:
        raise ConfigurationError(f'{_label(name, source)} must not be negative, got {raw!r}')
    return value


def _policy(name: str, raw: Any, source: str) -> str:
    value = str(raw).strip().lower()
    if value not in POLICIES:
        raise ConfigurationError(f'{_label(name, source)} must be one of {", ".join(POLICIES)}, got {raw!r}')
    return value


def _patterns(name: str, raw: Any, source: str) -> tuple[str, ...]:
    if isinstance(raw, str):
        items: Iterable[Any] = raw.split(',')
    elif isinstance(raw, list | tuple | set | frozenset):
        items = raw
    else:
        raise ConfigurationError(f'{_label(name, source)} must be a list of patterns, got {raw!r}')
    patterns = []
    for item in items:
        if not isinstance(item, str):
            raise ConfigurationError(f'{_label(name, source)} must contain strings, got {item!r}')
        if item.strip():
            patterns.append(item.strip())
    return tuple(patterns)


_PARSERS = {
    'liveness_ttl': _positive_float,
    'heartbeat_interval': _positive_float,
    'recovery_interval': _positive_float,
    'max_redeliveries': _non_negative_int,
    'default_policy': _policy,
    'late_ack': _patterns,
    'idempotent': _patterns,
}


def _parse(name: str, raw: Any, source: str) -> Any:
    parser = _PARSERS.get(name)
    if parser is None:
        raise ConfigurationError(
            f'unknown setting {_label(name, source)}; known settings: {", ".join(Settings.names())}'
        )
    return parser(name, raw, source)


def _label(name: str, source: str) -> str:
    if source == 'the environment':
        return ENV_PREFIX + name.upper()
    if source.startswith('Django'):
        return f'RQ_ACKLATE[{name.upper()!r}]'
    return f'{name!r} (from {source})'


def _from_environ(environ: Mapping[str, str]) -> dict[str, str]:
    """Settings from ``RQ_ACKLATE_*`` variables; an unknown variable name is an error, not a no-op."""
    found = {}
    for key, value in environ.items():
        if key.startswith(ENV_PREFIX):
            found[key[len(ENV_PREFIX) :].lower()] = value
    return found


def _from_django(django: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(django, Mapping):
        raise ConfigurationError(f'settings.RQ_ACKLATE must be a dict, got {type(django).__name__}')
    return {str(k).lower(): v for k, v in django.items() if str(k).upper() not in DJANGO_ONLY_KEYS}


def django_settings() -> Mapping[str, Any]:
    """``settings.RQ_ACKLATE`` when the process has already imported and configured Django, else ``{}``."""
    conf = sys.modules.get('django.conf')
    if conf is None:
        return {}
    django_settings_obj = conf.settings
    if not django_settings_obj.configured:
        return {}
    value = getattr(django_settings_obj, 'RQ_ACKLATE', {})
    return value if value is not None else {}
