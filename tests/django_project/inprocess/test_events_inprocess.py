"""``RQ_ACKLATE['SIGNALS_TO_LOG']``: every signal becomes a record of the ``rq_acklate.events`` logger."""

from __future__ import annotations

import gc
import logging

import pytest
from django.apps import apps

from rq_acklate import signals
from rq_acklate.contrib.django import events

PAYLOADS = {
    'job_reserved': ({'job_id': 'j1', 'queue': 'high', 'worker_name': 'w1', 'redeliveries': 0}, logging.INFO),
    'job_acked': ({'job_id': 'j1', 'queue': 'high', 'worker_name': 'w1'}, logging.INFO),
    'job_requeued': (
        {'job_id': 'j1', 'queue': 'high', 'worker_name': 'w1', 'redeliveries': 1, 'reason': 'worker-lost'},
        logging.WARNING,
    ),
    'job_worker_lost': ({'job_id': 'j2', 'queue': 'high', 'worker_name': 'w1', 'reason': 'worker-lost'}, logging.ERROR),
    'job_poisoned': (
        {'job_id': 'j3', 'queue': 'low', 'worker_name': 'w1', 'redeliveries': 4, 'max_redeliveries': 3},
        logging.ERROR,
    ),
    'reservation_taken_over': ({'job_id': 'j4', 'worker_name': 'w1'}, logging.WARNING),
    'worker_recovered': ({'worker_name': 'w1', 'counts': {'requeued': 1}}, logging.INFO),
}


@pytest.fixture
def restore_events():
    """Leave the receivers connected, as the project's settings (SIGNALS_TO_LOG: True) made them."""
    yield
    events.connect()


def send_all() -> None:
    for signal in signals.ALL_SIGNALS:
        signals.send(signal, 'sender', **PAYLOADS[signal.name][0])


def test_every_signal_is_logged(events_log):
    assert {signal.name for signal in signals.ALL_SIGNALS} == set(PAYLOADS)
    gc.collect()  # blinker holds receivers weakly by default: these must survive
    send_all()
    records = [r for r in events_log.records if r.name == 'rq_acklate.events']
    assert [r.acklate_signal for r in records] == [signal.name for signal in signals.ALL_SIGNALS]
    for record in records:
        payload, level = PAYLOADS[record.acklate_signal]
        assert record.levelno == level
        assert record.acklate == payload
    requeued = next(r for r in records if r.acklate_signal == 'job_requeued')
    assert requeued.getMessage() == 'job_requeued job_id=j1 queue=high worker_name=w1 redeliveries=1 reason=worker-lost'


def test_connect_is_idempotent_and_disconnect_stops_logging(events_log, restore_events):
    events.connect()
    events.connect()
    signals.send(signals.job_acked, 'sender', **PAYLOADS['job_acked'][0])
    assert len(events_log.records) == 1
    events.disconnect()
    assert not events.connected()
    send_all()
    assert len(events_log.records) == 1


def test_the_app_connects_only_when_signals_to_log_is_true(settings, restore_events):
    app_config = apps.get_app_config('rq_acklate')
    events.disconnect()
    for value in (False, 'yes', None):
        settings.RQ_ACKLATE = {'SIGNALS_TO_LOG': value}
        app_config.ready()
        assert not events.connected()
    settings.RQ_ACKLATE = {'SIGNALS_TO_LOG': True}
    app_config.ready()
    assert events.connected()
