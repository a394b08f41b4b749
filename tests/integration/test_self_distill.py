"""Self-distillation end to end: generations learn from the generation before, a run interrupted inside a
generation or with an EMA teacher resumes there, and a student checkpoint without a teacher (the sources, plans
and losses: tests/unit/teachers/test_self_distill.py)."""

import hashlib

import pytest
import torch


def _digest(model) -> str:
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


@pytest.mark.slow
def test_each_generation_learns_from_exactly_the_previous_generation(run_tiny, monkeypatch):
    from distillkit.stages import runner as stage_lib

    original, seen = stage_lib.run_stage, {}

    def spy(stage, ws):
        source = ws.source(stage)
        seen[stage.name] = {
            "teacher": _digest(source.model) if hasattr(source, "model") else None,
            "start": _digest(ws.model(stage)),
        }
        record = original(stage, ws)
        seen[stage.name]["end"] = _digest(ws.model(stage))
        return record

    monkeypatch.setattr("distillkit.run.run_stage", spy)
    results, out = run_tiny(["method=born_again", "method.generations=2", "teacher=none", "train.max_steps=4"])
    assert seen["gen1"]["teacher"] == seen["gen0"]["end"] and seen["gen2"]["teacher"] == seen["gen1"]["end"]
    assert seen["gen1"]["start"] != seen["gen0"]["end"]  # a fresh student, not the teacher's copy
    rows = [s for s in results["stages"] if s.get("eval")]
    assert [s["name"] for s in rows] == ["gen0", "gen1", "gen2"]  # every generation evaluated
    assert "teacher_accuracy" in rows[1]["eval"] and "teacher_accuracy" not in rows[0]["eval"]
    assert results["teacher"] is None and results["comparison"] is None  # teacher=none: nothing to compare


@pytest.mark.slow
def test_born_again_interrupted_inside_generation_2_resumes_there(run_tiny, tmp_path, monkeypatch):
    from .test_end_to_end import _interrupt

    out = tmp_path / "ban"
    overrides = ["method=born_again", "method.generations=2", "train.max_steps=18"]  # 6 steps a generation
    original = _interrupt(run_tiny, monkeypatch, overrides, out, "gen2")
    assert (out / "checkpoints" / "gen1" / "done" / "record.json").exists()
    assert (out / "checkpoints" / "gen2" / "checkpoint-3").is_dir()
    calls = []
    monkeypatch.setattr("distillkit.run.run_stage", lambda stage, ws: calls.append(stage.name) or original(stage, ws))
    results, _ = run_tiny(overrides, out=out, resume=True)
    assert calls == ["gen2"]  # finished generations are not trained again
    by_name = {s["name"]: s for s in results["stages"]}
    assert by_name["gen0"]["resumed_from"] == by_name["gen1"]["resumed_from"] == "done"
    assert by_name["gen2"]["resumed_from"].endswith("checkpoint-4") and by_name["gen2"]["steps"] == 6
    assert by_name["gen1"]["eval"]["accuracy"] is not None  # the record kept from the first attempt


@pytest.mark.slow
def test_ema_teacher_state_is_checkpointed_and_restored_on_resume(run_tiny, tmp_path, monkeypatch):
    from distillkit.teachers.sources import EMATeacher

    from .test_end_to_end import _interrupt

    out = tmp_path / "ema"
    _interrupt(run_tiny, monkeypatch, ["method=ema_teacher"], out, "distill")
    saved = torch.load(out / "checkpoints" / "distill" / "checkpoint-4" / "teacher_source.pt")
    loaded = []
    real = EMATeacher.load_state_dict
    monkeypatch.setattr(EMATeacher, "load_state_dict", lambda self, state: loaded.append(state) or real(self, state))
    run_tiny(["method=ema_teacher"], out=out, resume=True)
    assert len(loaded) == 1
    assert all(torch.equal(loaded[0]["model"][k], saved["model"][k]) for k in saved["model"])


@pytest.mark.slow
def test_teacher_none_with_a_student_checkpoint_uses_its_tokenizer(run_tiny, tmp_path):
    """No teacher, a local student checkpoint (what a run exports): the run trains it with its own tokenizer."""
    from transformers import AutoTokenizer

    # a vocabulary of 350, not the 300 teacher=none's template would train: only the checkpoint's own tokenizer fits
    _, first = run_tiny(["method=none", "train.max_steps=2", "teacher.arch.vocab_size=350"], out=tmp_path / "first")
    results, out = run_tiny(
        ["teacher=none", "student=hub", f"student.path={first / 'student'}", "method=ema_teacher"],
        out=tmp_path / "second",
    )
    assert results["teacher"] is None and results["stages"][-1]["eval"]["accuracy"] is not None
    exported = AutoTokenizer.from_pretrained(out / "student")
    assert exported.get_vocab() == AutoTokenizer.from_pretrained(first / "student").get_vocab()


@pytest.mark.slow
def test_ps_kd_target_moves_from_the_labels_to_the_previous_epoch_snapshot(run_tiny, monkeypatch):
    """PS-KD on 48 examples, 3 steps an epoch, stopped at 7 steps (7/3 epochs): the first epoch learns from y alone
    (no snapshot), then α = 0.8 · (completed epochs + 1) / (7/3), at most 0.8, against the snapshot of the
    epoch before."""
    from distillkit.losses import self_distill as self_losses

    real, calls = self_losses.ps_kd_loss, []

    def spy(student_logits, labels, previous_logits, alpha):
        calls.append((round(alpha, 6), previous_logits is not None))
        return real(student_logits, labels, previous_logits, alpha)

    monkeypatch.setattr(self_losses, "ps_kd_loss", spy)
    results, _ = run_tiny(["teacher=none", "method=ps_kd", "data.synthetic.n_train=48", "train.max_steps=7"])
    a1, a2 = round(0.8 * 6 / 7, 6), 0.8  # α_T·(e+1)/T in epoch e, at most α_T: the authors' schedule
    assert calls == [(0.0, False)] * 3 + [(a1, True)] * 3 + [(a2, True)]  # one call per optimizer step
    (stage,) = results["stages"]
    assert stage["name"] == "distill" and stage["steps"] == 7 and "ps_kd" in stage["final_loss_terms"]
    assert stage["formula"].startswith("L = 1·CE((1 − α_t)·y + α_t·softmax(z_prev), softmax(z_s))")
    # the stage's own teacher is its last snapshot (taken after epoch 2), reported beside the student
    assert stage["eval"]["accuracy"] is not None and "teacher_accuracy" in stage["eval"]
