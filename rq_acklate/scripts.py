"""The Lua scripts in ``rq_acklate/lua/``, loaded once per connection with redis-py's ``register_script``.

Every script receives all the keys it touches in ``KEYS``. Direct calls go through redis-py's
``Script``, which reloads a script that ``SCRIPT FLUSH`` or a server restart removed. Calls inside
a pipeline use ``EVALSHA`` directly: redis-py would otherwise add a ``SCRIPT EXISTS`` round trip
to every pipeline, and the point of pipelining the ack is to add no round trip at all. Such a call
that fails with ``NOSCRIPT`` is repeated directly by :meth:`LuaScript.retry_if_missing`.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from importlib import resources
from typing import Any

from redis import Redis
from redis.client import Pipeline
from redis.commands.core import Script
from redis.exceptions import NoScriptError, ResponseError

Key = str
Arg = str | int | float | bytes


@cache
def source(name: str) -> str:
    return resources.files('rq_acklate').joinpath('lua').joinpath(f'{name}.lua').read_text(encoding='utf-8')


class LuaScript:
    """One Lua script bound to one connection."""

    def __init__(self, connection: Redis, name: str) -> None:
        self.name = name
        self._script: Script = connection.register_script(source(name))

    @property
    def sha(self) -> str:
        return str(self._script.sha)

    def __call__(self, keys: Sequence[Key], args: Sequence[Arg] = ()) -> Any:
        return self._script(keys=list(keys), args=list(args))

    def queue_in(self, pipeline: Pipeline, keys: Sequence[Key], args: Sequence[Arg] = ()) -> None:
        """Add a call to ``pipeline`` without redis-py's per-pipeline ``SCRIPT EXISTS`` check."""
        pipeline.evalsha(self.sha, len(keys), *keys, *args)

    def retry_if_missing(self, result: Any, keys: Sequence[Key], args: Sequence[Arg] = ()) -> Any:
        """Given the pipeline result of :meth:`queue_in`, run the script again if the server had
        lost it (``NOSCRIPT``); re-raise any other error; else return the result unchanged."""
        if isinstance(result, NoScriptError) or (
            isinstance(result, ResponseError) and str(result).startswith('NOSCRIPT')
        ):
            return self(keys, args)
        if isinstance(result, Exception):
            raise result
        return result


class Scripts:
    """All of rq-acklate's scripts for one connection."""

    def __init__(self, connection: Redis) -> None:
        self.reserve = LuaScript(connection, 'reserve')
        self.ack = LuaScript(connection, 'ack')
        self.fence = LuaScript(connection, 'fence')
        self.snapshot = LuaScript(connection, 'snapshot')
        self.settle = LuaScript(connection, 'settle')
        self.forget_worker = LuaScript(connection, 'forget_worker')
