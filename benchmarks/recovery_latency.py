"""Recovery latency: SIGKILL a busy worker, time until its job runs again on another worker.

    python benchmarks/recovery_latency.py [--kills 20] [--plain-kills 3]

Each kill: worker A takes a long idempotent late-ack job, worker B stands by, A's main process is
SIGKILLed (its work horse dies with it) at a random moment of its heartbeat and of B's recovery
cycle, and the clock runs until the job's second start, as the job itself records it. Kills
alternate between the default settings and the fast ones (liveness_ttl=3, heartbeat_interval=1,
recovery_interval=1). Plain RQ gets the same kill with a
plain job and is watched for `--plain-window` seconds: it never runs the job again.
"""

from __future__ import annotations

import argparse
import random
import time
import uuid

from rq import Queue

from common import (
    ACKLATE,
    FAST_SETTINGS,
    PLAIN,
    RedisServer,
    kill_tree,
    machine,
    percentile,
    start_worker,
    table,
    wait_for,
)


def starts(client, job_id: str) -> list[float]:
    return [float(e.decode().split(':')[0]) for e in client.lrange(f'bench:starts:{job_id}', 0, -1)]


def one_kill(
    server: RedisServer, worker_class: str, func: str, env: dict[str, str], window: float, jitter: float
) -> float | None:
    client = server.client()
    client.flushall()
    tag = uuid.uuid4().hex[:6]
    a = start_worker(server.url, worker_class, ['q'], name=f'a-{tag}', env=env)
    try:
        job = Queue('q', connection=client).enqueue(func, 60)
        wait_for(lambda: starts(client, job.id), 30)
        b = start_worker(server.url, worker_class, ['q'], name=f'b-{tag}', env=env)
        try:
            wait_for(lambda: client.hget(f'rq:worker:b-{tag}', 'state') in (b'idle', b'started'), 30)
            time.sleep(random.uniform(0, jitter))  # any phase of A's heartbeat and of B's recovery cycle
            kill_tree(a)
            killed_at = time.time()
            try:
                wait_for(lambda: len(starts(client, job.id)) >= 2, window, interval=0.005)
            except TimeoutError:
                return None
            return starts(client, job.id)[1] - killed_at
        finally:
            kill_tree(b)
    finally:
        kill_tree(a)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--kills', type=int, default=20, help='kills per rq-acklate setting')
    parser.add_argument('--plain-kills', type=int, default=3)
    parser.add_argument('--plain-window', type=float, default=30.0)
    args = parser.parse_args()
    print(f'machine: {machine()}\n')

    results: dict[str, list[float | None]] = {'defaults': [], 'fast': []}
    plain: list[float | None] = []
    with RedisServer() as server:
        for kill in range(args.kills):
            for label, env in (('defaults', {}), ('fast', FAST_SETTINGS)):
                jitter = float(env.get('RQ_ACKLATE_HEARTBEAT_INTERVAL', 3)) + float(
                    env.get('RQ_ACKLATE_RECOVERY_INTERVAL', 5)
                )
                latency = one_kill(server, ACKLATE['Worker'], 'bench_jobs.sleep_late', env, 90, jitter)
                results[label].append(latency)
                shown = 'never ran again' if latency is None else f'{latency:.2f}s'
                print(f'kill {kill + 1:2} {label:8} {shown}', flush=True)
        for kill in range(args.plain_kills):
            latency = one_kill(server, PLAIN['Worker'], 'bench_plain.sleep_plain', {}, args.plain_window, 0)
            plain.append(latency)
            shown = 'never ran again' if latency is None else f'{latency:.2f}s'
            print(f'plain kill {kill + 1}: {shown}', flush=True)

    rows = []
    for label, values in results.items():
        done = [v for v in values if v is not None]
        rows.append(
            [
                f'rq-acklate, {label}',
                f'{len(done)}/{len(values)}',
                percentile(done, 50),
                percentile(done, 99),
                max(done) if done else float('nan'),
            ]
        )
    rows.append(
        [
            'plain RQ',
            f'{sum(v is not None for v in plain)}/{len(plain)} (watched {args.plain_window:.0f} s)',
            float('nan'),
            float('nan'),
            float('nan'),
        ]
    )
    print('\nSIGKILL of a busy worker -> the same job running again on another worker, seconds:\n')
    print(table(['worker', 'ran again', 'p50', 'p99', 'max'], rows))


if __name__ == '__main__':
    main()
