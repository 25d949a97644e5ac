"""Throughput: jobs per second draining N no-op jobs, plain RQ vs rq-acklate, interleaved rounds.

    python benchmarks/throughput.py [--jobs 5000] [--rounds 3] [--classes Worker,SimpleWorker]

For each worker class, rounds alternate plain RQ and rq-acklate on the same private redis-server
(who goes first alternates too).
A round enqueues N jobs, runs `rq worker --burst`, and measures from the first job's start to the
last job's end (RQ's own timestamps), so interpreter start-up is not counted. Plain RQ's worker
preloads the job module, as rq-acklate's worker does when it reads the job's policy, so both
forking workers' horses start with the module imported. Redis's own counters
give commands and round trips (read events) per job. rq-acklate runs late-ack idempotent jobs, so
every job pays for its reservation record and its ack.
"""

from __future__ import annotations

import argparse
import subprocess
import time
from collections import defaultdict

from rq.utils import utcparse

from common import (
    ACKLATE,
    PLAIN,
    RedisServer,
    bench_env,
    commandstats,
    delta,
    fill_queue,
    machine,
    median,
    rq_command,
    table,
)


def drain(server: RedisServer, worker_class: str, func: str, jobs: int, preload: str) -> dict[str, float]:
    client = server.client()
    fill_queue(client, func, jobs)
    before_cmds = commandstats(client)
    before_reads = int(client.info('stats')['total_reads_processed'])
    subprocess.run(
        [*rq_command(preload), 'worker', '--url', server.url, '-w', worker_class, '--burst', '-q', 'bench'],
        env=bench_env(),
        check=True,
        stdout=subprocess.DEVNULL,
        timeout=3600,
    )
    reads = int(client.info('stats')['total_reads_processed']) - before_reads
    commands = delta(commandstats(client), before_cmds)
    commands.pop('info', None)
    ids = [i.decode() for i in client.zrange('rq:finished:bench', 0, -1)]
    assert len(ids) == jobs, f'{worker_class} finished {len(ids)} of {jobs} jobs'
    with client.pipeline(transaction=False) as pipe:
        for job_id in ids:
            pipe.hmget(f'rq:job:{job_id}', 'started_at', 'ended_at')
        stamps = pipe.execute()
    first = min(utcparse(s.decode()) for s, _ in stamps)
    last = max(utcparse(e.decode()) for _, e in stamps)
    seconds = (last - first).total_seconds()
    return {
        'jobs_per_s': jobs / seconds,
        'commands_per_job': sum(commands.values()) / jobs,
        'round_trips_per_job': reads / jobs,
        'evalsha_per_job': commands.get('evalsha', 0) / jobs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--jobs', type=int, default=5000)
    parser.add_argument('--rounds', type=int, default=5)
    parser.add_argument('--classes', default='Worker,SimpleWorker')
    args = parser.parse_args()

    print(f'machine: {machine()}\n')
    results: dict[tuple[str, str], list[dict[str, float]]] = defaultdict(list)
    with RedisServer() as server:
        for round_number in range(1, args.rounds + 1):
            for kind in args.classes.split(','):
                sides = [
                    ('plain RQ', PLAIN[kind], 'bench_plain.noop', 'bench_plain'),
                    ('rq-acklate', ACKLATE[kind], 'bench_jobs.noop_late', ''),
                ]
                if round_number % 2 == 0:
                    sides.reverse()  # alternate who goes first
                for label, worker_class, func, preload in sides:
                    started = time.monotonic()
                    result = drain(server, worker_class, func, args.jobs, preload)
                    results[(kind, label)].append(result)
                    print(
                        f'round {round_number} {kind:12} {label:10} {result["jobs_per_s"]:8.1f} jobs/s '
                        f'({time.monotonic() - started:.0f}s)',
                        flush=True,
                    )

    rows = []
    for kind in args.classes.split(','):
        plain = results[(kind, 'plain RQ')]
        ours = results[(kind, 'rq-acklate')]
        ratios = [o['jobs_per_s'] / p['jobs_per_s'] for p, o in zip(plain, ours, strict=True)]
        for label, runs in (('plain RQ', plain), ('rq-acklate', ours)):
            rows.append(
                [
                    kind if label == 'plain RQ' else '',
                    label,
                    median([r['jobs_per_s'] for r in runs]),
                    median([r['commands_per_job'] for r in runs]),
                    median([r['round_trips_per_job'] for r in runs]),
                    f'{median(ratios):.3f} (min {min(ratios):.3f})' if label == 'rq-acklate' else '',
                ]
            )
    print()
    print(f'{args.jobs} no-op jobs, {args.rounds} interleaved rounds, medians:\n')
    print(
        table(
            ['class', 'worker', 'jobs/s', 'Redis commands/job', 'round trips/job', 'ratio rq-acklate/plain'],
            rows,
        )
    )


if __name__ == '__main__':
    main()
