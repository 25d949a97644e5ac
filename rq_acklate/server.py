"""What rq-acklate needs from the Redis server."""

from __future__ import annotations

from redis import Redis
from rq.utils import get_version

from .errors import RedisVersionError

#: LMOVE and BLMOVE, which move a job atomically from a queue into a worker's reserved list.
MIN_REDIS_VERSION = (6, 2, 0)


def require_supported_redis(connection: Redis) -> None:
    """Raise :class:`RedisVersionError` unless the server has LMOVE/BLMOVE (Redis >= 6.2)."""
    version = tuple(get_version(connection))
    if version < MIN_REDIS_VERSION:
        raise RedisVersionError(
            f'rq-acklate needs Redis >= 6.2 (for LMOVE/BLMOVE); this server is {".".join(map(str, version))}'
        )
