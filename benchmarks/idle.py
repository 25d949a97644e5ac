"""Idle cost and pickup latency, plain RQ vs rq-acklate, side by side.

    python benchmarks/idle.py [--samples 30] [--idle-seconds 20] [--queues 1,2,8]

Two private redis-servers run at once, one per side, so Redis's own counters (INFO commandstats,
total_reads_processed) separate the two. For each queue count, one idle `rq worker` per side
listens on q1..qN:

* idle cost: commands and round trips per second while nobody enqueues anything;
* pickup latency: after 1-2.5 s of idleness, a job is enqueued on both sides (order alternating)
  and records when it starts; latency = start - enqueue, on the same clock. Jobs alternate between
  the first and the last queue.
"""

from __future__ import annotations

import argparse
import random
import time

from rq import Queue

from common import (
    ACKLATE,
    PLAIN,
    commandstats,
    delta,
    kill_tree,
    machine,
    percentile,
    servers,
    start_worker,
    table,
)


def idle_rates(client, seconds: float) -> tuple[float, float, dict[str, int]]:
    before, reads_before = commandstats(client), int(client.info('stats')['total_reads_processed'])
    time.sleep(seconds)
    after, reads_after = commandstats(client), int(client.info('stats')['total_reads_processed'])
    commands = delta(after, before)
    commands.pop('info', None)
    reads = reads_after - reads_before - 2  # the two INFO calls of this measurement
    return sum(commands.values()) / seconds, reads / seconds, commands


def wait_started(client, job_id: str, timeout: float = 10) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        entry = client.lindex(f'bench:starts:{job_id}', 0)
        if entry:
            return float(entry.decode().split(':')[0])
        time.sleep(0.002)
    raise TimeoutError(job_id)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--samples', type=int, default=30)
    parser.add_argument('--idle-seconds', type=float, default=20)
    parser.add_argument('--queues', default='1,2,8')
    args = parser.parse_args()
    print(f'machine: {machine()}\n')

    sides = (
        ('plain RQ', PLAIN['Worker'], 'bench_plain.stamp', 'bench_plain'),
        ('rq-acklate', ACKLATE['Worker'], 'bench_jobs.stamp_late', ''),
    )
    pickup_rows, idle_rows = [], []
    with servers(2) as (plain_server, ours_server):
        by_side = dict(zip([s[0] for s in sides], (plain_server, ours_server), strict=True))
        for count in [int(n) for n in args.queues.split(',')]:
            names = [f'q{i}' for i in range(1, count + 1)]
            processes = []
            for label, worker_class, _func, preload in sides:
                client = by_side[label].client()
                client.flushall()
                processes.append(start_worker(by_side[label].url, worker_class, names, preload=preload))
            time.sleep(4)  # start-up, first maintenance pass, first recovery pass

            rates = {label: idle_rates(by_side[label].client(), args.idle_seconds) for label, *_ in sides}
            for label, *_ in sides:
                per_second, reads, commands = rates[label]
                busiest = sorted(commands.items(), key=lambda kv: -kv[1])[:4]
                top = ', '.join(f'{k} {v / args.idle_seconds:.2f}' for k, v in busiest)
                idle_rows.append([count, label, per_second, reads, top])

            latencies: dict[tuple[str, str], list[float]] = {}
            for sample in range(args.samples):
                target = names[0] if sample % 2 == 0 else names[-1]
                time.sleep(random.uniform(1.0, 2.5))
                order = list(sides) if sample % 4 < 2 else list(reversed(sides))
                enqueued = []
                for label, _cls, func, _preload in order:
                    client = by_side[label].client()
                    at = time.time()
                    job = Queue(target, connection=client).enqueue(func)
                    enqueued.append((label, client, job.id, at))
                for label, client, job_id, at in enqueued:
                    latencies.setdefault((label, 'first' if target == names[0] else 'last'), []).append(
                        wait_started(client, job_id) - at
                    )
            for process in processes:
                kill_tree(process)
            for which in ('first', 'last') if count > 1 else ('first',):
                plain = latencies[('plain RQ', which)]
                ours = latencies[('rq-acklate', which)]
                pickup_rows.append(
                    [
                        count,
                        which if count > 1 else '–',
                        percentile(plain, 50) * 1000,
                        percentile(plain, 99) * 1000,
                        percentile(ours, 50) * 1000,
                        percentile(ours, 99) * 1000,
                    ]
                )
            print(f'{count} queue(s) done', flush=True)

    print(f'\nPickup latency, enqueue -> job start on an idle forking worker, ms ({args.samples} samples):\n')
    headers = ['queues', 'job on queue', 'plain p50', 'plain p99', 'rq-acklate p50', 'rq-acklate p99']
    print(table(headers, pickup_rows))
    print(f'\nIdle cost per worker over {args.idle_seconds:.0f} s:\n')
    print(table(['queues', 'worker', 'commands/s', 'round trips/s', 'top commands (/s)'], idle_rows))


if __name__ == '__main__':
    main()
