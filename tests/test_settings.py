"""Settings precedence and validation."""

from __future__ import annotations

import pytest

from rq_acklate import ConfigurationError, LateAckWorker, Settings


def test_defaults():
    s = Settings.load(environ={}, django={})
    assert (s.liveness_ttl, s.heartbeat_interval, s.recovery_interval) == (15.0, 3.0, 5.0)
    assert s.max_redeliveries == 3
    assert s.default_policy == 'early'


def test_precedence_kwargs_over_class_over_env_over_django_over_defaults():
    django = {'LIVENESS_TTL': 40, 'HEARTBEAT_INTERVAL': 4, 'RECOVERY_INTERVAL': 8, 'MAX_REDELIVERIES': 9}
    env = {
        'RQ_ACKLATE_LIVENESS_TTL': '30',
        'RQ_ACKLATE_HEARTBEAT_INTERVAL': '3',
        'RQ_ACKLATE_RECOVERY_INTERVAL': '7',
    }
    klass = {'liveness_ttl': 20, 'heartbeat_interval': 2}
    kwargs = {'liveness_ttl': 10}
    s = Settings.load(kwargs=kwargs, class_attrs=klass, environ=env, django=django)
    assert s.liveness_ttl == 10  # kwargs
    assert s.heartbeat_interval == 2  # class attribute
    assert s.recovery_interval == 7  # environment
    assert s.max_redeliveries == 9  # Django
    assert s.default_policy == 'early'  # default


def test_patterns_from_env_and_django():
    s = Settings.load(environ={'RQ_ACKLATE_LATE_ACK': 'app.tasks.*, other.job'}, django={'IDEMPOTENT': ['app.*']})
    assert s.late_ack == ('app.tasks.*', 'other.job')
    assert s.idempotent == ('app.*',)


@pytest.mark.parametrize(
    ('environ', 'message'),
    [
        (
            {'RQ_ACKLATE_LIVENESS_TTL': 'abc'},
            "RQ_ACKLATE_LIVENESS_TTL must be a number of seconds, got 'abc'",
        ),
        ({'RQ_ACKLATE_LIVENESS_TTL': '-1'}, 'RQ_ACKLATE_LIVENESS_TTL must be a positive number'),
        ({'RQ_ACKLATE_MAX_REDELIVERIES': '2.5'}, 'RQ_ACKLATE_MAX_REDELIVERIES must be a whole number'),
        ({'RQ_ACKLATE_DEFAULT_POLICY': 'sometimes'}, 'RQ_ACKLATE_DEFAULT_POLICY must be one of early, late'),
        ({'RQ_ACKLATE_LIVENES_TTL': '3'}, 'unknown setting RQ_ACKLATE_LIVENES_TTL'),
        (
            {'RQ_ACKLATE_HEARTBEAT_INTERVAL': '10'},
            'heartbeat_interval (10.0) must be at most half of liveness_ttl',
        ),
    ],
)
def test_invalid_values_name_the_setting(environ, message):
    with pytest.raises(ConfigurationError) as raised:
        Settings.load(environ=environ, django={})
    assert message in str(raised.value)


def test_invalid_django_settings_name_the_key():
    with pytest.raises(ConfigurationError, match=r"RQ_ACKLATE\['MAX_REDELIVERIES'\] must not be negative"):
        Settings.load(environ={}, django={'MAX_REDELIVERIES': -2})
    with pytest.raises(ConfigurationError, match=r"unknown setting RQ_ACKLATE\['TTL'\]"):
        Settings.load(environ={}, django={'TTL': 3})
    with pytest.raises(ConfigurationError, match='must be a dict'):
        Settings.load(environ={}, django=['LIVENESS_TTL'])  # type: ignore[arg-type]


def test_worker_takes_class_attributes_and_kwargs(connection, monkeypatch):
    monkeypatch.setenv('RQ_ACKLATE_RECOVERY_INTERVAL', '9')

    class Tuned(LateAckWorker):
        liveness_ttl = 8
        heartbeat_interval = 2

    worker = Tuned(['default'], connection=connection, heartbeat_interval=1)
    assert worker.acklate_settings.liveness_ttl == 8
    assert worker.acklate_settings.heartbeat_interval == 1
    assert worker.acklate_settings.recovery_interval == 9

    with pytest.raises(ConfigurationError, match="'liveness_ttl' \\(from keyword arguments\\)"):
        LateAckWorker(['default'], connection=connection, liveness_ttl='soon')
