"""Tiny full runs in-process: every method, the outputs contract, caching, resume, failure."""

import json

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from distillkit.errors import ConfigError

pytestmark = pytest.mark.slow

RESULT_KEYS = {"accuracy", "f1_macro", "params", "latency_ms", "throughput_samples_s"}


@pytest.mark.parametrize("method", ["none", "kd"])
def test_each_method_runs_and_writes_the_contract(run_tiny, method):
    results, out = run_tiny([f"method={method}"])
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["status"] == "complete" and on_disk["schema_version"] == 1
    assert on_disk["run"]["method"] == method
    assert RESULT_KEYS <= set(on_disk["teacher"]) and RESULT_KEYS <= set(on_disk["student"])
    comparison = on_disk["comparison"]
    assert 0 <= comparison["agreement"] <= 1 and comparison["kl_to_teacher"] >= 0
    assert comparison["compression"] == pytest.approx(on_disk["teacher"]["params"] / on_disk["student"]["params"])
    assert on_disk["stages"][-1]["name"] == "distill" and on_disk["stages"][-1]["steps"] == 6
    # per-step metrics, each loss term under its own name
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    distill = [r for r in records if r["stage"] == "distill" and "loss" in r]
    assert distill and all("loss/ce" in r for r in distill)
    assert all(("loss/kd" in r) == (method == "kd") for r in distill)


def test_saved_student_reloads_with_automodel_and_predicts_the_same(run_tiny):
    results, out = run_tiny(["method=kd"])
    model = AutoModelForSequenceClassification.from_pretrained(out / "student").eval()
    tokenizer = AutoTokenizer.from_pretrained(out / "student")
    assert model.config.num_hidden_layers == 2
    assert model.config.id2label[0] == results["task"]["label_names"][0]
    enc = tokenizer(["the food was not good"], return_tensors="pt")
    with torch.no_grad():
        a, b = model(**enc).logits, model(**enc).logits
    assert torch.equal(a, b) and a.shape == (1, results["task"]["num_labels"])


def test_second_run_reuses_the_prepared_teacher(run_tiny, tmp_path):
    first, _ = run_tiny(["method=none"], out=tmp_path / "a")
    second, _ = run_tiny(["method=none", "seed=7"], out=tmp_path / "b")
    assert second["stages"][0]["name"] == "teacher_prep" and second["stages"][0]["cached"]
    assert second["teacher"]["accuracy"] == first["teacher"]["accuracy"]  # the very same teacher
    changed, _ = run_tiny(["method=none", "teacher.prepare_learning_rate=1e-3"], out=tmp_path / "c")
    assert not changed["stages"][0]["cached"]  # a setting that determines the teacher is part of its key


def test_interrupted_run_resumes_from_its_last_checkpoint(run_tiny, tmp_path, monkeypatch):
    from distillkit import stages

    out = tmp_path / "resumable"
    original = stages.run_stage

    def crash_after_first_checkpoint(stage, *args, **kwargs):
        if stage.name == "distill":
            stage.max_steps = 4  # train 4 steps (checkpoint at 3), then "crash"
            original(stage, *args, **kwargs)
            raise KeyboardInterrupt
        return original(stage, *args, **kwargs)

    monkeypatch.setattr("distillkit.run.run_stage", crash_after_first_checkpoint)
    with pytest.raises(KeyboardInterrupt):
        run_tiny(["method=kd"], out=out)
    assert not (out / "results.json").exists()
    assert (out / "checkpoints" / "distill" / "checkpoint-3").is_dir()
    monkeypatch.setattr("distillkit.run.run_stage", original)
    results, _ = run_tiny(["method=kd"], out=out, resume=True)
    record = results["stages"][-1]
    assert record["resumed_from"].endswith("checkpoint-4") and record["steps"] == 6


def test_failed_run_leaves_no_results(run_tiny, tmp_path):
    with pytest.raises(ConfigError, match="student.num_layers"):
        run_tiny(["student.num_layers=9"], out=tmp_path / "bad")
    assert not (tmp_path / "bad" / "results.json").exists()


def test_gradient_accumulation_gives_the_same_trajectory(run_tiny, tmp_path):
    # Without dropout, batch 16 × accumulation 1 and batch 8 × accumulation 2 see the same examples in
    # the same order and must take the same optimizer steps (the loss is a per-batch mean).
    common = ["method=kd", "teacher.arch.dropout=0", "hardware.eval_batch_size=64"]
    a, out_a = run_tiny(common + ["hardware.per_device_batch_size=16"], out=tmp_path / "a")
    b, out_b = run_tiny(common + ["hardware.per_device_batch_size=8", "hardware.gradient_accumulation_steps=2"],
                        out=tmp_path / "b")
    assert b["stages"][0]["cached"]  # same global batch: the same prepared teacher
    losses = []
    for out in (out_a, out_b):
        lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
        losses.append([r["loss"] for r in lines if r["stage"] == "distill" and "loss" in r])
    assert len(losses[0]) == len(losses[1]) >= 3
    assert losses[0] == pytest.approx(losses[1], rel=1e-3)
    sa = AutoModelForSequenceClassification.from_pretrained(out_a / "student").state_dict()
    sb = AutoModelForSequenceClassification.from_pretrained(out_b / "student").state_dict()
    assert all(torch.allclose(sa[k], sb[k], atol=1e-5) for k in sa)
