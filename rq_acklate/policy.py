"""Job policies: the decorators that mark functions, and how a worker resolves a job's policy.

A policy says whether a job stays reserved until it finishes (``late_ack``), whether running it
twice is safe (``idempotent``), and how many redeliveries after worker losses it may have.

Resolution, strongest first, attribute by attribute:

1. ``job.meta['acklate']`` set at enqueue time (see :func:`policy_meta`);
2. the marks the decorators put on the function;
3. the ``late_ack`` / ``idempotent`` glob patterns of the settings;
4. the settings' ``default_policy`` (``early`` unless configured).

The worker learns the function's dotted name without unpickling the job's arguments (it reads
only the first item of the serialized call tuple) and imports each function once per process.
A function that cannot be imported gets :data:`SAFE_POLICY`: late ack, not idempotent, so a
worker loss fails it visibly instead of losing it or running it twice.
"""

from __future__ import annotations

import fnmatch
import functools
import json
import logging
import pickle
import pickletools
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar, overload

from rq.serializers import DefaultSerializer, JSONSerializer
from rq.utils import import_attribute

from .errors import ConfigurationError
from .settings import Settings

logger = logging.getLogger('rq_acklate.policy')

F = TypeVar('F', bound=Callable[..., Any])

#: Attribute the decorators set on a function: a dict with the marks given so far.
MARKS_ATTRIBUTE = '__rq_acklate__'
#: ``job.meta`` key holding per-job overrides (a dict like the one :func:`policy_meta` builds).
META_KEY = 'acklate'
#: ``job.meta`` key where a worker puts the job's redelivery count before running it.
REDELIVERIES_META_KEY = 'acklate_redeliveries'

_MARK_NAMES = ('late_ack', 'idempotent', 'max_redeliveries')
#: How long a failed import is remembered before the worker tries again (a deploy may fix it).
IMPORT_FAILURE_TTL = 60.0


@dataclass(frozen=True)
class Policy:
    """The resolved policy of one job."""

    late_ack: bool = False
    idempotent: bool = False
    max_redeliveries: int = 3

    def to_code(self) -> str:
        """Compact form stored with the reservation, e.g. ``LI3`` or ``E-3``."""
        return f'{"L" if self.late_ack else "E"}{"I" if self.idempotent else "-"}{self.max_redeliveries}'

    @classmethod
    @functools.lru_cache(maxsize=256)
    def from_code(cls, code: str) -> Policy:
        if len(code) < 3 or code[0] not in 'LE' or code[1] not in 'I-' or not code[2:].isdigit():
            raise ValueError(f'not a policy code: {code!r}')
        return cls(late_ack=code[0] == 'L', idempotent=code[1] == 'I', max_redeliveries=int(code[2:]))


#: What a job gets when its function cannot be imported to read its marks.
SAFE_POLICY = Policy(late_ack=True, idempotent=False)


@overload
def late_ack(func: F, /) -> F: ...


@overload
def late_ack(
    func: None = None, /, *, idempotent: bool | None = None, max_redeliveries: int | None = None
) -> Callable[[F], F]: ...


def late_ack(
    func: F | None = None, /, *, idempotent: bool | None = None, max_redeliveries: int | None = None
) -> F | Callable[[F], F]:
    """Mark a job function as late-ack: its reservation is held until the job's outcome is stored.

    Use bare (``@late_ack``) or with options (``@late_ack(idempotent=True, max_redeliveries=5)``).
    The function is returned unchanged apart from the mark, so RQ still enqueues it by its own
    dotted name and calling it directly behaves as before.
    """
    if max_redeliveries is not None:
        _check_max_redeliveries(max_redeliveries)

    def mark(f: F) -> F:
        marks: dict[str, Any] = {'late_ack': True}
        if idempotent is not None:
            marks['idempotent'] = bool(idempotent)
        if max_redeliveries is not None:
            marks['max_redeliveries'] = max_redeliveries
        return _add_marks(f, marks)

    return mark(func) if func is not None else mark


