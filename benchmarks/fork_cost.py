"""Fork cost: where a forking worker's CPU goes per job, main process vs work horses.

    python benchmarks/fork_cost.py [--jobs 1500] [--rounds 3]

Each run drains N no-op jobs with `rq worker --burst` inside a wrapper that, at exit, prints the
worker's own rusage (its main process, all threads) and its children's (the work horses it
waited for): user and system CPU, and minor page faults, per job. Three workers, interleaved:
plain `rq.Worker`; plain `rq.Worker` with rq-acklate merely imported (preloaded, nothing of it
runs); and `LateAckWorker`. The middle row separates what importing rq-acklate costs every
horse (a larger parent heap to copy on write) from what its code does per job.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from common import ACKLATE, PLAIN, RedisServer, bench_env, fill_queue, machine, median, table

WRAPPER = """
import atexit, json, resource, sys
import {preload}

def report():
    own, horses = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    fields = dict(main_user=own.ru_utime, main_sys=own.ru_stime, main_faults=own.ru_minflt,
                  horse_user=horses.ru_utime, horse_sys=horses.ru_stime, horse_faults=horses.ru_minflt)
    print('RUSAGE ' + json.dumps(fields), file=sys.stderr)

atexit.register(report)
from rq.cli import main
main()
"""

VARIANTS = (
    ('plain RQ', PLAIN['Worker'], 'bench_plain.noop', 'bench_plain'),
    ('plain RQ, rq-acklate imported', PLAIN['Worker'], 'bench_plain.noop', 'bench_plain, rq_acklate.worker'),
    ('rq-acklate', ACKLATE['Worker'], 'bench_jobs.noop_late', 'bench_jobs'),
)
FIELDS = ('main_user', 'main_sys', 'main_faults', 'horse_user', 'horse_sys', 'horse_faults')


def drain(server: RedisServer, worker_class: str, func: str, preload: str, jobs: int) -> dict[str, float]:
    client = server.client()
    fill_queue(client, func, jobs)
    command = [sys.executable, '-c', WRAPPER.format(preload=preload)]
    command += ['worker', '--url', server.url, '-w', worker_class, '--burst', '-q', 'bench']
    done = subprocess.run(command, env=bench_env(), capture_output=True, text=True, timeout=3600, check=True)
    assert client.zcard('rq:finished:bench') == jobs, done.stderr[-2000:]
    line = [line for line in done.stderr.splitlines() if line.startswith('RUSAGE ')][-1]
    totals = json.loads(line.removeprefix('RUSAGE '))
    # CPU in ms per job, faults per job.
    return {k: v / jobs * (1 if k.endswith('faults') else 1000) for k, v in totals.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--jobs', type=int, default=1500)
    parser.add_argument('--rounds', type=int, default=3)
    args = parser.parse_args()
    print(f'machine: {machine()}\n')
    results: dict[str, list[dict[str, float]]] = {label: [] for label, *_ in VARIANTS}
    with RedisServer() as server:
        for round_number in range(1, args.rounds + 1):
            order = VARIANTS if round_number % 2 else VARIANTS[::-1]
            for label, worker_class, func, preload in order:
                result = drain(server, worker_class, func, preload, args.jobs)
                results[label].append(result)
                shown = ', '.join(f'{k} {v:.2f}' for k, v in result.items())
                print(f'round {round_number} {label:<30} {shown}', flush=True)
    rows = [[label, *(median([r[f] for r in runs]) for f in FIELDS)] for label, runs in results.items()]
    print(f'\n{args.jobs} no-op jobs, {args.rounds} interleaved rounds, medians per job:\n')
    headers = ['worker', 'main user (ms)', 'main sys (ms)', 'main faults', 'horse user (ms)', 'horse sys (ms)']
    print(table([*headers, 'horse faults'], rows))


if __name__ == '__main__':
    main()
