"""scripts/bench_self_distill.py: the self-distillation benchmark runs with tiny settings and prints its tables."""

import pytest


@pytest.mark.slow
def test_benchmark_script_smoke(tmp_path):
    """scripts/bench_self_distill.py with tiny settings: it runs, and prints the per-method and per-stage tables
    and the cost per step (so a signature change cannot break it unnoticed)."""
    import subprocess
    import sys

    proc = subprocess.run(
        [
            sys.executable,
            "scripts/bench_self_distill.py",
            "--work",
            str(tmp_path),
            "--seeds",
            "1",
            "--quick",
            "--only",
            "baseline,born_again",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**__import__("os").environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "method=kd" in proc.stdout and "gen1: " in proc.stdout and "ensemble: " in proc.stdout
    assert "× kd's ms/step" in proc.stdout and "born_again" in proc.stdout.split("training cost")[1]
