"""Speed figures that two measurements agree on: fixed threads (restored after), the models timed in turn,
speed-ups per repetition, the median and its spread; and the benchmark that measures one pair three times."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from distillkit import speed
from distillkit.tasks.classification import evaluate
from distillkit.errors import ConfigError
from .conftest import TINY, compose_config

REPO = Path(__file__).resolve().parents[1]


def test_median_spread_is_half_the_range_relative_to_the_median():
    assert speed.median_spread([1.0, 2.0, 3.0, 4.0, 10.0]) == (3.0, pytest.approx((10 - 1) / 2 / 3))
    assert speed.median_spread([2.0]) == (2.0, 0.0)


def test_threads_are_set_while_timing_and_restored_after():
    before = torch.get_num_threads()
    target = 2 if before == 1 else 1
    with speed.cpu_threads(target, "cpu") as used:
        assert used == target == torch.get_num_threads()
    assert torch.get_num_threads() == before
    with speed.cpu_threads(None, "cpu") as used:  # null: torch's own setting, reported as is
        assert used == before
    with speed.cpu_threads(target, torch.device("cuda")) as used:  # a GPU does the work: threads left alone
        assert used is None and torch.get_num_threads() == before


def test_models_take_turns_batch_by_batch_the_first_alternating():
    calls = []
    timers = {name: (lambda batch, name=name: calls.append((name, batch)) or 0.0) for name in ("teacher", "student")}
    speed.in_turn(timers, ["a", "b", "c"], start=1)
    assert calls == [("student", "a"), ("teacher", "a"), ("teacher", "b"), ("student", "b"),
                     ("student", "c"), ("teacher", "c")]


def test_speed_ups_divide_out_a_change_in_machine_load():
    """The machine gets 4× slower halfway through (another job starts): each model's time changes, the
    speed-up (teacher 3 units of work per pass, student 1) must not."""
    calls = {"n": 0}

    def model(work):
        def timed(batch):
            calls["n"] += 1
            return work * len(batch["input_ids"]) * (4.0 if calls["n"] > 150 else 1.0)
        return timed

    singles, fulls = [{"input_ids": [0]}] * 20, [{"input_ids": [0] * 8}] * 2
    reps = evaluate._repetitions({"teacher": model(3.0), "student": model(1.0)}, singles, fulls, repeats=5, warmup=1)
    t, s = reps["teacher"], reps["student"]
    assert max(t["latency_ms"]) == pytest.approx(4 * min(t["latency_ms"]))  # the load did change
    assert [a / b for a, b in zip(t["latency_ms"], s["latency_ms"])] == pytest.approx([3.0] * 5)
    assert [b / a for a, b in zip(t["throughput_samples_s"], s["throughput_samples_s"])] == pytest.approx([3.0] * 5)


class Burn(torch.nn.Module):
    """A model whose forward pass costs ``n`` matrix products: a known ratio of work between two models."""

    def __init__(self, n: int):
        super().__init__()
        self.n, self.w = n, torch.nn.Parameter(torch.randn(96, 96) / 10)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None):
        h = torch.randn(input_ids.shape[0], 96)
        for _ in range(self.n):
            h = torch.tanh(h @ self.w)
        return h


def collate(rows):
    ids = torch.tensor([r["input_ids"] for r in rows])
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def test_measure_speed_reports_medians_spreads_and_how():
    dataset = [{"input_ids": [1, 2, 3]}] * 64
    before = torch.get_num_threads()
    out = evaluate.measure_speed(Burn(120), Burn(40), dataset, collate, "cpu", batch_size=16, latency_batches=8,
                                 throughput_batches=2, threads=1, repeats=3, warmup=1)
    assert torch.get_num_threads() == before
    assert out["speed"] == {"device": "cpu", "threads": 1, "clock": "thread_cpu", "repeats": 3, "warmup": 1,
                            "latency_examples": 8, "throughput_batches": 2, "batch_size": 16,
                            "spread": speed.SPREAD}
    for name in ("teacher", "student"):
        assert set(out[name]) == {"latency_ms", "latency_ms_spread", "throughput_samples_s",
                                  "throughput_samples_s_spread"}
        assert out[name]["latency_ms"] > 0 and out[name]["latency_ms_spread"] >= 0
    c = out["comparison"]
    assert 2.0 < c["latency_speedup"] < 4.0 and 2.0 < c["speedup"] < 4.0  # 3× the work
    assert c["latency_speedup_spread"] >= 0 and c["speedup_spread"] >= 0
    wall = evaluate.measure_speed(Burn(3), Burn(1), dataset, collate, "cpu", 16, 2, 1, threads=None, repeats=1,
                                  warmup=0)["speed"]
    assert wall["clock"] == ("thread_cpu" if before == 1 else "wall") and wall["threads"] == before


@pytest.mark.parametrize("override, key", [("eval.threads=0", "eval.threads"), ("eval.repeats=0", "eval.repeats"),
                                           ("eval.warmup=-1", "eval.warmup")])
def test_bad_speed_settings_name_the_key(override, key):
    from distillkit.config.schema import validate

    with pytest.raises(ConfigError) as err:
        validate(compose_config([override]))
    assert err.value.key == key
    assert validate(compose_config(["eval.threads=null"])).eval.threads is None


@pytest.mark.slow
def test_benchmark_speed_part_measures_one_pair_three_times(tmp_path):
    tiny = [o for o in TINY if o.startswith(("teacher.arch", "data.", "student="))] + ["eval.repeats=2",
                                                                                       "eval.latency_batches=3"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "offline"}
    args = [sys.executable, "scripts/benchmark.py", "speed", "--work", str(tmp_path), "--busy", "1"]
    proc = subprocess.run(args + [a for o in tiny for a in ("--override", o)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert sum(line.strip().startswith("measurement ") for line in lines) == 3
    assert "(1 busy processes)" in next(line for line in lines if "measurement 2" in line)
    assert any(line.strip().startswith("latency speed-ups:") and "largest / smallest" in line for line in lines)


@pytest.mark.slow
def test_run_reports_speed_with_spreads_in_results_wandb_and_readme(run_tiny, monkeypatch):
    """The keys the measurement adds reach results.json, the W&B summary and the schema in docs/."""
    import json
    import re
    import time

    from distillkit.report import summary_for_wandb
    from .wandb_records import read_run

    monkeypatch.setenv("WANDB_MODE", "offline")
    before = torch.get_num_threads()
    results, out = run_tiny(["logger=wandb", "eval.repeats=3"])
    assert torch.get_num_threads() == before  # eval.threads was set for the measurement only
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["speed"]["threads"] == 1 and on_disk["speed"]["repeats"] == 3
    assert {"latency_ms_spread", "throughput_samples_s_spread"} <= set(on_disk["student"])
    assert {"speedup_spread", "latency_speedup_spread"} <= set(on_disk["comparison"])
    run_dir = next((out / "wandb").glob("offline-run-*"))
    for _ in range(100):  # wandb's own service process may still be writing the run file's last records
        summary = read_run(run_dir)["summary"]
        if summary:
            break
        time.sleep(0.1)
    assert set(summary_for_wandb(on_disk)) <= set(summary)
    assert json.loads(summary["speed/threads"]) == 1
    documented_in = (REPO / "docs" / "resume-and-outputs.md").read_text()
    schema = documented_in.split("`results.json`, schema version 2:")[1].split("```")[1]
    documented = set(re.findall(r'"(\w+)":', schema))
    for section in ("teacher", "comparison", "speed"):
        assert set(on_disk[section]) <= documented, (section, set(on_disk[section]) - documented)
