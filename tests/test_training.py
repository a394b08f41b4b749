"""Training behaviour around the loss: evaluation during training (eval.every / keep / early stopping),
stopping a diverging run, warm-up as a ratio, and loading checkpoints as weights only."""

from __future__ import annotations

import json
import math
import pickle

import pytest
import torch
from safetensors.torch import load_file

from distillkit.config.schema import NoneMethodConfig, validate
from distillkit.errors import ConfigError, TrainingDiverged

from .conftest import TINY, compose_config

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
    assert [step for step, _ in _evals(out, "distill")] == [6]
    assert [s.get("evaluations", 0) for s in results["stages"]] == [0, 0, 1]  # teacher_prep, hints, distill


def test_eval_metrics_go_to_wandb_under_the_stage(tmp_path):
    from transformers import TrainerControl, TrainerState

    from distillkit.training.trainer import MetricsCallback

    class Run:
        def __init__(self):
            self.logged = []

        def define_metric(self, *args, **kwargs):
            pass

        def log(self, data):
            self.logged.append(data)

    run = Run()
    callback = MetricsCallback("distill", tmp_path / "metrics.jsonl", run)
    callback.on_log(None, TrainerState(global_step=4, epoch=0.5), TrainerControl(),
                    logs={"eval_accuracy": 0.75, "eval_f1_macro": 0.5, "epoch": 0.5})
    assert run.logged == [{"distill/step": 4, "distill/eval/accuracy": 0.75, "distill/eval/f1_macro": 0.5,
                           "distill/epoch": 0.5}]
    assert json.loads((tmp_path / "metrics.jsonl").read_text())["eval/accuracy"] == 0.75


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
    best, last = load_file(ckpts / f"checkpoint-{best_step}" / "model.safetensors"), \
        load_file(ckpts / "checkpoint-6" / "model.safetensors")
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


@pytest.mark.parametrize("overrides, key", [
    (["eval.keep=best"], "eval.keep"),
    (["eval.early_stopping_patience=2"], "eval.early_stopping_patience"),
    (["eval.every=0"], "eval.every"),
    (["eval.every=steps"], "eval.every"),
    (["eval.every=2", "eval.early_stopping_patience=0"], "eval.early_stopping_patience"),
    (["eval.every=2", "eval.keep=first"], "eval.keep"),
    (["train.nonfinite_patience=-1"], "train.nonfinite_patience"),
])
def test_bad_eval_and_divergence_settings_are_config_errors(overrides, key):
    with pytest.raises(ConfigError) as err:
        validate(compose_config(TINY + overrides))
    assert err.value.key == key
    if overrides == ["eval.keep=best"]:
        assert "eval.every" in str(err.value)  # names both keys


def test_eval_every_accepts_epoch_and_steps():
    assert validate(compose_config(TINY + ["eval.every=epoch", "eval.keep=best"])).eval.every == "epoch"
    cfg = validate(compose_config(TINY + ["eval.every=50", "eval.early_stopping_patience=3"]))
    assert (cfg.eval.every, cfg.eval.early_stopping_patience, cfg.eval.keep) == (50, 3, "last")
    assert validate(compose_config(TINY)).eval.every is None  # off by default


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


# ------------------------------------------------------------------------------ warm-up, loading
@pytest.mark.parametrize("ratio, warmup", [(1.0, 10), (0.5, 5), (0.06, 1), (0.0, 0)])
def test_warmup_ratio_is_a_ratio_of_the_stage_steps(tmp_path, ratio, warmup):
    from transformers import BertConfig, BertForSequenceClassification

    from distillkit.methods import build_objective
    from distillkit.recipe.stage import Budget, Stage
    from distillkit.stages.runner import training_arguments
    from distillkit.training.trainer import DistillationTrainer

    cfg = validate(compose_config(TINY + [f"train.warmup_ratio={ratio}"]))
    stage = Stage("distill", build_objective(NoneMethodConfig()), teacher=None, budget=Budget(1.0, 1e-3, seed=0, max_steps=10))
    model = BertForSequenceClassification(BertConfig(vocab_size=50, hidden_size=8, num_hidden_layers=1,
                                                     num_attention_heads=2, intermediate_size=8))
    trainer = DistillationTrainer(model=model, args=training_arguments(cfg, stage, tmp_path, True),
                                  objective=stage.objective, warmup_ratio=cfg.train.warmup_ratio)
    trainer.create_optimizer_and_scheduler(num_training_steps=10)
    factors = [trainer.lr_scheduler.lr_lambdas[0](step) for step in range(10)]
    assert factors[:warmup] == pytest.approx([k / warmup for k in range(warmup)])  # the linear ramp
    if warmup < 10:
        assert factors[warmup] == pytest.approx(1.0)  # the peak, then the linear decay


def test_finished_stage_weights_load_as_weights_only(tmp_path):
    """A done/ directory whose student.pt holds more than tensors is refused, not executed."""
    from distillkit.methods import build_objective
    from distillkit.recipe.stage import Budget, Stage
    from distillkit.stages.checkpoints import load_done

    stage = Stage("hints", build_objective(NoneMethodConfig()), teacher=None, budget=Budget(1.0, 1e-3, seed=0))
    done = tmp_path / "checkpoints" / "hints" / "done"
    done.mkdir(parents=True)
    (done / "record.json").write_text("{}")
    torch.save({"weight": math.pi, "payload": pickle.PickleError("not a tensor")}, done / "student.pt")
    with pytest.raises(pickle.UnpicklingError):
        load_done(stage, torch.nn.Linear(1, 1), tmp_path)
