"""System checks, so a misconfiguration shows in ``manage.py check`` instead of in a lost job.

* ``rq_acklate.E001`` (error): ``RQ_ACKLATE`` is not a dict, or a key of it is unknown or has an
  invalid value (one message per key), or two values contradict each other. The worker would refuse
  to start.
* ``rq_acklate.W001`` (warning): django-rq is installed and some jobs are late-ack (decorated, or
  through ``LATE_ACK`` / ``DEFAULT_POLICY='late'``), but ``RQ['WORKER_CLASS']`` is not a late-ack
  worker class, so ``manage.py rqworker`` would ack them when they start.
* ``rq_acklate.W002`` (warning): a ``LATE_ACK`` or ``IDEMPOTENT`` pattern matches no importable
  function (a typo, or a module that moved).

To find decorated functions, the checks import the ``tasks`` and ``jobs`` modules of the installed
apps (as Celery's autodiscovery does); functions elsewhere count once something imported them.
"""

from __future__ import annotations

import fnmatch
import inspect
import logging
import sys
from collections.abc import Iterable, Iterator, Mapping
from importlib import import_module
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core import checks
from django.utils.module_loading import module_has_submodule
from rq.utils import import_attribute

from rq_acklate.errors import ConfigurationError
from rq_acklate.policy import marked_functions
from rq_acklate.settings import DJANGO_ONLY_KEYS, Settings
from rq_acklate.worker import LateAckWorkerMixin

from .conf import SETTING, raw_setting

logger = logging.getLogger('rq_acklate.contrib.django')

TAG = 'rq_acklate'
E001 = 'rq_acklate.E001'
W001 = 'rq_acklate.W001'
W002 = 'rq_acklate.W002'

#: Submodules of installed apps imported to find decorated job functions.
TASK_MODULES = ('tasks', 'jobs')
_GLOB_CHARS = '*?['
LATE_ACK_WORKER = 'rq_acklate.LateAckWorker'


def register() -> None:
    """Register the checks with Django (called from the app config's ``ready``)."""
    for check in (check_settings, check_worker_class, check_patterns):
        checks.register(check, TAG)


# -- E001 -------------------------------------------------------------------------------------------


def check_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """``RQ_ACKLATE`` must be what a worker accepts: validated by the core's own :meth:`Settings.load`."""
    raw = raw_setting()
    if not isinstance(raw, Mapping):
        return [_e001(f'settings.{SETTING} must be a dict, got {type(raw).__name__}')]
    errors = [
        _e001(f'{_label(key)} must be True or False, got {value!r}')
        for key, value in raw.items()
        if str(key).upper() in DJANGO_ONLY_KEYS and not isinstance(value, bool)
    ]
    remaining = {key: value for key, value in raw.items() if str(key).upper() not in DJANGO_ONLY_KEYS}
    # Settings.load stops at the first problem: drop the key it names and go on, so every bad key shows.
    while True:
        try:
            Settings.load(kwargs={}, environ={}, django=remaining)
        except ConfigurationError as exc:
            message = str(exc)
            named = [key for key in remaining if _label(key) in message]
            if named:
                errors.append(_e001(message))
                for key in named:
                    del remaining[key]
                continue
            # A rule between values (heartbeat_interval against liveness_ttl): name the keys it mentions.
            involved = [key for key in remaining if str(key).lower() in message] or list(remaining)
            errors.append(_e001(f'{", ".join(_label(key) for key in involved)}: {message}'))
        return errors


def _label(key: Any) -> str:
    """How the core names a key of ``RQ_ACKLATE`` in its messages."""
    return f'{SETTING}[{str(key).upper()!r}]'


def _e001(message: str) -> checks.Error:
    keys = ', '.join([*(name.upper() for name in Settings.names()), *sorted(DJANGO_ONLY_KEYS)])
    return checks.Error(
        message,
        hint=f'{SETTING} is a dict with the keys {keys}; see the Django section of the rq-acklate README.',
        obj=f'settings.{SETTING}',
        id=E001,
    )


def _acklate_settings() -> Settings | None:
    """The worker settings ``RQ_ACKLATE`` alone makes, or None when E001 applies."""
    raw = raw_setting()
    if not isinstance(raw, Mapping):
        return None
    try:
        return Settings.load(kwargs={}, environ={}, django=raw)
    except ConfigurationError:
        return None


# -- W001 -------------------------------------------------------------------------------------------


