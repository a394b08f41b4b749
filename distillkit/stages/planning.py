"""The stage list of a run: ``teacher_prep`` when the teacher needs fitting, then the method's stages, each
checked against the models' shapes and given its budget (optimizer steps)."""

from __future__ import annotations

import logging
import math

from distillkit.config.schema import HardwareConfig, RunConfig
from distillkit.errors import require
from distillkit.methods import build_objective, build_stages
from distillkit.recipe.objective import Dims
from distillkit.recipe.stage import Budget, DataView, Stage, StudentSpec

log = logging.getLogger(__name__)


def teacher_prep_stage(cfg: RunConfig) -> Stage:
    """Fine-tune the teacher group's model on the task's own targets (its labels-only method); its result is
    cached content-addressed."""
    from distillkit import tasks

    t = cfg.teacher
    labels_only = tasks.get(cfg.task.name).labels_only_method()
    return Stage(
        "teacher_prep",
        build_objective(labels_only),
        teacher=None,
        student=StudentSpec("teacher", "teacher"),
        data=DataView(augment=False),
        budget=Budget(
            t.prepare_epochs,
            t.prepare_learning_rate,
            t.prepare_layer_learning_rate,
            "teacher.prepare_learning_rate",
            "teacher.prepare_layer_learning_rate",
            seed=t.prepare_seed,
        ),
        cached=True,
    )


def plan_stages(cfg: RunConfig, prepare_teacher: bool, dims: Dims) -> list[Stage]:
    """The run's stages, their budgets filled in from ``train.*``; building the method checks it against the
    models' shapes, and the stages are checked against the teacher group and the budget (ConfigError)."""
    tr = cfg.train
    stages = build_stages(cfg.method, dims)
    for stage in stages:
        b = stage.budget
        b.epochs = (tr.epochs if b.share is None else tr.epochs * b.share) if b.epochs is None else b.epochs
        b.learning_rate = tr.learning_rate if b.learning_rate is None else b.learning_rate
        b.layer_learning_rate = tr.layer_learning_rate if b.layer_learning_rate is None else b.layer_learning_rate
        b.seed = cfg.seed + stage.student.seed_offset if b.seed is None else b.seed
        b.max_steps = tr.max_steps
        _check_stage(cfg, stage, dims)
    stages[-1].produces = True  # the last stage's model is the run's student
    return ([teacher_prep_stage(cfg)] if prepare_teacher else []) + stages


def _check_stage(cfg: RunConfig, stage: Stage, dims: Dims) -> None:
    method = cfg.method.name
    require(
        any(term.weight != 0 for term in stage.objective.terms),
        "method",
        method,
        f"gives every loss term of its stage {stage.name!r} "
        f"({', '.join(term.name for term in stage.objective.terms)}) a weight of 0, so the stage would train "
        "nothing.",
        "give at least one of the stage's loss weights a positive value.",
    )
    teacher = stage.teacher
    if cfg.teacher.name == "none":
        uses = (
            "distils from the prepared teacher"
            if teacher is not None and teacher.kind == "prepared"
            else f"initialises its model from teacher layers (student.init={cfg.student.init})"
            if stage.student.build in ("student", "depth") and cfg.student.path is None and cfg.student.init != "random"
            else None
        )
        require(
            uses is None,
            "teacher",
            "none",
            f"but method={method}'s stage {stage.name!r} {uses}.",
            "pick a teacher (e.g. teacher=embedded-bert-12l), or a method that needs none (born_again with "
            "method.gen0=labels, self_kd, snapshot_ensemble, ema_teacher) and student.init=random.",
        )
    if teacher is not None and teacher.kind in ("snapshots", "ensemble"):
        spec = stage.objective.teacher_features
        require(
            not (spec.hidden_states or spec.attentions or spec.hooks),
            "method",
            method,
            f"has stage {stage.name!r} read the teacher's features, and its teacher ({teacher.describe()}) gives "
            "mean predictions, logits only.",
            "use a logit method for it (e.g. method.inner.name=kd).",
        )
    if teacher is not None and teacher.kind == "snapshots":
        _check_snapshots(cfg.hardware, stage, dims)
    if stage.data.unlabeled == "generated" or (stage.data.unlabeled == "auto" and cfg.data.source != "synthetic"):
        require(
            cfg.data.source == "synthetic",
            "method.unlabeled",
            stage.data.unlabeled,
            f"needs unlabeled texts, and data={cfg.data.name} has no generator to make them.",
            "use method.unlabeled=train (the training texts, labels hidden) or a text file of unlabeled examples.",
        )


def optimizer_steps(hw: HardwareConfig, stage: Stage, examples: int) -> tuple[int, int]:
    """(steps per epoch, total steps) of ``stage`` on ``examples`` training examples with this hardware."""
    batch = (stage.budget.batch_size or hw.per_device_batch_size) * hw.devices
    per_epoch = max(
        1, math.ceil(examples / batch) // (stage.budget.accumulation_steps or hw.gradient_accumulation_steps)
    )
    total = stage.budget.max_steps if stage.budget.max_steps > 0 else math.ceil(stage.budget.epochs * per_epoch)
    return per_epoch, total


def _check_snapshots(hw: HardwareConfig, stage: Stage, dims: Dims) -> None:
    """K snapshots must fit the budget: K ≤ the snapshots the stage takes before its last step."""
    k, every = stage.teacher.options.k, stage.teacher.options.every
    per_epoch, total = optimizer_steps(hw, stage, dims.train_examples)
    possible = (math.ceil(total / per_epoch) - 1) if every == "epoch" else (total - 1) // every
    require(
        k <= possible,
        "method.k" if k > 1 else "method.every",
        k if k > 1 else every,
        f"asks for {k} snapshot(s) taken {'each epoch' if every == 'epoch' else f'every {every} steps'}, but the "
        f"stage's {total} optimizer steps ({per_epoch} per epoch) leave room for {max(possible, 0)} before its "
        "last step, so the teacher would never be complete.",
        "take snapshots more often (e.g. method.every=" + str(max(1, total // (2 * k + 2))) + "), lower method.k, "
        "or train longer (train.epochs).",
    )
