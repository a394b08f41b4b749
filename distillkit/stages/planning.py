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
    """The run's stages, their budgets filled in from ``train.*`` (``split_budget``); building the method checks
    it against the models' shapes, and the stages are checked against the teacher group and the budget
    (ConfigError)."""
    tr = cfg.train
    stages = build_stages(cfg.method, dims)
    trained = [s for s in stages if s.trains]  # generation stages train nothing: outside the budget
    split_budget(cfg, trained, dims.train_examples)
    for stage in trained:
        b = stage.budget
        b.learning_rate = tr.learning_rate if b.learning_rate is None else b.learning_rate
        b.layer_learning_rate = tr.layer_learning_rate if b.layer_learning_rate is None else b.layer_learning_rate
        b.seed = cfg.seed + stage.student.seed_offset if b.seed is None else b.seed
        _check_stage(cfg, stage, dims)
    stages[-1].produces = True  # the last stage's model is the run's student
    return ([teacher_prep_stage(cfg)] if prepare_teacher else []) + stages


def total_steps(cfg: RunConfig, train_examples: int) -> tuple[int, int]:
    """(optimizer steps per epoch of the training split, the whole distillation's optimizer steps): the budget
    ``train.max_steps``, else ``train.epochs`` passes over the training split (before offline augmentation) at
    the hardware group's global batch."""
    per_epoch, _ = optimizer_steps(cfg.hardware, Budget(epochs=1.0), train_examples)
    tr = cfg.train
    return per_epoch, (tr.max_steps if tr.max_steps > 0 else max(1, math.ceil(tr.epochs * per_epoch)))


def split_budget(cfg: RunConfig, stages: list[Stage], train_examples: int) -> None:
    """One budget for the whole distillation (every stage after ``teacher_prep``), in optimizer steps:
    ``total_steps``. A stage whose method setting fixes its ``epochs`` (``method.<stage>.epochs``: pinned) trains
    that many epochs of its own data on top of the split; the others share the budget: a stage with a ``share``
    (``method.<stage>.share``, ``method.sft_share``) takes that fraction, the rest split what is left equally.
    Each gets ``max_steps`` (the last takes the rounding remainder, so the shares sum to the total exactly) and
    ``epochs``, its steps counted in passes over the training split. Views of another size (unlabeled text,
    offline augmentation) see more or fewer of their own epochs in the same steps: the budget is what is equal."""
    per_epoch, total = total_steps(cfg, train_examples)
    free = [s for s in stages if s.budget.epochs is None]
    given = [s for s in free if s.budget.share is not None]
    claimed = sum(s.budget.share for s in given)
    require(
        claimed <= 1.0 + 1e-9 and (claimed < 1.0 - 1e-9 or len(given) == len(free)),
        "method",
        cfg.method.name,
        f"gives its stages {', '.join(f'{s.name}={s.budget.share:g}' for s in given)} of the budget (sum "
        f"{claimed:g}), leaving {'nothing for' if claimed <= 1.0 + 1e-9 else 'less than nothing for'} "
        f"{', '.join(s.name for s in free if s.budget.share is None) or 'the others'}.",
        "make the stages' shares (method.<stage>.share) sum to less than 1 when other stages share the rest, or to "
        "at most 1 when every stage has one.",
    )
    rest = [s for s in free if s.budget.share is None]
    for s in rest:
        s.budget.share = (1.0 - claimed) / len(rest)
    require(
        total >= len(free),
        "train.max_steps" if cfg.train.max_steps > 0 else "train.epochs",
        cfg.train.max_steps if cfg.train.max_steps > 0 else cfg.train.epochs,
        f"gives the distillation {total} optimizer step(s) ({per_epoch} per epoch of the training split), fewer than "
        f"the {len(free)} stages of method={cfg.method.name} that share it ({', '.join(s.name for s in free)}).",
        f"give at least {len(free)} steps, e.g. train.max_steps={len(free) * 10}.",
    )
    left = total
    for i, s in enumerate(free):
        steps = left if i == len(free) - 1 else max(1, min(left - (len(free) - 1 - i), round(s.budget.share * total)))
        left -= steps
        # the share it got (rounded to steps; the last stage also takes what shares summing below 1 leave)
        s.budget.max_steps, s.budget.epochs, s.budget.share = steps, steps / per_epoch, steps / total
    for s in stages:
        if s not in free:
            s.budget.share, s.budget.max_steps = None, -1  # pinned: its own epochs over its own view


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
    if not cfg.teacher.has_model:  # teacher=none, or an endpoint (teacher=openai): no weights to read
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
            cfg.teacher.name,
            f"{'is an endpoint (no weights), ' if cfg.teacher.endpoint else ''}but method={method}'s stage "
            f"{stage.name!r} {uses}.",
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
    if stage.data.unlabeled == "generated":  # auto: generated for data=synthetic, the training texts otherwise
        require(
            cfg.data.source == "synthetic",
            "method.unlabeled",
            stage.data.unlabeled,
            f"needs unlabeled texts, and data={cfg.data.name} has no generator to make them.",
            "use method.unlabeled=train (the training texts, labels hidden) or a text file of unlabeled examples.",
        )


def optimizer_steps(hw: HardwareConfig, budget: Budget, examples: int) -> tuple[int, int]:
    """(steps per epoch, total steps) of a stage with ``budget`` on ``examples`` training examples with this
    hardware."""
    batch = (budget.batch_size or hw.per_device_batch_size) * hw.devices
    # as the Trainer counts: a last, partial accumulation still makes an optimizer step
    batches = math.ceil(examples / batch)
    per_epoch = max(1, math.ceil(batches / (budget.accumulation_steps or hw.gradient_accumulation_steps)))
    total = budget.max_steps if budget.max_steps > 0 else math.ceil(budget.epochs * per_epoch)
    return per_epoch, total


def _check_snapshots(hw: HardwareConfig, stage: Stage, dims: Dims) -> None:
    """K snapshots must fit the budget: K ≤ the snapshots the stage takes before its last step."""
    k, every = stage.teacher.options.k, stage.teacher.options.every
    per_epoch, total = optimizer_steps(hw, stage.budget, dims.train_examples)
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
