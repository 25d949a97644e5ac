"""Chaos soak: real `rq worker` processes SIGKILLed, paused and cut off at random; the fate of
every job is counted.

    python benchmarks/chaos.py                           # rq-acklate, the small default (1-2 min)
    python benchmarks/chaos.py --worker-class rq.Worker  # the same chaos against plain RQ
    python benchmarks/chaos.py --compare                 # both, one after the other, one table
    python benchmarks/chaos.py --long                    # 20,000 jobs, about 10 minutes of chaos
    python benchmarks/chaos.py --check                   # exit 1 unless the guarantees held

Jobs: idempotent late-ack, non-idempotent late-ack and plain (early-ack) ones, 0-1 s each, on
three queues. Chaos: kill a whole worker (main process and work horse, as a machine crash), its
main process only, its horse only (as an OOM kill), pause its main process past the liveness TTL
(SIGSTOP, then SIGCONT), or drop every client connection from the server (CLIENT KILL). Killed
workers are replaced. The soak ends when every job is settled, or at a deadline.

Guarantees checked for rq-acklate (--check): no late-ack job unsettled, no idempotent job
failed, no non-idempotent job started twice, no plain job lost before it started. Plain
(early-ack) jobs killed mid-run are left to RQ, as documented; they are counted separately.

"never ran" counts jobs whose function never reached its first line. That includes jobs settled
without running: a work horse killed between its start and the function's first line fails the
job (RQ does so for plain jobs, the policy for non-idempotent late-ack ones). A job *lost* is one
that never ran and sits nowhere: no queue, no reserved list, no final state.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from redis import Redis
from redis.exceptions import RedisError
from rq import Queue
from rq.job import Job

from common import RedisServer, kill_tree, machine, percentile, start_worker, table

KINDS = ('idempotent', 'late', 'plain')
FUNCS = {
    'idempotent': 'chaos_jobs.idempotent_job',
    'late': 'chaos_jobs.late_job',
    'plain': 'chaos_jobs.plain_job',
}
QUEUES = ('high', 'default', 'low')
SOAK_SETTINGS = {
    'RQ_ACKLATE_LIVENESS_TTL': '3',
    'RQ_ACKLATE_HEARTBEAT_INTERVAL': '1',
    'RQ_ACKLATE_RECOVERY_INTERVAL': '1',
    'RQ_ACKLATE_MAX_REDELIVERIES': '50',  # high enough that no idempotent job is poisoned by bad luck
}
ACTIONS = (('kill-whole', 3), ('kill-main', 2), ('kill-horse', 2), ('pause', 1), ('client-kill', 1))


def children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir('/proc'):
        if entry.isdigit():
            with contextlib.suppress(OSError), open(f'/proc/{entry}/stat') as f:
                if int(f.read().rsplit(')', 1)[1].split()[1]) == pid:
                    found.append(int(entry))
    return found


@dataclass
class Soak:
    server: RedisServer
    worker_class: str
    workers: int
    rng: random.Random
    log_dir: str
    env: dict[str, str]
    verbose_logs: bool = False
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    kills: dict[int, float] = field(default_factory=dict)  # pid -> when it was killed or paused
    actions: Counter[str] = field(default_factory=Counter)
    serial: int = 0

    def start_one(self) -> None:
        self.serial += 1
        name = f'chaos-{self.serial}'
        self.processes[name] = start_worker(
            self.server.url,
            self.worker_class,
            list(QUEUES),
            name=name,
            env=self.env,
            log=Path(self.log_dir) / f'{name}.log',
            quiet=not self.verbose_logs,
        )

    def fill(self) -> None:
        for name, process in list(self.processes.items()):
            if process.poll() is not None:
                del self.processes[name]
        while len(self.processes) < self.workers:
            self.start_one()

    def act(self, action: str, pause: float) -> None:
        name = self.rng.choice(sorted(self.processes))
        process = self.processes[name]
        horses = children(process.pid)
        now = time.time()
        if action == 'kill-whole':
            for pid in [process.pid, *horses]:
                self.kills[pid] = now
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            del self.processes[name]
        elif action == 'kill-main':
            self.kills[process.pid] = now
            for pid in horses:
                self.kills.setdefault(pid, now)
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGKILL)
            del self.processes[name]
        elif action == 'kill-horse':
            if not horses:
                return
            self.kills[horses[0]] = now
            with contextlib.suppress(ProcessLookupError):
                os.kill(horses[0], signal.SIGKILL)
        elif action == 'pause':
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGSTOP)
            for pid in horses:
                self.kills.setdefault(pid, now)
            time.sleep(pause)
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGCONT)
        elif action == 'client-kill':
            self.server.client().execute_command('CLIENT', 'KILL', 'TYPE', 'normal', 'SKIPME', 'yes')
        self.actions[action] += 1
        with open(Path(self.log_dir) / 'actions.log', 'a') as log:  # for post-mortems, with the worker logs
            when = time.strftime('%H:%M:%S', time.localtime(now)) + f'{now % 1:.3f}'[1:]
            target = '' if action == 'client-kill' else f' {name} main={process.pid} horses={horses}'
            log.write(f'{when} {action}{target}\n')

    def stop(self) -> None:
        for process in self.processes.values():
            kill_tree(process)


def enqueue(client: Redis, jobs: int, rng: random.Random, max_seconds: float) -> list[str]:
    ids = []
    queues = {name: Queue(name, connection=client) for name in QUEUES}
    batch: dict[str, list] = defaultdict(list)
    for i in range(jobs):
        kind = KINDS[i % 3]
        job_id = f'{kind}-{i:06}'
        queue = rng.choice(QUEUES)
        batch[queue].append(
            Queue.prepare_data(FUNCS[kind], (round(rng.uniform(0, max_seconds), 3),), job_id=job_id, result_ttl=-1)
        )
        ids.append(job_id)
    for name, data in batch.items():
        for start in range(0, len(data), 1000):
            queues[name].enqueue_many(data[start : start + 1000])
    return ids


def classify(client: Redis, ids: list[str], kills: dict[int, float]) -> dict[str, dict[str, object]]:
    reserved = set()
    for key in client.scan_iter('rq:acklate:reserved:*'):
        reserved.update(i.decode() for i in client.lrange(key, 0, -1))
    queued = set()
    for name in QUEUES:
        queued.update(i.decode() for i in client.lrange(f'rq:queue:{name}', 0, -1))
    started_registry = set()
    for name in QUEUES:
        started_registry.update(e.decode().split(':')[0] for e in client.zrange(f'rq:wip:{name}', 0, -1))

    rows: dict[str, dict[str, object]] = {k: Counter() for k in KINDS}  # type: ignore[misc]
    latencies: dict[str, list[float]] = defaultdict(list)
    reasons: dict[str, Counter[str]] = {k: Counter() for k in KINDS}
    for job_id in ids:
        kind = job_id.split('-')[0]
        counts = rows[kind]
        runs = [json.loads(r) for r in dict.fromkeys(client.lrange(f'chaos:runs:{job_id}', 0, -1))]
        starts = [r for r in runs if r['e'] == 'start']
        ends = [r for r in runs if r['e'] == 'end']
        status = (client.hget(f'rq:job:{job_id}', 'status') or b'').decode()
        counts['jobs'] += 1
        if status == 'finished':
            counts['finished'] += 1
        elif status == 'failed':
            counts['failed'] += 1
            # A job that ran to its end and was failed afterwards is worth telling apart (rq#2424).
            after = 'after it finished: ' if ends else ''
            reasons[kind][after + failure_reason(client, job_id)] += 1
        elif status == 'started' and kind == 'plain' and job_id in started_registry:
            counts['left to RQ'] += 1
        else:
            counts['unsettled'] += 1
            if status == 'queued' and job_id not in queued and job_id not in reserved:
                counts['lost'] += 1
        if not starts:
            counts['never ran'] += 1
        if len(starts) > 1:
            counts['started twice+'] += 1
        if len(ends) > 1:
            counts['finished twice+'] += 1
        for previous, following in itertools.pairwise(starts):
            killed_at = kills.get(previous['pid'])
            if killed_at is not None and killed_at < following['t']:
                latencies[kind].append(following['t'] - killed_at)
    for kind in KINDS:
        rows[kind]['redelivery p50'] = percentile(latencies[kind], 50)  # type: ignore[index]
        rows[kind]['redelivery max'] = max(latencies[kind]) if latencies[kind] else float('nan')  # type: ignore[index]
        rows[kind]['failure reasons'] = dict(reasons[kind])  # type: ignore[index]
    return rows


def dump_suspects(client: Redis, ids: list[str], path: Path) -> None:
    """Write the job hash and runs of every job that broke a guarantee, for a post-mortem."""
    with path.open('w') as out:
        for job_id in ids:
            kind = job_id.split('-')[0]
            job = {k.decode(): v.decode('utf-8', 'replace') for k, v in client.hgetall(f'rq:job:{job_id}').items()}
            runs = [json.loads(r) for r in dict.fromkeys(client.lrange(f'chaos:runs:{job_id}', 0, -1))]
            starts = sum(1 for r in runs if r['e'] == 'start')
            status = job.get('status', '')
            # Every failed late-ack job, to tell worker losses from failures RQ recorded on its own.
            suspect = (kind != 'plain' and status == 'failed') or (kind == 'late' and starts > 1)
            suspect = suspect or (kind != 'plain' and status not in ('finished', 'failed'))
            suspect = suspect or (status == 'failed' and any(r['e'] == 'end' for r in runs))  # rq#2424?
            if suspect:
                job.pop('data', None)
                job['reason'] = failure_reason(client, job_id) if status == 'failed' else ''
                results = [
                    {k.decode(): v.decode('utf-8', 'replace')[:200] for k, v in fields.items()} | {'id': rid.decode()}
                    for rid, fields in client.xrange(f'rq:results:{job_id}')
                ]
                out.write(json.dumps({'id': job_id, 'job': job, 'runs': runs, 'results': results}) + '\n')


def failure_reason(client: Redis, job_id: str) -> str:
    """The gist of why a job failed: the last line of its latest result's traceback (RQ), or the
    first sentence of rq-acklate's reason, with worker names left out so it tallies."""
    result = Job(job_id, connection=client).latest_result()
    text = (result.exc_string if result is not None else None) or '(no failure recorded)'
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    gist = lines[-1] if not text.startswith('rq-acklate:') else text.split('. ')[0]
    gist = re.sub(r', at \d{4}-\S+ \S+$', '', gist)  # RQ's AbandonedJobError message ends with a timestamp
    return re.sub(r'chaos-\d+', 'chaos-N', gist)[:120]


