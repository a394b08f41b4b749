"""The cached teacher source in runs: a cached run follows the online one step by step, the next run reads the entry,
online augmentation keeps the teacher online, augmented copies are part of the key (the unit half:
tests/unit/teachers/test_teacher_cache.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from distillkit.errors import ConfigError
from distillkit.teachers.sources import FrozenModel


def losses(out: Path, stage: str = "distill") -> list[float]:
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in records if r["stage"] == stage and "loss" in r]


@pytest.mark.parametrize(
    "method",
    [
        ["method=kd"],
        ["method=tinybert", "teacher.cache_precision=fp32"],  # hidden states + hooked queries and keys
        ["method=tinybert", "method.attention_target=probs", "teacher.cache_precision=fp32"],  # attention maps
    ],
)
def test_a_cached_run_follows_the_online_run_step_by_step(run_tiny, tmp_path, method):
    """Dropout is off in the frozen teacher, so the stored outputs are the online ones: same loss at every step."""
    common = method + ["train.logging_steps=1", "train.max_steps=10"]
    online, out_online = run_tiny(common + ["teacher.cache_outputs=never"], out=tmp_path / "online")
    cached, out_cached = run_tiny(common + ["teacher.cache_outputs=always"], out=tmp_path / "cached")
    stages = [s for s in cached["stages"] if s["name"] != "teacher_prep"]
    assert all(s["teacher_cache"]["used"] for s in stages)
    assert all(not s["teacher_cache"]["used"] for s in online["stages"] if s["name"] != "teacher_prep")
    assert sum(stage["steps"] for stage in stages) == 10  # tinybert's two stages share the 10 steps
    for stage in stages:
        a, b = losses(out_online, stage["name"]), losses(out_cached, stage["name"])
        assert len(a) == len(b) == stage["steps"]
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5)
    assert cached["student"]["accuracy"] == pytest.approx(online["student"]["accuracy"], abs=0.02)


def test_the_next_run_reads_the_entry_and_never_runs_the_teacher_in_training(run_tiny, tmp_path, monkeypatch):
    calls = []
    real = FrozenModel.outputs

    def spy(self, batch, spec, training=True):
        if training:
            calls.append(1)
        return real(self, batch, spec, training)

    monkeypatch.setattr(FrozenModel, "outputs", spy)
    first, _ = run_tiny(["data.synthetic.seed=11"], out=tmp_path / "first")
    built = len(calls)
    second, out = run_tiny(["data.synthetic.seed=11", "seed=3"], out=tmp_path / "second")
    record = second["stages"][-1]["teacher_cache"]
    assert first["stages"][-1]["teacher_cache"]["built"] and not record["built"]
    assert record["entry"] == first["stages"][-1]["teacher_cache"]["entry"]
    assert len(calls) == built  # the second run's training called the teacher not once
    assert record["saved_s"] > 0
    from distillkit.report import format_table

    assert "teacher outputs cached" in format_table(second) and "reused" in format_table(second)
    run_tiny(["data.synthetic.seed=11", "teacher.cache_outputs=never"], out=tmp_path / "third")
    assert len(calls) > built  # and the spy does see an online teacher


def test_online_augmentation_keeps_the_teacher_online_and_always_refuses_it(run_tiny, tmp_path):
    results, _ = run_tiny(["augmentation=mixup"], out=tmp_path / "mixup")
    record = results["stages"][-1]["teacher_cache"]
    assert not record["used"] and "online augmentation (mixup)" in record["reason"]
    with pytest.raises(ConfigError) as err:
        run_tiny(["augmentation=mixup", "teacher.cache_outputs=always"], out=tmp_path / "refused")
    assert err.value.key == "teacher.cache_outputs"
    assert not (tmp_path / "refused" / "checkpoints").exists()  # refused before anything ran


def test_offline_augmented_copies_are_part_of_the_key(run_tiny, tmp_path):
    plain, _ = run_tiny(["data.synthetic.seed=12"], out=tmp_path / "plain")
    augmented, _ = run_tiny(["data.synthetic.seed=12", "augmentation=token_perturbation"], out=tmp_path / "aug")
    a, b = plain["stages"][-1]["teacher_cache"], augmented["stages"][-1]["teacher_cache"]
    assert a["used"] and b["used"] and b["built"] and a["entry"] != b["entry"]
    rows = json.loads((Path(b["entry"]) / "meta.json").read_text())["rows"]
    assert rows == augmented["augmentation"]["train_examples"] > plain["augmentation"]["train_examples"]
