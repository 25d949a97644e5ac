"""Where ``settings.RQ_ACKLATE`` falls among the sources of a worker's settings, in a process where
Django is configured (as under ``manage.py rqworker``). Lowest first: defaults, Django's
``RQ_ACKLATE``, ``RQ_ACKLATE_*`` environment variables, worker class attributes, keyword arguments."""

from __future__ import annotations

import pytest
from django.conf import settings as django_settings
from redis import Redis

from rq_acklate import LateAckWorker, Policy, Settings
from rq_acklate.policy import PolicyResolver


@pytest.fixture
def connection(redis_url):
    client = Redis.from_url(redis_url)
    yield client
    client.close()


def test_a_worker_reads_rq_acklate_from_django_settings(connection):
    worker = LateAckWorker(['default'], connection=connection)
    assert worker.acklate_settings == Settings(
        liveness_ttl=2,
        heartbeat_interval=0.5,
        recovery_interval=0.5,
        max_redeliveries=3,
        default_policy='early',
        late_ack=('shop.tasks.legacy_*',),
        idempotent=('shop.tasks.legacy_rebuild',),
    )
    assert Settings.load(kwargs={}) == worker.acklate_settings  # what `manage.py rqacklate` uses


def test_precedence_kwargs_class_env_django_defaults(settings, monkeypatch, connection):
    settings.RQ_ACKLATE = {
        'LIVENESS_TTL': 40,
        'HEARTBEAT_INTERVAL': 4,
        'RECOVERY_INTERVAL': 8,
        'MAX_REDELIVERIES': 9,
        'SIGNALS_TO_LOG': True,  # Django-only: the core ignores it
    }
    monkeypatch.setenv('RQ_ACKLATE_LIVENESS_TTL', '30')
    monkeypatch.setenv('RQ_ACKLATE_HEARTBEAT_INTERVAL', '3')
    monkeypatch.setenv('RQ_ACKLATE_RECOVERY_INTERVAL', '7')

    class Tuned(LateAckWorker):
        liveness_ttl = 20
        heartbeat_interval = 2

    s = Tuned(['default'], connection=connection, liveness_ttl=10).acklate_settings
    assert s.liveness_ttl == 10  # keyword argument over everything
    assert s.heartbeat_interval == 2  # class attribute over the environment and Django
    assert s.recovery_interval == 7  # environment over Django
    assert s.max_redeliveries == 9  # Django over the default
    assert s.default_policy == 'early'  # the default


def test_django_settings_are_read_when_the_worker_starts(settings, connection):
    settings.RQ_ACKLATE = {'LIVENESS_TTL': 12}
    assert LateAckWorker(['default'], connection=connection).acklate_settings.liveness_ttl == 12
    settings.RQ_ACKLATE = {'LIVENESS_TTL': 13}
    assert LateAckWorker(['default'], connection=connection).acklate_settings.liveness_ttl == 13
    assert django_settings.RQ_ACKLATE == {'LIVENESS_TTL': 13}


def test_policies_from_the_django_patterns_and_default(settings, connection):
    resolver = PolicyResolver(LateAckWorker(['default'], connection=connection).acklate_settings)
    assert resolver.for_function('shop.tasks.legacy_rebuild') == Policy(late_ack=True, idempotent=True)
    assert resolver.for_function('shop.tasks.plain') == Policy(late_ack=False, idempotent=False)
    assert resolver.for_function('shop.tasks.charge') == Policy(late_ack=True, idempotent=False)  # decorated

    settings.RQ_ACKLATE = {'DEFAULT_POLICY': 'late', 'MAX_REDELIVERIES': 5}
    resolver = PolicyResolver(LateAckWorker(['default'], connection=connection).acklate_settings)
    assert resolver.for_function('shop.tasks.plain') == Policy(late_ack=True, idempotent=False, max_redeliveries=5)
