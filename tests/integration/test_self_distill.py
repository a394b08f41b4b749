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
    overrides = ["method=born_again", "method.generations=2"]
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
