"""``settings.RQ_ACKLATE`` as the integration reads it.

The worker settings in it are read by :class:`rq_acklate.Settings` itself (so a worker started by
``manage.py rqworker`` sees them without this app); this module only adds what is Django-only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.conf import settings

SETTING = 'RQ_ACKLATE'


def raw_setting() -> Any:
    """``settings.RQ_ACKLATE`` as written (``{}`` when absent or None, like the core)."""
    value = getattr(settings, SETTING, None)
    return {} if value is None else value


def signals_to_log() -> bool:
    """Whether ``RQ_ACKLATE['SIGNALS_TO_LOG']`` is True (anything else is reported by check E001)."""
    raw = raw_setting()
    if not isinstance(raw, Mapping):
        return False
    return any(str(key).upper() == 'SIGNALS_TO_LOG' and value is True for key, value in raw.items())