def idempotent(func: F, /) -> F:
    """Mark a job function as safe to run twice, so a worker loss redelivers it instead of failing it.

    Stacks with :func:`late_ack` in either order. On its own it changes nothing for early-ack jobs.
    """
    return _add_marks(func, {'idempotent': True})


def policy_meta(
    *, late_ack: bool | None = None, idempotent: bool | None = None, max_redeliveries: int | None = None
) -> dict[str, dict[str, Any]]:
    """``meta`` for ``queue.enqueue(..., meta=policy_meta(late_ack=True))``: a per-job override."""
    override: dict[str, Any] = {}
    if late_ack is not None:
        override['late_ack'] = bool(late_ack)
    if idempotent is not None:
        override['idempotent'] = bool(idempotent)
    if max_redeliveries is not None:
        _check_max_redeliveries(max_redeliveries)
        override['max_redeliveries'] = max_redeliveries
    return {META_KEY: override}


def redeliveries(job: Any = None) -> int:
    """How many times ``job`` (default: the job running now) was redelivered after a worker loss."""
    if job is None:
        from rq import get_current_job

        job = get_current_job()
    meta = getattr(job, 'meta', None) or {}
    return int(meta.get(REDELIVERIES_META_KEY, 0))


def marks_of(func: Callable[..., Any]) -> dict[str, Any]:
    """The marks the decorators put on ``func`` (empty for an undecorated function)."""
    target = getattr(func, '__func__', func)
    marks = getattr(target, MARKS_ATTRIBUTE, None)
    return dict(marks) if isinstance(marks, dict) else {}


#: Dotted names of the functions decorated so far in this process, with their marks.
_MARKED: dict[str, dict[str, Any]] = {}


def marked_functions() -> dict[str, dict[str, Any]]:
    """The functions decorated with :func:`late_ack` / :func:`idempotent` in modules imported so far."""
    return {name: dict(marks) for name, marks in _MARKED.items()}


def _add_marks(func: F, marks: Mapping[str, Any]) -> F:
    target = getattr(func, '__func__', func)  # a bound or class method: mark the underlying function
    merged = {**marks_of(target), **marks}
    try:
        setattr(target, MARKS_ATTRIBUTE, merged)
    except (AttributeError, TypeError):
        raise TypeError(
            f'cannot mark {func!r}: rq-acklate decorators need a function that accepts attributes; '
            'use policy_meta() at enqueue time or the late_ack/idempotent patterns in the settings instead'
        ) from None
    name = f'{getattr(target, "__module__", "?")}.{getattr(target, "__qualname__", "?")}'
    _MARKED[name] = merged
    return func


