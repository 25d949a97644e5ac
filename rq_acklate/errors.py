"""Exceptions rq-acklate raises on purpose."""

from __future__ import annotations


class AcklateError(Exception):
    """Base class for rq-acklate's own errors."""


class ConfigurationError(AcklateError, ValueError):
    """A setting has an invalid name or value. The message names the setting and its source."""


class RedisVersionError(AcklateError, RuntimeError):
    """The Redis server is older than 6.2 and has no LMOVE/BLMOVE, so jobs cannot be moved atomically."""
