"""The chaos soak (benchmarks/chaos.py) in its small size: real workers killed, paused and cut off
at random while 180 jobs run. The four guarantees must hold."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from helpers import REPO_DIR


@pytest.mark.timeout(300)
def test_chaos_soak_keeps_the_guarantees():
    result = subprocess.run(
        [
            sys.executable,
            'benchmarks/chaos.py',
            '--json',
            '--check',
            '--jobs',
            '180',
            '--chaos-seconds',
            '35',
        ],
        cwd=REPO_DIR,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (run,) = json.loads(result.stdout)
    kinds = run['kinds']
    assert sum(k['jobs'] for k in kinds.values()) == 180
    assert kinds['idempotent'].get('unsettled', 0) == 0 and kinds['late'].get('unsettled', 0) == 0
    assert kinds['idempotent'].get('failed', 0) == 0
    assert kinds['late'].get('started twice+', 0) == 0
    assert kinds['plain'].get('lost', 0) == 0 and kinds['plain'].get('unsettled', 0) == 0
    actions = run['summary']['actions']
    assert set(actions) == {'kill-whole', 'kill-main', 'kill-horse', 'pause', 'client-kill'}
