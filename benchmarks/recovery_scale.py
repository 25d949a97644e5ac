"""Recovery at scale: time one recover() pass over 1,000 dead workers holding 20,000 jobs.

    python benchmarks/recovery_scale.py [--workers 1000] [--jobs-per-worker 20] [--rounds 3]

The state is what such workers leave behind, written directly: per worker, 40% of its jobs were
running idempotent late-ack jobs (with RQ executions in StartedJobRegistry), 20% running
non-idempotent ones, 20% never started, 20% already finished. Redis's SLOWLOG (threshold 1 ms) and
LATENCY monitor show the longest single command or script, which must stay under 50 ms.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter

from rq import Queue
from rq.utils import now, utcformat

from rq_acklate import recover
from rq_acklate.policy import Policy
from rq_acklate.reservations import StartRecord

from common import RedisServer, machine, median, table


def build(client, workers: int, per_worker: int) -> dict[str, int]:
    client.flushall()
    queue = Queue('default', connection=client)
    total = workers * per_worker
    ids: list[str] = []
    for start in range(0, total, 2000):
        jobs = queue.enqueue_many(
            [Queue.prepare_data('bench_jobs.noop_late') for _ in range(start, min(total, start + 2000))]
        )
        ids.extend(j.id for j in jobs)
    client.delete('rq:queue:default')
    started_at = utcformat(now())
    expected: Counter[str] = Counter()
    with client.pipeline(transaction=False) as pipe:
        for w in range(workers):
            name = f'dead-{w:05}'
            pipe.sadd('rq:acklate:workers', name)
            mine = ids[w * per_worker : (w + 1) * per_worker]
            pipe.rpush(f'rq:acklate:reserved:{name}', *mine)
            for i, job_id in enumerate(mine):
                kind = i % 5
                if kind == 4:  # never started
                    expected['requeued'] += 1
                    continue
                policy = {0: 'LI3', 1: 'LI3', 2: 'L-3', 3: 'LI3'}[kind]
                record = StartRecord(Policy.from_code(policy), '', time.time()).encode()  # as workers write it
                pipe.hset(f'rq:acklate:reservations:{name}', job_id, record)
                status = 'finished' if kind == 3 else 'started'
                state = {'status': status, 'started_at': started_at, 'worker_name': name}
                pipe.hset(f'rq:job:{job_id}', mapping=state)
                if status == 'started':
                    execution = f'e{i}'
                    pipe.zadd(f'rq:executions:{job_id}', {execution: time.time() + 90})
                    pipe.zadd('rq:wip:default', {f'{job_id}:{execution}': time.time() + 90})
                expected['dropped' if kind == 3 else 'failed' if kind == 2 else 'requeued'] += 1
            if w % 50 == 0:
                pipe.execute()
        pipe.execute()
    return dict(expected)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--workers', type=int, default=1000)
    parser.add_argument('--jobs-per-worker', type=int, default=20)
    parser.add_argument('--rounds', type=int, default=3)
    args = parser.parse_args()
    print(f'machine: {machine()}\n')

    rows = []
    durations, slowest = [], []
    with RedisServer() as server:
        client = server.client()
        for round_number in range(1, args.rounds + 1):
            expected = build(client, args.workers, args.jobs_per_worker)
            client.config_set('slowlog-log-slower-than', 1000)
            client.config_set('latency-monitor-threshold', 10)
            client.slowlog_reset()
            client.execute_command('LATENCY', 'RESET')
            started = time.perf_counter()
            report = recover(client)
            duration = time.perf_counter() - started
            counts = report.counts()
            assert counts == expected, (counts, expected)
            assert client.llen('rq:queue:default') == expected['requeued']
            assert client.zcard('rq:wip:default') == 0
            assert client.scard('rq:acklate:workers') == 0
            entries = client.slowlog_get(128)
            longest = max((e['duration'] for e in entries), default=0) / 1000
            durations.append(duration)
            slowest.append(longest)
            print(
                f'round {round_number}: {duration:.3f}s for {sum(counts.values())} jobs, '
                f'{len(report.dead_workers)} workers; slowest command {longest:.2f} ms; {counts}',
                flush=True,
            )
    rows.append(
        [
            f'{args.workers} dead workers, {args.workers * args.jobs_per_worker} jobs',
            median(durations),
            max(durations),
            max(slowest),
        ]
    )
    print()
    print(table(['state', 'recover() p50 (s)', 'max (s)', 'slowest Redis command (ms)'], rows))


if __name__ == '__main__':
    main()