def _check_max_redeliveries(value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigurationError(f'max_redeliveries must be a whole number >= 0, got {value!r}')


def peek_function_name(data: bytes, serializer: Any) -> str | None:
    """The dotted name of a job's function, read from its serialized data without building the
    arguments: no unpickling, so no user code runs.

    RQ serializes ``(func_name, instance, args, kwargs)``; only the first string is read. Returns
    ``None`` for serializers other than RQ's pickle and JSON ones, or for data it cannot read.
    """
    try:
        if _is_pickle(serializer):
            for opcode, arg, _pos in pickletools.genops(data):
                if opcode.name in {'SHORT_BINUNICODE', 'BINUNICODE', 'BINUNICODE8', 'UNICODE'}:
                    return str(arg)
                if opcode.name not in {'PROTO', 'FRAME', 'MARK', 'EMPTY_TUPLE'}:
                    return None
            return None
        if _is_json(serializer):
            text = data.decode('utf-8').lstrip()
            if not text.startswith('['):
                return None
            value, _end = json.JSONDecoder().raw_decode(text, 1 + len(text[1:]) - len(text[1:].lstrip()))
            return value if isinstance(value, str) else None
    except (ValueError, UnicodeDecodeError):
        return None
    return None


def _is_pickle(serializer: Any) -> bool:
    return (
        serializer is DefaultSerializer
        or isinstance(serializer, DefaultSerializer)
        or (getattr(serializer, 'loads', None) is pickle.loads)
    )


def _is_json(serializer: Any) -> bool:
    return serializer is JSONSerializer or isinstance(serializer, JSONSerializer)


class PolicyResolver:
    """Resolves the policy of jobs for one worker process, caching per function name."""

    def __init__(self, settings: Settings, importer: Callable[[str], Any] = import_attribute) -> None:
        self.settings = settings
        self._import = importer
        self._by_function: dict[str, Policy] = {}
        self._import_failed_at: dict[str, float] = {}

    def resolve(self, job: Any) -> Policy:
        """The policy of ``job`` (an ``rq.job.Job``). Never raises: unreadable input gets the safe default."""
        base = self.for_function(self._function_name(job))
        return self._apply_meta(base, getattr(job, 'meta', None) or {}, job)

    def for_function(self, func_name: str | None) -> Policy:
        if func_name is None:
            return self._with_default_max(SAFE_POLICY)
        cached = self._by_function.get(func_name)
        if cached is not None:
            return cached
        failed_at = self._import_failed_at.get(func_name)
        if failed_at is not None and time.monotonic() - failed_at < IMPORT_FAILURE_TTL:
            return self._from_patterns(func_name, importable=False)
        try:
            func = self._import(func_name)
        except Exception as exc:  # any import-time error of user code
            logger.warning(
                'rq-acklate: cannot import %s to read its policy (%s: %s); using the safe default '
                '(late ack, not idempotent) until it imports',
                func_name,
                type(exc).__name__,
                exc,
            )
            self._import_failed_at[func_name] = time.monotonic()
            return self._from_patterns(func_name, importable=False)
        self._import_failed_at.pop(func_name, None)
        policy = self._from_patterns(func_name, importable=True, marks=marks_of(func))
        self._by_function[func_name] = policy
        return policy

    def _from_patterns(self, func_name: str, *, importable: bool, marks: Mapping[str, Any] | None = None) -> Policy:
        marks = marks or {}
        settings = self.settings
        matches_late = any(fnmatch.fnmatchcase(func_name, p) for p in settings.late_ack)
        matches_idem = any(fnmatch.fnmatchcase(func_name, p) for p in settings.idempotent)
        if importable:
            late = marks.get('late_ack', matches_late or settings.default_policy == 'late')
            idem = marks.get('idempotent', matches_idem)
        else:
            late, idem = SAFE_POLICY.late_ack, matches_idem
        max_redeliveries = marks.get('max_redeliveries', settings.max_redeliveries)
        return Policy(late_ack=bool(late), idempotent=bool(idem), max_redeliveries=int(max_redeliveries))

    def _apply_meta(self, base: Policy, meta: Mapping[str, Any], job: Any) -> Policy:
        override = meta.get(META_KEY) if isinstance(meta, Mapping) else None
        if not override:
            return base
        if not isinstance(override, Mapping):
            logger.warning('rq-acklate: job %s has meta[%r]=%r, not a dict; ignored', job.id, META_KEY, override)
            return base
        late = override.get('late_ack', base.late_ack)
        idem = override.get('idempotent', base.idempotent)
        max_redeliveries = override.get('max_redeliveries', base.max_redeliveries)
        if isinstance(max_redeliveries, bool) or not isinstance(max_redeliveries, int) or max_redeliveries < 0:
            logger.warning(
                'rq-acklate: job %s has an invalid max_redeliveries override %r; using %d',
                job.id,
                max_redeliveries,
                base.max_redeliveries,
            )
            max_redeliveries = base.max_redeliveries
        return Policy(late_ack=bool(late), idempotent=bool(idem), max_redeliveries=max_redeliveries)

    def _function_name(self, job: Any) -> str | None:
        try:
            name = peek_function_name(job.data, job.serializer)
            if name is None:
                # A serializer we cannot peek into: fall back to RQ's own (full) deserialization.
                name = job.func_name
            if name is None or '.' not in name:
                # A bound method's job carries only the method name: nothing to import by name.
                return None
            return str(name)
        except Exception:
            logger.warning('rq-acklate: cannot read the function name of job %s', job.id, exc_info=True)
            return None

    def _with_default_max(self, policy: Policy) -> Policy:
        return Policy(policy.late_ack, policy.idempotent, self.settings.max_redeliveries)
