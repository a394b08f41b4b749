"""Training behaviour around the loss: evaluation during training (eval.every / keep / early stopping),
stopping a diverging run, warm-up as a ratio, and loading checkpoints as weights only."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from distillkit.errors import TrainingDiverged

FROZEN = ["train.learning_rate=1e-12", "train.layer_learning_rate=1e-12"]  # the metric cannot improve


def _lines(out, stage=None):
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    return [r for r in lines if stage is None or r["stage"] == stage]


def _evals(out, stage):
    return [(r["step"], r["eval/accuracy"]) for r in _lines(out, stage) if "eval/accuracy" in r]


def _student(out):
    return load_file(out / "student" / "model.safetensors")


# ------------------------------------------------------------------------------------ evaluation
def test_eval_every_logs_eval_metrics_per_stage(run_tiny):
    results, out = run_tiny(["eval.every=2"])
    evals = _evals(out, "distill")
    assert [step for step, _ in evals] == [2, 4, 6]
    assert not _evals(out, "teacher_prep")  # the teacher's preparation is not evaluated
    line = next(r for r in _lines(out, "distill") if "eval/accuracy" in r)
    assert 0.0 <= line["eval/f1_macro"] <= 1.0 and "eval_accuracy" not in line
    record = results["stages"][-1]
    assert record["checkpoint"] == "last" and record["evaluations"] == 3
    assert record["eval_accuracy"] == evals[-1][1]
    # keep=last: the exported student is the last step's, whose accuracy the last evaluation measured
    assert results["student"]["accuracy"] == pytest.approx(evals[-1][1])


def test_eval_every_epoch_and_feature_only_stages(run_tiny):
    """eval.every=epoch evaluates when the (here truncated) epoch ends; FitNets' hints stage trains only
    features, so it is not evaluated while its distill stage is."""
    results, out = run_tiny(["eval.every=epoch", "method=fitnets"])
    assert _evals(out, "hints") == []
    assert [step for step, _ in _evals(out, "distill")] == [3]  # hints and distill share the 6-step budget
    assert [s.get("evaluations", 0) for s in results["stages"]] == [0, 0, 1]  # teacher_prep, hints, distill


def test_keep_best_ends_on_the_best_checkpoint(run_tiny, monkeypatch):
    monkeypatch.setattr("distillkit.run.clear_checkpoints", lambda out: None)  # keep them to compare with
    results, out = run_tiny(["eval.every=2", "eval.keep=best"])
    evals = _evals(out, "distill")
    best_accuracy = max(acc for _, acc in evals)
    best_step = next(step for step, acc in evals if acc == best_accuracy)  # the first of equals wins
    assert best_step != 6  # else this test could not tell best from last (the tiny run is at chance level)
    record = results["stages"][-1]
    assert record["best_step"] == best_step
    assert record["checkpoint"] == f"best (step {best_step}, accuracy {best_accuracy:.4f})"
    ckpts = out / "checkpoints" / "distill"
    best, last = (
        load_file(ckpts / f"checkpoint-{best_step}" / "model.safetensors"),
        load_file(ckpts / "checkpoint-6" / "model.safetensors"),
    )
    student = _student(out)
    assert all(torch.equal(student[k], best[k]) for k in best)
    assert not all(torch.equal(student[k], last[k]) for k in last)
    # the report's figures are the best checkpoint's: evaluating it again gives its logged accuracy
    assert results["student"]["accuracy"] == pytest.approx(best_accuracy)


def test_keep_best_checkpoints_the_best_step_even_off_the_save_steps(run_tiny, monkeypatch):
    """eval.every=5 with train.save_steps=3: no multiple-of-eval-steps rule, no transformers ValueError;
    the best evaluation (step 5) still gets its own checkpoint."""
    monkeypatch.setattr("distillkit.run.clear_checkpoints", lambda out: None)
    results, out = run_tiny(["eval.every=5", "eval.keep=best"] + FROZEN)
    assert [step for step, _ in _evals(out, "distill")] == [5, 6]
    assert results["stages"][-1]["best_step"] == 5
    assert (out / "checkpoints" / "distill" / "checkpoint-5").is_dir()


def test_early_stopping_stops_when_the_metric_does_not_improve(run_tiny):
    results, out = run_tiny(["eval.every=2", "eval.early_stopping_patience=1"] + FROZEN)
    record = results["stages"][-1]
    assert [step for step, _ in _evals(out, "distill")] == [2, 4]  # no better at 4: stop (max_steps is 6)
    assert record["steps"] == 4 and record["stopped_early"] is True
    from distillkit.report import stage_line

    assert "stopped early" in stage_line(record)


# ------------------------------------------------------------------------------------ divergence
def test_diverging_run_stops_and_is_never_marked_complete(run_tiny, tmp_path):
    out = tmp_path / "diverged"
    with pytest.raises(TrainingDiverged) as err:
        run_tiny(["train.learning_rate=1e30"], out=out)
    message = str(err.value)
    assert "stage distill at step" in message and "NaN or inf" in message
    assert "train.learning_rate=1e+29" in message and "train.max_grad_norm=" in message
    assert not (out / "results.json").exists() and not (out / "student").exists()


def _nan_at(monkeypatch, steps):
    """Make the distill stage's loss NaN at the given (1-based) optimizer steps."""
    from distillkit.training.trainer import DistillationTrainer

    real = DistillationTrainer.compute_loss

    def compute_loss(self, model, inputs, *args, **kwargs):
        loss = real(self, model, inputs, *args, **kwargs)
        if model.training and self.guard.stage == "distill" and self.state.global_step + 1 in steps:
            return loss * float("nan")
        return loss

    monkeypatch.setattr(DistillationTrainer, "compute_loss", compute_loss)


def test_nothing_is_checkpointed_after_the_first_non_finite_step(run_tiny, tmp_path, monkeypatch):
    _nan_at(monkeypatch, {5})
    out = tmp_path / "nan"
    with pytest.raises(TrainingDiverged, match="at step 5") as err:
        run_tiny([], out=out)
    ckpts = sorted(p.name for p in (out / "checkpoints" / "distill").glob("checkpoint-*"))
    assert ckpts == ["checkpoint-3"] and "checkpoint-3" in str(err.value)  # the last good one, named
    weights = load_file(out / "checkpoints" / "distill" / "checkpoint-3" / "model.safetensors")
    assert all(torch.isfinite(w).all() for w in weights.values())
    assert not (out / "results.json").exists()


def test_nonfinite_patience_skips_isolated_bad_steps(run_tiny, tmp_path, monkeypatch):
    _nan_at(monkeypatch, {2, 4})  # never two in a row
    results, out = run_tiny(["train.nonfinite_patience=1"], out=tmp_path / "skip")
    assert results["stages"][-1]["steps"] == 6
    assert all(torch.isfinite(w).all() for w in _student(out).values())
    monkeypatch.undo()
    _nan_at(monkeypatch, {2, 3})  # two in a row: more than the patience of 1
    with pytest.raises(TrainingDiverged, match="at step 3"):
        run_tiny(["train.nonfinite_patience=1"], out=tmp_path / "stop")
