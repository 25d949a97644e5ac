"""Fixtures of the in-process Django tests (pytest-django, settings ``testproject.settings``)."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def no_acklate_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests are about settings.RQ_ACKLATE: no RQ_ACKLATE_* variable from outside may mask it."""
    for name in list(os.environ):
        if name.startswith('RQ_ACKLATE_'):
            monkeypatch.delenv(name)


@pytest.fixture
def events_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Records of the ``rq_acklate.events`` logger, which the project's LOGGING does not propagate to the
    root logger (recent pytest versions capture non-propagating loggers too; older ones do not)."""
    logger = logging.getLogger('rq_acklate.events')
    caplog.set_level(logging.DEBUG, logger='rq_acklate.events')
    added = not _reaches(logger, caplog.handler)
    if added:
        logger.addHandler(caplog.handler)
    try:
        yield caplog
    finally:
        if added:
            logger.removeHandler(caplog.handler)


def _reaches(logger: logging.Logger | None, handler: logging.Handler) -> bool:
    while logger is not None:
        if handler in logger.handlers:
            return True
        if not logger.propagate:
            return False
        logger = logger.parent
    return False