def settled(client: Redis, ids: list[str]) -> bool:
    with client.pipeline(transaction=False) as pipe:
        for job_id in ids:
            pipe.hget(f'rq:job:{job_id}', 'status')
        statuses = pipe.execute()
    # Plain jobs RQ holds as started (abandoned by a killed worker) are left to RQ's own cleanup.
    return all(
        s in (b'finished', b'failed') or (s == b'started' and i.startswith('plain'))
        for s, i in zip(statuses, ids, strict=True)
    )


def soak(args: argparse.Namespace, worker_class: str) -> tuple[dict[str, dict[str, object]], dict[str, object]]:
    rng = random.Random(args.seed)
    log_dir = tempfile.mkdtemp(prefix='acklate-chaos-')
    is_acklate = 'acklate' in worker_class
    with RedisServer() as server:
        client = server.client()
        ids = enqueue(client, args.jobs, rng, args.max_seconds)
        settings = SOAK_SETTINGS if is_acklate else {}
        run = Soak(server, worker_class, args.workers, rng, log_dir, settings, verbose_logs=args.worker_logs)
        run.fill()
        started = time.monotonic()
        weights = [w for _a, w in ACTIONS]
        # Every kind of fault at least once, in random order, then at random by weight.
        first = [a for a, _w in ACTIONS]
        rng.shuffle(first)
        try:
            while time.monotonic() - started < args.chaos_seconds:
                time.sleep(rng.uniform(args.every * 0.5, args.every * 1.5))
                action = first.pop() if first else rng.choices([a for a, _w in ACTIONS], weights)[0]
                with contextlib.suppress(RedisError):
                    run.act(action, pause=float(SOAK_SETTINGS['RQ_ACKLATE_LIVENESS_TTL']) + 1.5)
                run.fill()
                if all(client.llen(f'rq:queue:{q}') == 0 for q in QUEUES) and settled(client, ids):
                    break
            chaos_ended = time.monotonic()
            deadline = chaos_ended + args.settle_seconds
            while time.monotonic() < deadline and not settled(client, ids):
                run.fill()
                time.sleep(0.5)
            settle_time = time.monotonic() - chaos_ended
        finally:
            run.stop()
        rows = classify(client, ids, run.kills)
        dump_suspects(client, ids, Path(log_dir) / 'suspects.jsonl')
        stats = {k.decode(): int(v) for k, v in client.hgetall('rq:acklate:stats').items()}
    summary = {
        'worker_class': worker_class,
        'jobs': args.jobs,
        'chaos_seconds': round(chaos_ended - started, 1),
        'settle_seconds': round(settle_time, 1),
        'actions': dict(run.actions),
        'counters': stats,
        'logs': log_dir,
    }
    return rows, summary


