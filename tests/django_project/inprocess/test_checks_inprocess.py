"""The system checks, called in-process with pytest-django's ``settings`` fixture (one Django setup
for many configurations). tests/test_django.py runs the same checks through ``manage.py check``."""

from __future__ import annotations

import pytest
from django.core import checks
from django.core.checks import run_checks

from rq_acklate import LateAckWorker


def acklate_messages() -> list[checks.CheckMessage]:
    return run_checks(tags=['rq_acklate'])


def test_the_project_settings_pass():
    assert acklate_messages() == []


def test_no_rq_acklate_setting_passes(settings):
    del settings.RQ_ACKLATE
    assert acklate_messages() == []


@pytest.mark.parametrize(
    ('value', 'key', 'fragment'),
    [
        ({'LIVENESS_TTL': 'soon'}, 'LIVENESS_TTL', "must be a number of seconds, got 'soon'"),
        ({'LIVENESS_TTL': 0.5, 'HEARTBEAT_INTERVAL': 0.2}, 'LIVENESS_TTL', 'at least 1 second'),
        ({'HEARTBEAT_INTERVAL': 10}, 'HEARTBEAT_INTERVAL', 'must be at most half of liveness_ttl'),
        ({'RECOVERY_INTERVAL': -1}, 'RECOVERY_INTERVAL', 'must be a positive number of seconds'),
        ({'MAX_REDELIVERIES': 2.5}, 'MAX_REDELIVERIES', 'must be a whole number'),
        ({'MAX_REDELIVERIES': True}, 'MAX_REDELIVERIES', 'must be a whole number'),
        ({'DEFAULT_POLICY': 'sometimes'}, 'DEFAULT_POLICY', 'must be one of early, late'),
        ({'LATE_ACK': 5}, 'LATE_ACK', 'must be a list of patterns'),
        ({'IDEMPOTENT': ['shop.tasks.*', 3]}, 'IDEMPOTENT', 'must contain strings'),
        ({'SIGNALS_TO_LOG': 'yes'}, 'SIGNALS_TO_LOG', "must be True or False, got 'yes'"),
        ({'COLOUR': 'blue'}, 'COLOUR', 'unknown setting'),
    ],
)
def test_e001_names_the_key(settings, value, key, fragment):
    settings.RQ_ACKLATE = value
    (message,) = acklate_messages()
    assert message.id == 'rq_acklate.E001'
    assert message.level == checks.ERROR
    assert f"RQ_ACKLATE['{key}']" in message.msg
    assert fragment in message.msg


def test_e001_reports_every_bad_key(settings):
    settings.RQ_ACKLATE = {'LIVENESS_TTL': 'soon', 'DEFAULT_POLICY': 'x', 'COLOUR': 1, 'MAX_REDELIVERIES': 3}
    messages = acklate_messages()
    assert [m.id for m in messages] == ['rq_acklate.E001'] * 3
    for key in ('LIVENESS_TTL', 'DEFAULT_POLICY', 'COLOUR'):
        assert sum(f"RQ_ACKLATE['{key}']" in m.msg for m in messages) == 1


def test_e001_when_not_a_dict(settings):
    settings.RQ_ACKLATE = ['LIVENESS_TTL', 2]
    (message,) = acklate_messages()
    assert message.id == 'rq_acklate.E001'
    assert message.msg == 'settings.RQ_ACKLATE must be a dict, got list'


@pytest.mark.parametrize(
    ('rq', 'problem'),
    [
        ({}, "RQ['WORKER_CLASS'] is not set"),
        ({'WORKER_CLASS': 'rq.Worker'}, "RQ['WORKER_CLASS'] = 'rq.Worker' is not a late-ack worker class"),
        ({'WORKER_CLASS': 'rq.SimpleWorker'}, 'is not a late-ack worker class'),
        ({'WORKER_CLASS': 'nowhere.Worker'}, "RQ['WORKER_CLASS'] = 'nowhere.Worker' cannot be imported"),
        ({'WORKER_CLASS': 'rq_acklate.LateAckWorker'}, None),
        ({'WORKER_CLASS': 'rq_acklate.LateAckSimpleWorker'}, None),
        ({'WORKER_CLASS': 'shop.workers.RecordingWorker'}, None),
        ({'WORKER_CLASS': LateAckWorker}, None),
    ],
)
def test_w001_worker_class(settings, rq, problem):
    settings.RQ = rq
    messages = acklate_messages()
    if problem is None:
        assert messages == []
        return
    (message,) = messages
    assert message.id == 'rq_acklate.W001'
    assert message.level == checks.WARNING
    assert problem in message.msg
    # It says why late acks matter here: decorated functions (shop.tasks) and the LATE_ACK patterns.
    assert 'functions are marked late_ack (shop.tasks.charge, shop.tasks.resize, shop.tasks.slow_once)' in message.msg
    assert "RQ_ACKLATE['LATE_ACK'] lists shop.tasks.legacy_*" in message.msg
    assert "'WORKER_CLASS': 'rq_acklate.LateAckWorker'" in message.hint


def test_w001_names_a_late_default_policy(settings):
    settings.RQ = {}
    settings.RQ_ACKLATE = {'DEFAULT_POLICY': 'late'}
    (message,) = acklate_messages()
    assert message.id == 'rq_acklate.W001'
    assert "RQ_ACKLATE['DEFAULT_POLICY'] is 'late'" in message.msg


def test_w001_only_with_django_rq(settings):
    settings.INSTALLED_APPS = [app for app in settings.INSTALLED_APPS if app != 'django_rq']
    settings.RQ = {}
    assert acklate_messages() == []


@pytest.mark.parametrize(
    ('key', 'pattern', 'matches'),
    [
        ('LATE_ACK', 'shop.tasks.*', True),
        ('LATE_ACK', 'shop.tasks.legacy_*', True),
        ('LATE_ACK', 'shop.*', True),
        ('LATE_ACK', '*.legacy_rebuild', True),
        ('LATE_ACK', 'shop.tasks.[cr]*', True),
        ('IDEMPOTENT', 'shop.tasks.resize', True),
        ('IDEMPOTENT', 'shop.workers.RecordingWorker.execute_job', True),
        ('LATE_ACK', 'shop.taks.*', False),
        ('LATE_ACK', 'shop.tasks.nothing_here', False),
        ('LATE_ACK', 'shop.tasks.rebuild_?', False),
        ('IDEMPOTENT', 'nowhere.*', False),
        ('IDEMPOTENT', 'shop.tasks', False),  # a module, not a function
    ],
)
def test_w002_patterns(settings, key, pattern, matches):
    settings.RQ_ACKLATE = {key: [pattern]}
    messages = acklate_messages()
    if matches:
        assert messages == []
        return
    (message,) = messages
    assert message.id == 'rq_acklate.W002'
    assert message.level == checks.WARNING
    assert message.msg == f"RQ_ACKLATE['{key}'] has the pattern {pattern!r}, which matches no importable function."
