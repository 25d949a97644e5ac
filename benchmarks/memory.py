"""Memory: the worker's RSS after 1,000 jobs and after many more, plain RQ and rq-acklate side by side.

    python benchmarks/memory.py [--jobs 100000] [--classes SimpleWorker,Worker] [--worker-jobs 20000]

Both sides run at the same time, each on its own redis-server, draining no-op jobs (results
discarded). The RSS of the worker's main process is read from /proc at checkpoints of RQ's own
successful_job_count. The forking Worker is slower (a fork per job), so it drains --worker-jobs.
"""

from __future__ import annotations

import argparse
import time

from rq import Queue

from common import ACKLATE, PLAIN, kill_tree, machine, servers, start_worker, table


def rss_kib(pid: int) -> int:
    with open(f'/proc/{pid}/status') as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1])
    return 0


def feed(queue: Queue, func: str, count: int) -> None:
    for start in range(0, count, 5000):
        queue.enqueue_many([Queue.prepare_data(func, result_ttl=0) for _ in range(start, min(count, start + 5000))])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--jobs', type=int, default=100_000)
    parser.add_argument('--worker-jobs', type=int, default=20_000)
    parser.add_argument('--classes', default='SimpleWorker,Worker')
    args = parser.parse_args()
    print(f'machine: {machine()}\n')

    rows = []
    for kind in args.classes.split(','):
        total = args.jobs if kind == 'SimpleWorker' else args.worker_jobs
        checkpoints = [c for c in (1_000, 10_000, 100_000) if c <= total]
        if total not in checkpoints:
            checkpoints.append(total)
        with servers(2) as (plain_server, ours_server):
            sides = [
                ('plain RQ', plain_server, PLAIN[kind], 'bench_plain.noop', 'bench_plain'),
                ('rq-acklate', ours_server, ACKLATE[kind], 'bench_jobs.noop_late', ''),
            ]
            running = []
            for label, server, worker_class, func, preload in sides:
                client = server.client()
                feed(Queue('mem', connection=client), func, total)
                process = start_worker(server.url, worker_class, ['mem'], name='mem', preload=preload)
                running.append((label, client, process, {}))
            deadline = time.monotonic() + 3 * 3600
            while time.monotonic() < deadline and any(len(r[3]) < len(checkpoints) for r in running):
                for _label, client, process, seen in running:
                    done = int(client.hget('rq:worker:mem', 'successful_job_count') or 0)
                    for checkpoint in checkpoints:
                        if checkpoint not in seen and done >= checkpoint:
                            seen[checkpoint] = rss_kib(process.pid)
                time.sleep(0.2)
            for label, _client, process, seen in running:
                kill_tree(process)
                first, last = seen.get(checkpoints[0]), seen.get(checkpoints[-1])
                rows.append(
                    [
                        kind,
                        label,
                        *[f'{seen[c] / 1024:.1f}' if c in seen else '–' for c in (1_000, 10_000, 100_000)],
                        f'{(last - first) / 1024:+.1f} MiB' if first and last else '–',
                    ]
                )
            print(f'{kind} done', flush=True)
    print('\nRSS of the worker main process, MiB, after N jobs:\n')
    print(table(['class', 'worker', '1,000', '10,000', '100,000', 'growth from 1,000 to the last'], rows))


if __name__ == '__main__':
    main()