def check_worker_class(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """With django-rq, late-ack jobs need ``RQ['WORKER_CLASS']`` to be a late-ack worker class."""
    if not apps.is_installed('django_rq'):
        return []
    reasons = late_ack_reasons()
    if not reasons:
        return []
    rq_setting = getattr(settings, 'RQ', None) or {}
    configured = rq_setting.get('WORKER_CLASS') if isinstance(rq_setting, Mapping) else None
    if configured is None:
        problem = "RQ['WORKER_CLASS'] is not set, so `manage.py rqworker` runs RQ's plain Worker"
    else:
        try:
            worker_class = import_attribute(configured) if isinstance(configured, str) else configured
        except Exception as exc:
            problem = f"RQ['WORKER_CLASS'] = {configured!r} cannot be imported ({type(exc).__name__}: {exc})"
        else:
            if is_late_ack_worker_class(worker_class):
                return []
            problem = f"RQ['WORKER_CLASS'] = {configured!r} is not a late-ack worker class"
    return [
        checks.Warning(
            f'{problem}, but {"; ".join(reasons)}: their jobs would be acked when they start, '
            'and lost or failed as abandoned if a worker dies.',
            hint=f"Set RQ = {{'WORKER_CLASS': '{LATE_ACK_WORKER}'}}, or put rq_acklate.LateAckWorkerMixin "
            'first in the bases of your own worker class. If every worker gets a late-ack class from '
            "`--worker-class` instead, add 'rq_acklate.W001' to SILENCED_SYSTEM_CHECKS.",
            obj='settings.RQ',
            id=W001,
        )
    ]


def is_late_ack_worker_class(value: Any) -> bool:
    return isinstance(value, type) and issubclass(value, LateAckWorkerMixin)


def late_ack_reasons() -> list[str]:
    """Why this project has late-ack jobs, in words; empty when it has none."""
    reasons = []
    discover_task_modules()
    marked = sorted(name for name, marks in marked_functions().items() if marks.get('late_ack'))
    if marked:
        reasons.append(f'functions are marked late_ack ({_some(marked)})')
    acklate = _acklate_settings()
    if acklate is not None and acklate.late_ack:
        reasons.append(f'{_label("LATE_ACK")} lists {_some(acklate.late_ack)}')
    if acklate is not None and acklate.default_policy == 'late':
        reasons.append(f"{_label('DEFAULT_POLICY')} is 'late'")
    return reasons


def _some(names: Iterable[str], shown: int = 3) -> str:
    names = list(names)
    more = f' and {len(names) - shown} more' if len(names) > shown else ''
    return ', '.join(names[:shown]) + more


def discover_task_modules() -> None:
    """Import the ``tasks`` and ``jobs`` modules of the installed apps, so their decorators have run.

    A module that fails to import is skipped: the worker reports it when a job needs it.
    """
    for app_config in apps.get_app_configs():
        for submodule in TASK_MODULES:
            if not module_has_submodule(app_config.module, submodule):
                continue
            name = f'{app_config.name}.{submodule}'
            try:
                import_module(name)
            except Exception as exc:  # user code may raise anything at import
                logger.debug('rq-acklate checks: cannot import %s: %s: %s', name, type(exc).__name__, exc)


# -- W002 -------------------------------------------------------------------------------------------


def check_patterns(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """A ``LATE_ACK`` / ``IDEMPOTENT`` pattern that matches nothing is most likely a typo."""
    acklate = _acklate_settings()
    if acklate is None or not (acklate.late_ack or acklate.idempotent):
        return []
    discover_task_modules()
    warnings: list[checks.CheckMessage] = []
    for key, patterns in (('LATE_ACK', acklate.late_ack), ('IDEMPOTENT', acklate.idempotent)):
        for pattern in patterns:
            if not matches_a_function(pattern):
                warnings.append(
                    checks.Warning(
                        f'{_label(key)} has the pattern {pattern!r}, which matches no importable function.',
                        hint='Patterns are matched against the dotted name RQ gives a job function '
                        "(module.function, e.g. 'myapp.tasks.*'); check the module path and the name.",
                        obj=f'settings.{SETTING}',
                        id=W002,
                    )
                )
    return warnings


def matches_a_function(pattern: str) -> bool:
    """Whether ``pattern`` names an importable function (exact name) or matches the dotted name of a
    function in an importable module under its literal prefix (glob)."""
    starts = [pattern.index(char) for char in _GLOB_CHARS if char in pattern]
    if not starts:
        try:
            return callable(import_attribute(pattern))
        except Exception:
            return False
    prefix = pattern[: min(starts)]
    module_prefix = prefix.rsplit('.', 1)[0] if '.' in prefix else ''
    _import_longest(module_prefix)
    for module_name in list(sys.modules):
        if module_prefix and module_name != module_prefix and not module_name.startswith(module_prefix + '.'):
            continue
        module = sys.modules.get(module_name)
        if module is not None and any(fnmatch.fnmatchcase(name, pattern) for name in function_names(module)):
            return True
    return False


def _import_longest(dotted: str) -> None:
    parts = dotted.split('.') if dotted else []
    for end in range(len(parts), 0, -1):
        try:
            import_module('.'.join(parts[:end]))
            return
        except Exception:
            continue


def function_names(module: Any) -> Iterator[str]:
    """Dotted names, as RQ writes them for a job (``module.qualname``), of what ``module`` defines:
    its functions and classes, and the functions of those classes."""
    module_name = getattr(module, '__name__', None)
    try:
        members = list(vars(module).values())
    except TypeError:
        return
    for value in members:
        if getattr(value, '__module__', None) != module_name or not callable(value):
            continue
        qualname = getattr(value, '__qualname__', None)
        if not isinstance(qualname, str):
            continue
        yield f'{module_name}.{qualname}'
        if inspect.isclass(value):
            for attribute in vars(value).values():
                function = getattr(attribute, '__func__', attribute)
                if inspect.isfunction(function):
                    yield f'{module_name}.{function.__qualname__}'
