"""The app config: registers the checks and, when asked to, the signal logging."""

from __future__ import annotations

from django.apps import AppConfig


class RqAcklateConfig(AppConfig):  # type: ignore[misc]  # Django ships no type hints
    name = 'rq_acklate.contrib.django'
    label = 'rq_acklate'  # the default would be 'django', the last part of the module path
    verbose_name = 'rq-acklate'

    def ready(self) -> None:
        from . import checks, conf, events

        checks.register()
        if conf.signals_to_log():
            events.connect()
