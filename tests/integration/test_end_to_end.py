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
    assert on_disk["status"] == "complete" and on_disk["schema_version"] == 2
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
    out = tmp_path / "resumable"
    _interrupt(run_tiny, monkeypatch, ["method=kd"], out, "distill")
    assert not (out / "results.json").exists()
    assert (out / "checkpoints" / "distill" / "checkpoint-3").is_dir()
    results, _ = run_tiny(["method=kd"], out=out, resume=True)
    record = results["stages"][-1]
    assert record["resumed_from"].endswith("checkpoint-4") and record["steps"] == 6


def test_resume_with_checkpoints_that_do_not_fit_the_config_is_a_config_error(run_tiny, tmp_path, monkeypatch):
    out = tmp_path / "edited"
    _interrupt(run_tiny, monkeypatch, ["method=kd"], out, "distill")
    # the config now describes a narrower student than the one checkpointed (as if config.yaml were edited)
    with pytest.raises(ConfigError) as info:
        run_tiny(["method=kd", "student.hidden_size=16"], out=out, resume=True)
    assert info.value.key == "resume" and "checkpoint-4" in info.value.problem and "another shape" in info.value.problem
    assert not (out / "results.json").exists()


def test_failed_run_leaves_no_results(run_tiny, tmp_path):
    with pytest.raises(ConfigError, match="student.num_layers"):
        run_tiny(["student.init=uniform", "student.num_layers=9"], out=tmp_path / "bad")
    assert not (tmp_path / "bad" / "results.json").exists()


def test_gradient_accumulation_gives_the_same_trajectory(run_tiny, tmp_path):
    # Without dropout, batch 16 × accumulation 1 and batch 8 × accumulation 2 see the same examples in
    # the same order and must take the same optimizer steps (the loss is a per-batch mean).
    common = ["method=kd", "teacher.arch.dropout=0", "hardware.eval_batch_size=64"]
    a, out_a = run_tiny(common + ["hardware.per_device_batch_size=16"], out=tmp_path / "a")
    b, out_b = run_tiny(
        common + ["hardware.per_device_batch_size=8", "hardware.gradient_accumulation_steps=2"], out=tmp_path / "b"
    )
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


def _interrupt(run_tiny, monkeypatch, overrides, out, stage_name):
    """Run ``overrides`` into ``out``, interrupted after 4 steps of ``stage_name`` (checkpoints at 3 and 4), the
    way a killed run leaves its directory; returns the real run_stage (restored for the resume)."""
    original, crashing = _crash_in(stage_name, 4)
    monkeypatch.setattr("distillkit.run.run_stage", crashing)
    with pytest.raises(KeyboardInterrupt):
        run_tiny(overrides, out=out)
    monkeypatch.setattr("distillkit.run.run_stage", original)
    return original


def _crash_in(stage_name, steps):
    """A run_stage that trains ``stage_name`` for ``steps`` steps (checkpoint every 3) and then 'crashes'."""
    from distillkit.stages import runner as stages

    original = stages.run_stage

    def crashing(stage, *args, **kwargs):
        if stage.name == stage_name:
            stage.budget.max_steps = steps
            original(stage, *args, **kwargs)
            raise KeyboardInterrupt
        return original(stage, *args, **kwargs)

    return original, crashing


def test_multi_stage_run_resumes_in_the_stage_it_stopped_in(run_tiny, tmp_path, monkeypatch):
    out = tmp_path / "tinybert"
    original = _interrupt(run_tiny, monkeypatch, ["method=tinybert", "train.max_steps=12"], out, "prediction")
    assert (out / "checkpoints" / "intermediate" / "done" / "record.json").exists()
    assert (out / "checkpoints" / "prediction" / "checkpoint-3").is_dir()
    assert not (out / "results.json").exists()
    finished = torch.load(out / "checkpoints" / "intermediate" / "done" / "student.pt")

    calls = []
    monkeypatch.setattr(
        "distillkit.run.run_stage", lambda stage, *a, **k: calls.append(stage.name) or original(stage, *a, **k)
    )
    results, _ = run_tiny(["method=tinybert", "train.max_steps=12"], out=out, resume=True)
    assert calls == ["prediction"]  # the finished stage is not trained again
    names = [s["name"] for s in results["stages"]]
    assert names == ["teacher_prep", "intermediate", "prediction"]
    intermediate, prediction = results["stages"][1], results["stages"][2]
    assert intermediate["resumed_from"] == "done"
    assert set(intermediate["final_loss_terms"]) == {"embedding", "attention", "hidden"}
    assert prediction["resumed_from"].endswith("checkpoint-4") and prediction["steps"] == 6
    assert not torch.equal(
        finished["bert.embeddings.word_embeddings.weight"],
        AutoModelForSequenceClassification.from_pretrained(out / "student").state_dict()[
            "bert.embeddings.word_embeddings.weight"
        ],
    )  # prediction trained on from there
    logged = {json.loads(line)["stage"] for line in (out / "metrics.jsonl").read_text().splitlines()}
    assert {"intermediate", "prediction"} <= logged


