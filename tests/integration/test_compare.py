"""python -m distillkit.compare as a user runs it, on the fake sweep of tests/unit/test_compare.py."""

import os
import subprocess
import sys

import pytest

from tests.helpers import ROOT as REPO
from tests.unit.test_compare import PNG_MAGIC, fake_sweep


@pytest.fixture
def sweep(tmp_path):
    return fake_sweep(tmp_path)


def test_python_dash_m_subprocess(sweep, tmp_path):
    env = {
        **os.environ,
        "MPLBACKEND": "Agg",
        "PYTHONPATH": os.pathsep.join(
            [str(REPO)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])
        ),
    }
    cmd = [sys.executable, "-m", "distillkit.compare"]
    ok = subprocess.run(
        cmd + [str(sweep), "--sort=-retention"], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120
    )
    assert ok.returncode == 0, ok.stderr
    assert "method=pkd,seed=1" in ok.stdout.splitlines()[2]  # highest retention first
    assert (sweep / "compare.png").read_bytes()[:8] == PNG_MAGIC
    (tmp_path / "nothing").mkdir()
    bad = subprocess.run(
        cmd + [str(tmp_path / "nothing")], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120
    )
    assert bad.returncode == 2 and "no results found" in bad.stderr
