"""A run is an ordered list of stages (``stage_types.Stage``); each trains one model against one teacher
source with one objective, on one data view, for one budget.

``teacher_prep`` comes first when the teacher has no head fitted to the data (the teacher fine-tuned with
labels alone; cached), then the method's stages: ``distill`` for single-stage methods; e.g. ``hints →
distill`` (FitNets), ``[general →] intermediate → prediction`` (TinyBERT), ``relations → finetune`` (MiniLM);
``gen0 → gen1 → …`` (born-again), ``assistant6 → assistant4 → student`` (TAKD). Each stage checkpoints
under ``<run>/checkpoints/<stage>/`` (with its teacher source's state: EMA weights, snapshots); a finished
stage leaves ``<stage>/done/`` (its model's weights, adapters, its record), so a resumed run skips it and
continues in the stage it stopped in.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from distillkit import dist
from distillkit.augment.online import online_options
from distillkit.config.schema import AugmentationConfig, EvalConfig, RunConfig
from distillkit.recipe.stage import Stage
from distillkit.training.checkpoints import last_checkpoint

log = logging.getLogger(__name__)


def evaluates(ev: EvalConfig, stage: Stage) -> bool:
    """Whether ``stage`` is evaluated during training: student stages whose loss reads the logits. A stage
    that trains only features (FitNets' hints, TinyBERT's intermediate, MiniLM's relations) leaves the head
    untouched, so its accuracy says nothing about the stage; ``teacher_prep`` is cached under a key that
    eval settings are no part of, and its accuracy is in the report anyway."""
    return ev.every is not None and not stage.trains_teacher and stage.objective.reads_logits


def _eval_arguments(ev: EvalConfig, evaluated: bool, metric: str | None) -> dict:
    """TrainingArguments for evaluation during training (none when the stage is not evaluated); ``metric`` (the
    task's checkpoint metric, greater is better) picks the best checkpoint and stops early."""
    if not evaluated:
        return {"eval_strategy": "no"}
    args = {"eval_strategy": "epoch"} if ev.every == "epoch" else {"eval_strategy": "steps", "eval_steps": ev.every}
    if ev.keep == "best" or ev.early_stopping_patience is not None:
        args.update(metric_for_best_model=metric, greater_is_better=True)
    return args


def divergence_fix(cfg: RunConfig, stage: Stage) -> str:
    """The advice in a divergence message: this stage's learning-rate key at a tenth, fp32, harder clipping."""
    b = stage.budget
    lower = f"{b.learning_rate_key}={b.learning_rate / 10:g} (now {b.learning_rate:g})"
    if b.layer_learning_rate is not None:
        lower += f" and {b.layer_learning_rate_key}={b.layer_learning_rate / 10:g} (now {b.layer_learning_rate:g})"
    fixes = [f"lower the learning rate, e.g. {lower}"]
    if cfg.hardware.precision != "fp32":
        fixes.append(f"train in full precision with hardware.precision=fp32 (now {cfg.hardware.precision})")
    fixes.append(
        f"clip gradients harder, e.g. train.max_grad_norm={cfg.train.max_grad_norm / 4:g} "
        f"(now {cfg.train.max_grad_norm:g})"
    )
    return "; ".join(fixes) + "; then start the run again."


def training_arguments(
    cfg: RunConfig, stage: Stage, output_dir: Path, use_cpu: bool, evaluated: bool = False, metric: str | None = None
):
    """The stage's TrainingArguments; ``evaluated``: with evaluation during training by the task's ``metric``."""
    from transformers import TrainingArguments

    hw, tr, b = cfg.hardware, cfg.train, stage.budget
    return TrainingArguments(
        output_dir=str(output_dir),
        num_train_epochs=b.epochs,
        max_steps=b.max_steps,
        learning_rate=b.learning_rate,
        weight_decay=tr.weight_decay,
        warmup_steps=0,  # DistillationTrainer counts train.warmup_ratio's steps from the stage's total
        lr_scheduler_type=tr.lr_scheduler,
        max_grad_norm=tr.max_grad_norm,
        per_device_train_batch_size=b.batch_size or hw.per_device_batch_size,
        per_device_eval_batch_size=hw.eval_batch_size,
        gradient_accumulation_steps=b.accumulation_steps or hw.gradient_accumulation_steps,
        bf16=hw.precision == "bf16",
        fp16=hw.precision == "fp16",
        use_cpu=use_cpu,
        ddp_backend="gloo" if use_cpu and dist.world_size() > 1 else None,
        dataloader_num_workers=hw.dataloader_workers,
        seed=b.seed,
        logging_steps=tr.logging_steps,
        logging_first_step=True,
        save_strategy="steps",
        save_steps=tr.save_steps,
        save_total_limit=tr.save_total_limit,
        **_eval_arguments(cfg.eval, evaluated, metric),
        train_sampling_strategy="group_by_length" if tr.group_by_length else "random",
        report_to="none",
        disable_tqdm=False,
        remove_unused_columns=False,
        # A stage whose losses read only features leaves the student's head without gradients.
        ddp_find_unused_parameters=not stage.objective.reads_logits,
    )


def run_stage(stage: Stage, ws) -> dict:
    """Train the model ``stage`` names against its teacher source on its data view; return the stage's record for
    results.json. ``ws`` (``workspace.Workspace``) is the run's context: config, run dir, device, W&B run,
    resume, and the run's models, sources and data views. With ``eval.every`` the stage is evaluated as it
    trains; with ``eval.keep=best`` it ends on its best checkpoint. Raises ``TrainingDiverged`` on a
    non-finite loss or gradient norm (see ``train.nonfinite_patience``)."""
    from distillkit.teachers import output_cache as teacher_cache
    from distillkit.training.trainer import DistillationTrainer, NonFiniteGuard

    cfg, task = ws.cfg, ws.plan.kind
    model, source, train_set = ws.model(stage), ws.source(stage), ws.train_data(stage)
    ckpt_dir = ws.run_dir / "checkpoints" / stage.name
    evaluated = evaluates(cfg.eval, stage) and ws.eval_set is not None
    args = training_arguments(cfg, stage, ckpt_dir, ws.use_cpu, evaluated, task.checkpoint_metric)
    augment = batch_augmenter(cfg.augmentation, stage, ws.tokenizer)
    # args.device first: it joins the process group, which a sharded cache build needs
    source, train_set, cached = teacher_cache.prepare(
        stage, source, train_set, ws, args.device, cfg.hardware.eval_batch_size
    )
    guard = NonFiniteGuard(
        stage.name,
        cfg.train.nonfinite_patience,
        divergence_fix(cfg, stage),
        ignore_grad_norm=cfg.hardware.precision == "fp16",
    )
    trainer = DistillationTrainer(
        model=model,
        args=args,
        train_dataset=train_set,
        data_collator=ws.collator,
        processing_class=ws.tokenizer,
        eval_dataset=ws.eval_set if evaluated else None,
        compute_metrics=task.compute_metrics(model.config) if evaluated else None,
        objective=stage.objective,
        source=source,
        layer_learning_rate=stage.budget.layer_learning_rate,
        warmup_ratio=cfg.train.warmup_ratio,
        guard=guard,
        augment=augment,
        on_policy=task.on_policy() if stage.objective.rollout is not None else None,
        callbacks=_callbacks(cfg.eval, stage, ws.run_dir, ws.wandb_run if args.should_save else None, evaluated),
    )
    checkpoint = last_checkpoint(ckpt_dir) if ws.resume else None
    if checkpoint:
        log.info("[%s] resuming from %s", stage.name, checkpoint)
    log.info("[%s] %s", stage.name, stage.objective.formula())
    if source is not None:
        log.info("[%s] teacher: %s", stage.name, source.describe())
    if trainer.augment is not None:
        log.info("[%s] online augmentation: %s", stage.name, trainer.augment.describe())
    if cfg.eval.every is not None and not evaluated and not stage.trains_teacher:
        log.info(
            "[%s] not evaluated during training: its loss does not read the logits, so its accuracy says "
            "nothing about it (eval.every applies to the stages that train the head)",
            stage.name,
        )
    started = time.time()
    output = trainer.train(resume_from_checkpoint=checkpoint)
    trainer.check_weights()
    best = trainer.load_best() if evaluated and cfg.eval.keep == "best" else None
    if best:
        log.info(
            "[%s] ends on its best checkpoint: step %d, eval %s %.4f",
            stage.name,
            best["step"],
            task.checkpoint_metric,
            best["value"],
        )
    record = _record(
        stage,
        trainer,
        output,
        train_set,
        time.time() - started,
        checkpoint,
        best,
        evaluated,
        source,
        task.checkpoint_metric,
    )
    if cached is not None:
        if cached["used"]:
            cached["saved_s"] = source.saved_s(cached["build_s"])
            if cached["built"]:  # this run ran the teacher over the whole view to fill the entry
                record["teacher_forwards"] += len(train_set)
        record["teacher_cache"] = cached
    return record


def batch_augmenter(aug: AugmentationConfig, stage: Stage, tokenizer):
    """The stage's online augmentation (mixup, cutmix, consistency), or None: never for ``teacher_prep``;
    consistency (a term on the logits) only where the stage has a teacher and its loss reads the logits (not
    FitNets' hints or TinyBERT's intermediate stage); a stage without a teacher keeps mixup/cutmix on its labels."""
    from distillkit.augment.offline import seed_of
    from distillkit.augment.online import BatchAugmenter

    wanted = online_options(aug.online, stage)
    if not wanted:
        return None
    augmenter = BatchAugmenter(aug, tokenizer, seed_of(aug, stage.budget.seed), dist.rank())
    if "consistency" not in wanted:
        augmenter.consistency = None
    return augmenter


def _callbacks(ev: EvalConfig, stage: Stage, run_dir: Path, wandb_run, evaluated: bool) -> list:
    from transformers import EarlyStoppingCallback

    from distillkit.training.trainer import MetricsCallback, SaveBestCallback

    callbacks = [MetricsCallback(stage.name, run_dir / "metrics.jsonl", wandb_run)]
    if evaluated and ev.keep == "best":
        callbacks.append(SaveBestCallback())
    if evaluated and ev.early_stopping_patience is not None:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=ev.early_stopping_patience))
    return callbacks


