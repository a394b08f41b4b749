"""scripts/bench_augment.py: the augmentation benchmark runs with tiny settings and prints its tables."""

import sys

import pytest


@pytest.mark.slow
def test_benchmark_script_smoke(tmp_path):
    """scripts/bench_augment.py with tiny settings: it runs and prints the accuracy and cost tables (so a
    signature change cannot break it unnoticed)."""
    import os
    import subprocess

    proc = subprocess.run(
        [
            sys.executable,
            "scripts/bench_augment.py",
            "--work",
            str(tmp_path),
            "--seeds",
            "1",
            "--quick",
            "--only",
            "small_kd",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    accuracy, cost = proc.stdout.split("student accuracy per configuration")[1].split("augmentation cost")
    assert all(f"small_kd              kd           {a}" in accuracy for a in ("none", "synonym", "mixup"))
    assert "× none's ms/step" in cost and "synonym" in cost
