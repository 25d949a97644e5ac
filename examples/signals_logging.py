"""Receivers for rq-acklate's signals: one that logs every event, one that counts them.

    python signals_logging.py REDIS_URL [QUEUE...]    # a burst worker with both receivers connected

To use them in your workers, import this module where the worker starts (for example from your
worker class's module), or connect your own receivers the same way.
"""

from __future__ import annotations

import logging
import sys
from collections import Counter
from typing import Any

from redis import Redis

from rq_acklate import LateAckWorker, signals

log = logging.getLogger('rq_acklate.events')

#: Event counts in this process; export them to your metrics system (Prometheus, StatsD...).
COUNTS: Counter[str] = Counter()


def log_event(sender: Any, **payload: Any) -> None:
    log.info('%s %s', payload.pop('_signal', '?'), payload)


def make_logger(name: str):  # type: ignore[no-untyped-def]
    def receiver(sender: Any, **payload: Any) -> None:
        log_event(sender, _signal=name, **payload)
        COUNTS[name] += 1

    return receiver


# Keep references: blinker holds receivers weakly unless told otherwise.
RECEIVERS = {signal.name: make_logger(signal.name) for signal in signals.ALL_SIGNALS}
for signal in signals.ALL_SIGNALS:
    signal.connect(RECEIVERS[signal.name])


def main(url: str, *queues: str) -> Counter[str]:
    logging.basicConfig(level=logging.INFO, format='%(name)s: %(message)s')
    LateAckWorker(list(queues) or ['default'], connection=Redis.from_url(url)).work(burst=True)
    log.info('counts: %s', dict(COUNTS))
    return COUNTS


if __name__ == '__main__':
    main(*sys.argv[1:])