def _record(
    stage: Stage, trainer, output, train_set, wall: float, resumed_from, best, evaluated, source, metric: str
) -> dict:
    """The stage's record in results.json; ``eval_accuracy`` holds the task's checkpoint ``metric`` (the
    schema's name, from when accuracy was the only one)."""
    key = f"eval_{metric}"
    terms, evals = {}, [r for r in trainer.state.log_history if key in r]
    for record in reversed(trainer.state.log_history):
        terms = {k.split("/", 1)[1]: v for k, v in record.items() if k.startswith("loss/")}
        if terms:
            break
    max_steps, world = trainer.state.max_steps, trainer.args.world_size
    return {
        "name": stage.name,
        "cached": False,
        "model": stage.student.model,
        "objective": stage.objective.name,
        "formula": stage.objective.formula(),
        "teacher": source.describe() if source is not None else None,
        "steps": trainer.state.global_step,
        "share": stage.budget.share,  # of the run's budget; null: pinned by method.<stage>.epochs (on top of it)
        "planned_steps": max_steps,
        "epochs": stage.budget.epochs,
        "examples": trainer.counts["examples"] * world,  # training examples the stage's steps consumed
        "teacher_forwards": trainer.counts["teacher_forwards"] * world,  # examples the teacher source's models ran on
        "train_examples": len(train_set),
        "wall_time_s": round(wall, 3),
        "train_samples_per_s": output.metrics.get("train_samples_per_second"),
        "train_loss": output.metrics.get("train_loss"),
        "final_loss_terms": terms,
        "resumed_from": resumed_from,
        "checkpoint": f"best (step {best['step']}, {metric} {best['value']:.4f})" if best else "last",
        "best_step": best["step"] if best else None,
        "eval_accuracy": best["value"] if best else (evals[-1][key] if evals else None),
        "evaluations": len(evals),
        "stopped_early": bool(evaluated and trainer.state.global_step < max_steps),
    }


# ------------------------------------------------------------------- finished stages, for resume