def violations(rows: dict[str, dict[str, object]]) -> list[str]:
    problems = []
    for kind in ('idempotent', 'late'):
        if rows[kind].get('unsettled', 0):
            problems.append(f'{rows[kind]["unsettled"]} {kind} job(s) unsettled')
    if rows['idempotent'].get('failed', 0):
        problems.append(f'{rows["idempotent"]["failed"]} idempotent job(s) failed')
    if rows['late'].get('started twice+', 0):
        problems.append(f'{rows["late"]["started twice+"]} non-idempotent job(s) started twice')
    if rows['plain'].get('lost', 0) or rows['plain'].get('unsettled', 0):
        problems.append(f'{rows["plain"].get("lost", 0)} plain job(s) lost before they started')
    return problems


COLUMNS = (
    'jobs',
    'finished',
    'failed',
    'unsettled',
    'left to RQ',
    'never ran',
    'started twice+',
    'finished twice+',
)


def render(results: list[tuple[str, dict[str, dict[str, object]], dict[str, object]]]) -> str:
    rows = []
    for label, by_kind, _summary in results:
        for kind in KINDS:
            counts = by_kind[kind]
            rows.append(
                [
                    label,
                    kind,
                    *(counts.get(c, 0) for c in COLUMNS),
                    counts['redelivery p50'],
                    counts['redelivery max'],
                ]
            )
    headers = ['worker', 'job kind', *COLUMNS, 'redelivery p50 (s)', 'max (s)']
    return table(headers, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--worker-class', default='rq_acklate.LateAckWorker')
    parser.add_argument('--compare', action='store_true', help='run plain rq.Worker, then rq-acklate')
    parser.add_argument('--long', action='store_true', help='20,000 jobs, about 10 minutes of chaos')
    parser.add_argument('--jobs', type=int, default=240)
    parser.add_argument('--workers', type=int, default=4)
    parser.add_argument('--max-seconds', type=float, default=1.0, help='longest job duration')
    parser.add_argument('--chaos-seconds', type=float, default=45)
    parser.add_argument('--every', type=float, default=1.5, help='mean seconds between chaos actions')
    parser.add_argument('--settle-seconds', type=float, default=60)
    parser.add_argument('--seed', type=int, default=7)
    parser.add_argument('--json', action='store_true')
    parser.add_argument(
        '--worker-logs', action='store_true', help="workers log at INFO (every job's path), for post-mortems"
    )
    parser.add_argument('--check', action='store_true', help='exit 1 unless the rq-acklate guarantees held')
    args = parser.parse_args()
    if args.long:
        args.jobs, args.workers, args.chaos_seconds, args.max_seconds = 20000, 8, 600, 0.2
        args.settle_seconds = 180

    classes = ['rq.Worker', 'rq_acklate.LateAckWorker'] if args.compare else [args.worker_class]
    results = []
    for worker_class in classes:
        label = 'rq-acklate' if 'acklate' in worker_class else 'plain RQ'
        print(
            f'soaking {label} ({worker_class}): {args.jobs} jobs, {args.workers} workers...',
            file=sys.stderr,
            flush=True,
        )
        rows, summary = soak(args, worker_class)
        results.append((label, rows, summary))
        print(f'  {summary}', file=sys.stderr, flush=True)

    problems = violations(results[-1][1]) if 'acklate' in classes[-1] else []
    if args.json:
        print(
            json.dumps(
                [{'worker': label, 'kinds': rows, 'summary': summary} for label, rows, summary in results],
                default=str,
                indent=2,
            )
        )
    else:
        print(f'machine: {machine()}\n')
        print(render(results))
        for label, by_kind, summary in results:
            print(
                f'\n{label}: chaos actions {summary["actions"]}, chaos {summary["chaos_seconds"]} s, '
                f'settled {summary["settle_seconds"]} s after; counters {summary["counters"]}'
            )
            for kind in KINDS:
                for reason, count in sorted(by_kind[kind]['failure reasons'].items(), key=lambda r: -r[1]):  # type: ignore[union-attr]
                    print(f'  {kind} failed x{count}: {reason}')
        if 'acklate' in classes[-1]:
            print('\nguarantees: ' + ('held' if not problems else 'VIOLATED: ' + '; '.join(problems)))
    if args.check and problems:
        sys.exit(1)


if __name__ == '__main__':
    main()
