"""scripts/bench_blackbox.py: the black-box benchmark runs both parts with tiny settings and writes its tables, a row
per method (so a change to a method's keys, a stage record or the stub server cannot break the script unnoticed)."""

import os
import subprocess
import sys

import pytest

from tests.conftest import TINY_LM

ROWS = (
    "sft (original data)",
    "forward_kl (white-box teacher)",
    "blackbox_sft responses",
    "blackbox_sft self_instruct",
    "blackbox_sft explanations",
    "star (3 rounds)",
    "blackbox_sft responses, flawed stub (critique's start)",
    "critique_revise, flawed stub",
)


@pytest.mark.slow
def test_blackbox_benchmark_script_smoke(tmp_path):
    """Both parts at once (quality two sweeps at a time), one seed, 4 steps, 48 rows: tables written, every row.
    Eleven distillkit processes, ~87 s of CPU in all (mostly start-up); 104 s of wall time on the shared 2-core
    machine beside another benchmark (2026-12-07); not measured on free cores."""
    skip = ("logger", "task=", "data.lm_synthetic", "train.max_steps", "task.max_new_tokens")
    overrides = [o for o in TINY_LM if not o.startswith(skip)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    script = [sys.executable, "scripts/bench_blackbox.py"]
    quality = [
        *script, "quality", "--work", str(tmp_path), "--seeds", "1", "--steps", "4", "--rows", "48",
        "--eval-rows", "16", "--explain-tokens", "24", "--jobs", "2", "--override", *overrides,
        "--star-override", "method.checker=tests.star_checker:by_kind",  # the 4-step student answers nothing right
    ]  # fmt: skip
    throughput = [
        *script, "throughput", "--work", str(tmp_path), "--rows", "24", "--eval-rows", "16", "--latency", "0.02",
        "--override", *overrides,
    ]  # fmt: skip
    procs = [
        subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        for cmd in (quality, throughput)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    table = (tmp_path / "quality" / "table.md").read_text()
    assert all(f"| {row} |" in table for row in ROWS), table
    assert "`round3`" in table and "`star_gen1`" in table
    assert all(row in outs[0][0] for row in ROWS)
    tput = (tmp_path / "throughput" / "table.md").read_text()
    assert "stub latency 0.02 s" in tput
    assert all(f"| {run} |" in tput for run in ("concurrency 1", "concurrency 8", "concurrency 8, rerun (cache)"))
    assert "the rerun paid 0 (24 cached hits)" in tput
