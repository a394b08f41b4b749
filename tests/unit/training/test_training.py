"""Training settings without training: eval.* and divergence settings checked, eval metrics sent to W&B under the
stage, warm-up as a ratio of the stage's steps, checkpoints loaded as weights only (the runs:
tests/integration/test_training.py)."""

from __future__ import annotations

import json
import math
import pickle

import pytest
import torch

from distillkit.config.schema import NoneMethodConfig, validate
from distillkit.errors import ConfigError
from tests.conftest import TINY, compose_config


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
    callback.on_log(
        None,
        TrainerState(global_step=4, epoch=0.5),
        TrainerControl(),
        logs={"eval_accuracy": 0.75, "eval_f1_macro": 0.5, "epoch": 0.5},
    )
    assert run.logged == [
        {"distill/step": 4, "distill/eval/accuracy": 0.75, "distill/eval/f1_macro": 0.5, "distill/epoch": 0.5}
    ]
    assert json.loads((tmp_path / "metrics.jsonl").read_text())["eval/accuracy"] == 0.75


@pytest.mark.parametrize(
    "overrides, key",
    [
        (["eval.keep=best"], "eval.keep"),
        (["eval.early_stopping_patience=2"], "eval.early_stopping_patience"),
        (["eval.every=0"], "eval.every"),
        (["eval.every=steps"], "eval.every"),
        (["eval.every=2", "eval.early_stopping_patience=0"], "eval.early_stopping_patience"),
        (["eval.every=2", "eval.keep=first"], "eval.keep"),
        (["train.nonfinite_patience=-1"], "train.nonfinite_patience"),
    ],
)
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


# ------------------------------------------------------------------------------ warm-up, loading
@pytest.mark.parametrize("ratio, warmup", [(1.0, 10), (0.5, 5), (0.06, 1), (0.0, 0)])
def test_warmup_ratio_is_a_ratio_of_the_stage_steps(tmp_path, ratio, warmup):
    from transformers import BertConfig, BertForSequenceClassification

    from distillkit.methods import build_objective
    from distillkit.recipe.stage import Budget, Stage
    from distillkit.stages.runner import training_arguments
    from distillkit.training.trainer import DistillationTrainer

    cfg = validate(compose_config(TINY + [f"train.warmup_ratio={ratio}"]))
    stage = Stage(
        "distill", build_objective(NoneMethodConfig()), teacher=None, budget=Budget(1.0, 1e-3, seed=0, max_steps=10)
    )
    model = BertForSequenceClassification(
        BertConfig(vocab_size=50, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8)
    )
    trainer = DistillationTrainer(
        model=model,
        args=training_arguments(cfg, stage, tmp_path, True),
        objective=stage.objective,
        warmup_ratio=cfg.train.warmup_ratio,
    )
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
