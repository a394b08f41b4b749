"""scripts/benchmark.py speed: one teacher/student pair measured three times, one of them beside a busy process."""

import os
import subprocess
import sys

import pytest

from tests.conftest import TINY
from tests.helpers import ROOT as REPO


@pytest.mark.slow
def test_benchmark_speed_part_measures_one_pair_three_times(tmp_path):
    tiny = [o for o in TINY if o.startswith(("teacher.arch", "data.", "student="))] + [
        "eval.repeats=2",
        "eval.latency_batches=3",
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "offline"}
    args = [sys.executable, "scripts/benchmark.py", "speed", "--work", str(tmp_path), "--busy", "1"]
    proc = subprocess.run(
        args + [a for o in tiny for a in ("--override", o)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert sum(line.strip().startswith("measurement ") for line in lines) == 3
    assert "(1 busy processes)" in next(line for line in lines if "measurement 2" in line)
    assert any(line.strip().startswith("latency speed-ups:") and "largest / smallest" in line for line in lines)
