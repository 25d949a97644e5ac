"""Enqueue a few jobs: python enqueue.py [redis-url]"""

from __future__ import annotations

import sys

import tasks
from redis import Redis
from rq import Queue


def main(url: str = 'redis://localhost:6379/0') -> list[str]:
    queue = Queue('default', connection=Redis.from_url(url))
    enqueued = [
        queue.enqueue(tasks.resize_image, 1),
        queue.enqueue(tasks.charge_card, 42),
        queue.enqueue(tasks.send_newsletter, 7),
    ]
    for job in enqueued:
        print(f'enqueued {job.func_name} as {job.id}')
    return [job.id for job in enqueued]


if __name__ == '__main__':
    main(*sys.argv[1:2])
