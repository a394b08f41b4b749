"""The speed measurement in a run: its keys reach results.json, the W&B summary and the schema in docs/ (the
measurement itself: tests/unit/test_speed.py)."""

import pytest
import torch

from tests.helpers import ROOT as REPO


@pytest.mark.slow
def test_run_reports_speed_with_spreads_in_results_wandb_and_readme(run_tiny, monkeypatch):
    """The keys the measurement adds reach results.json, the W&B summary and the schema in docs/."""
    import json
    import re

    from distillkit.report import summary_for_wandb
    from tests.wandb_records import read_finished_run

    monkeypatch.setenv("WANDB_MODE", "offline")
    before = torch.get_num_threads()
    results, out = run_tiny(["logger=wandb", "eval.repeats=3"])
    assert torch.get_num_threads() == before  # eval.threads was set for the measurement only
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["speed"]["threads"] == 1 and on_disk["speed"]["repeats"] == 3
    assert {"latency_ms_spread", "throughput_samples_s_spread"} <= set(on_disk["student"])
    assert {"speedup_spread", "latency_speedup_spread"} <= set(on_disk["comparison"])
    run_dir = next((out / "wandb").glob("offline-run-*"))
    summary = read_finished_run(run_dir)["summary"]  # W&B's service process may still be writing the last records
    assert set(summary_for_wandb(on_disk)) <= set(summary)
    assert json.loads(summary["speed/threads"]) == 1
    documented_in = (REPO / "docs" / "resume-and-outputs.md").read_text()
    schema = documented_in.split("`results.json`, schema version 2:")[1].split("```")[1]
    documented = set(re.findall(r'"(\w+)":', schema))
    for section in ("teacher", "comparison", "speed"):
        assert set(on_disk[section]) <= documented, (section, set(on_disk[section]) - documented)