def test_crd_memory_bank_is_checkpointed_and_restored_on_resume(run_tiny, tmp_path, monkeypatch):
    out = tmp_path / "crd"
    _interrupt(run_tiny, monkeypatch, ["method=crd"], out, "distill")
    saved = torch.load(out / "checkpoints" / "distill" / "checkpoint-4" / "adapters.pt")  # the newest
    assert {"memory.student_bank", "memory.teacher_bank", "memory.z", "embed_student.linear.weight"} <= set(saved)
    assert (saved["memory.z"] > 0).all()  # the NCE constants were estimated before the checkpoint

    from distillkit.training.trainer import DistillationTrainer

    loaded = []
    real = DistillationTrainer._load_from_checkpoint

    def load_and_look(self, path, model=None):
        real(self, path, model)
        loaded.append({k: v.clone() for k, v in self.objective.adapters.state_dict().items()})

    monkeypatch.setattr(DistillationTrainer, "_load_from_checkpoint", load_and_look)
    results, _ = run_tiny(["method=crd"], out=out, resume=True)
    assert len(loaded) == 1  # the bank, z and heads came back with the checkpoint, not fresh ones
    assert [k for k in saved if not torch.equal(loaded[0][k], saved[k])] == []
    assert results["stages"][-1]["resumed_from"].endswith("checkpoint-4") and results["stages"][-1]["steps"] == 6


def test_adapters_train_with_the_student_but_stay_out_of_the_exported_model(run_tiny, monkeypatch):
    from distillkit.stages import runner as stages

    original, before, after = stages.run_stage, {}, {}

    def keep(stage, *args, **kwargs):
        before[stage.name] = {k: v.clone() for k, v in stage.objective.adapters.state_dict().items()}
        record = original(stage, *args, **kwargs)
        after[stage.name] = {k: v.clone() for k, v in stage.objective.adapters.state_dict().items()}
        return record

    monkeypatch.setattr("distillkit.run.run_stage", keep)
    overrides = [
        "method=fitnets",
        "student.hidden_size=16",
        "student.num_heads=2",
        "student.intermediate_size=32",
        "student.init=random",
    ]
    results, out = run_tiny(overrides)
    assert [s["name"] for s in results["stages"]] == ["teacher_prep", "hints", "distill"]
    assert set(after["hints"]) == {"hint_1.weight", "hint_1.bias", "hint_2.weight", "hint_2.bias"}
    assert after["hints"]["hint_1.weight"].shape == (32, 16)  # student 16 wide → teacher 32 wide
    assert not torch.equal(before["hints"]["hint_1.weight"], after["hints"]["hint_1.weight"])  # optimised
    assert results["stages"][1]["final_loss_terms"]["hint"] > 0
    exported = AutoModelForSequenceClassification.from_pretrained(out / "student").state_dict()
    assert not any("hint" in k for k in exported) and exported["bert.embeddings.word_embeddings.weight"].shape[1] == 16


@pytest.mark.parametrize("method", ["tinybert", "minilm"])
def test_attention_and_hook_methods_on_a_local_bert_checkpoint(run_tiny, tmp_path, method):
    """bert-base's layout (post-LN BertForSequenceClassification, sdpa attention by default) loaded from a
    directory as a hub checkpoint would be: eager attention is switched on, hooks find the projections."""
    from transformers import BertConfig, BertForSequenceClassification

    from distillkit.tasks.classification.data import train_wordpiece
    from distillkit.tasks.classification.synthetic import generate

    ckpt = tmp_path / "bert-checkpoint"
    tokenizer = train_wordpiece([r["text"] for r in generate(n_train=256, n_eval=8).train], 300, ckpt)
    config = BertConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64
    )
    assert BertForSequenceClassification(config).config._attn_implementation != "eager"
    BertForSequenceClassification(config).save_pretrained(ckpt)
    overrides = [f"method={method}", "method.schedule=staged", "teacher=hub", f"teacher.path={ckpt}"]
    results, out = run_tiny(overrides, without=("teacher.arch",))
    assert results["stages"][0]["name"] == "teacher_prep" and not results["stages"][0]["cached"]
    trained = results["stages"][1:]
    assert [s["steps"] for s in trained] == [3, 3] and results["budget"]["total"]["steps"] == 6  # one budget, halved
    first_terms = trained[0]["final_loss_terms"]
    assert first_terms and all(v >= 0 for v in first_terms.values())
    assert AutoModelForSequenceClassification.from_pretrained(out / "student").config.model_type == "bert"


def test_tinybert_general_stage_trains_on_an_unlabeled_text_file(run_tiny, tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the pasta was good\n\nthe band was not great\nwe loved the hotel\n" * 20)
    results, out = run_tiny(["method=tinybert", "method.general.epochs=1", f"method.general.text_file={corpus}"])
    names = [s["name"] for s in results["stages"]]
    assert names == ["teacher_prep", "general", "intermediate", "prediction"]
    general = results["stages"][1]
    assert set(general["final_loss_terms"]) == {"embedding", "attention", "hidden"}
    assert general["train_examples"] == 60  # the file's non-blank lines, not the 256 training examples
    assert results["stages"][2]["train_examples"] == 256
