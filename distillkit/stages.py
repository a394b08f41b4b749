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
import math
import os
import time
from pathlib import Path

from distillkit.config import NoneMethodConfig, RunConfig
from distillkit.llm_config import SFTMethodConfig
from distillkit.errors import require
from distillkit.methods import build_objective, build_stages
from distillkit.models import LAYER_KEY
from distillkit.objectives import Dims
from distillkit.stage_types import Budget, DataView, Stage, StudentSpec

log = logging.getLogger(__name__)


def teacher_prep_stage(cfg: RunConfig) -> Stage:
    """Fine-tune the teacher group's model on the labels; its result is cached content-addressed."""
    t = cfg.teacher
    labels_only = SFTMethodConfig() if cfg.task.name == "causal_lm" else NoneMethodConfig()  # the task's own targets
    return Stage("teacher_prep", build_objective(labels_only), teacher=None,
                 student=StudentSpec("teacher", "teacher"), data=DataView(augment=False),
                 budget=Budget(t.prepare_epochs, t.prepare_learning_rate, t.prepare_layer_learning_rate,
                               "teacher.prepare_learning_rate", "teacher.prepare_layer_learning_rate",
                               seed=t.prepare_seed),
                 cached=True)


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
    require(any(term.weight != 0 for term in stage.objective.terms), "method", method,
            f"gives every loss term of its stage {stage.name!r} "
            f"({', '.join(term.name for term in stage.objective.terms)}) a weight of 0, so the stage would train "
            "nothing.", "give at least one of the stage's loss weights a positive value.")
    teacher = stage.teacher
    if cfg.teacher.name == "none":
        uses = ("distils from the prepared teacher" if teacher is not None and teacher.kind == "prepared" else
                f"initialises its model from teacher layers (student.init={cfg.student.init})"
                if stage.student.build in ("student", "depth") and cfg.student.path is None
                and cfg.student.init != "random" else None)
        require(uses is None, "teacher", "none", f"but method={method}'s stage {stage.name!r} {uses}.",
                "pick a teacher (e.g. teacher=embedded-bert-12l), or a method that needs none (born_again with "
                "method.gen0=labels, self_kd, snapshot_ensemble, ema_teacher) and student.init=random.")
    if teacher is not None and teacher.kind in ("snapshots", "ensemble"):
        spec = stage.objective.teacher_features
        require(not (spec.hidden_states or spec.attentions or spec.hooks), "method", method,
                f"has stage {stage.name!r} read the teacher's features, and its teacher ({teacher.describe()}) gives "
                "mean predictions, logits only.", "use a logit method for it (e.g. method.inner.name=kd).")
    if teacher is not None and teacher.kind == "snapshots":
        _check_snapshots(cfg, stage, dims)
    if stage.data.unlabeled == "generated" or (stage.data.unlabeled == "auto" and cfg.data.source != "synthetic"):
        require(cfg.data.source == "synthetic", "method.unlabeled", stage.data.unlabeled, f"needs unlabeled texts, "
                f"and data={cfg.data.name} has no generator to make them.",
                "use method.unlabeled=train (the training texts, labels hidden) or a text file of unlabeled examples.")


def optimizer_steps(cfg: RunConfig, stage: Stage, examples: int) -> tuple[int, int]:
    """(steps per epoch, total steps) of ``stage`` on ``examples`` training examples with this hardware."""
    hw = cfg.hardware
    batch = (stage.budget.batch_size or hw.per_device_batch_size) * hw.devices
    per_epoch = max(1, math.ceil(examples / batch) // (stage.budget.accumulation_steps or hw.gradient_accumulation_steps))
    total = stage.budget.max_steps if stage.budget.max_steps > 0 else math.ceil(stage.budget.epochs * per_epoch)
    return per_epoch, total


def _check_snapshots(cfg: RunConfig, stage: Stage, dims: Dims) -> None:
    """K snapshots must fit the budget: K ≤ the snapshots the stage takes before its last step."""
    k, every = stage.teacher.options["k"], stage.teacher.options["every"]
    per_epoch, total = optimizer_steps(cfg, stage, dims.train_examples)
    possible = (math.ceil(total / per_epoch) - 1) if every == "epoch" else (total - 1) // every
    require(k <= possible, "method.k" if k > 1 else "method.every", k if k > 1 else every,
            f"asks for {k} snapshot(s) taken {'each epoch' if every == 'epoch' else f'every {every} steps'}, but the "
            f"stage's {total} optimizer steps ({per_epoch} per epoch) leave room for {max(possible, 0)} before its "
            "last step, so the teacher would never be complete.",
            "take snapshots more often (e.g. method.every=" + str(max(1, total // (2 * k + 2))) + "), lower method.k, "
            "or train longer (train.epochs).")


def last_checkpoint(directory: Path) -> str | None:
    """The newest complete ``checkpoint-N`` under ``directory`` (Trainer writes trainer_state.json last)."""
    found = [p for p in directory.glob("checkpoint-*") if (p / "trainer_state.json").exists()]
    if not found:
        return None
    return str(max(found, key=lambda p: int(p.name.split("-")[1])))


def saved_shapes(path: Path) -> dict[str, tuple] | None:
    """Parameter name → shape of the student saved at ``path`` (a Trainer checkpoint folder, or a finished
    stage's ``done/``), read without loading the weights where the format allows; None if there is none."""
    if (path / "model.safetensors").is_file():
        from safetensors import safe_open

        with safe_open(str(path / "model.safetensors"), "pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    if (path / "student.pt").is_file():
        import torch

        return {k: tuple(v.shape) for k, v in torch.load(path / "student.pt", map_location="cpu",
                                                         weights_only=True).items()}
    return None


def checkpoint_mismatch(model, path: Path) -> str | None:
    """How the student saved at ``path`` differs from ``model`` (parameters it lacks or has extra, shapes), or
    None when it fits. The Trainer loads checkpoints non-strictly, so a resumed run whose config no longer
    describes its checkpoints would otherwise train a half-loaded model without a word."""
    saved = saved_shapes(path)
    if saved is None:
        return None
    own = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    extra = sorted(set(saved) - set(own))
    missing = sorted(k for k in set(own) - set(saved) if LAYER_KEY.search(k))  # tied heads may be left out
    shapes = sorted(k for k in set(own) & set(saved) if own[k] != saved[k])
    problems = [f"{label} {names[0]}" + (f" and {len(names) - 1} more" if len(names) > 1 else "")
                for label, names in (("has no", missing), ("has an unexpected", extra),
                                     ("has another shape for", shapes)) if names]
    if shapes:
        problems[-1] += f" ({saved[shapes[0]]} saved, {own[shapes[0]]} now)"
    return "; ".join(problems) or None



def evaluates(cfg: RunConfig, stage: Stage) -> bool:
    """Whether ``stage`` is evaluated during training: student stages whose loss reads the logits. A stage
    that trains only features (FitNets' hints, TinyBERT's intermediate, MiniLM's relations) leaves the head
    untouched, so its accuracy says nothing about the stage; ``teacher_prep`` is cached under a key that
    eval settings are no part of, and its accuracy is in the report anyway."""
    return cfg.eval.every is not None and not stage.trains_teacher and stage.objective.reads_logits


def _eval_arguments(cfg: RunConfig, evaluated: bool) -> dict:
    """TrainingArguments for evaluation during training (none when the stage is not evaluated)."""
    ev = cfg.eval
    if not evaluated:
        return {"eval_strategy": "no"}
    args = {"eval_strategy": "epoch"} if ev.every == "epoch" else {"eval_strategy": "steps", "eval_steps": ev.every}
    if ev.keep == "best" or ev.early_stopping_patience is not None:
        args.update(metric_for_best_model="accuracy", greater_is_better=True)
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
    fixes.append(f"clip gradients harder, e.g. train.max_grad_norm={cfg.train.max_grad_norm / 4:g} "
                 f"(now {cfg.train.max_grad_norm:g})")
    return "; ".join(fixes) + "; then start the run again."


def training_arguments(cfg: RunConfig, stage: Stage, output_dir: Path, use_cpu: bool, evaluated: bool = False):
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
        ddp_backend="gloo" if use_cpu and int(os.environ.get("WORLD_SIZE", 1)) > 1 else None,
        dataloader_num_workers=hw.dataloader_workers,
        seed=b.seed,
        logging_steps=tr.logging_steps,
        logging_first_step=True,
        save_strategy="steps",
        save_steps=tr.save_steps,
        save_total_limit=tr.save_total_limit,
        **_eval_arguments(cfg, evaluated),
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
    from distillkit import teacher_cache
    from distillkit.trainer import DistillationTrainer, NonFiniteGuard, classification_metrics_fn

    cfg = ws.cfg
    model, source, train_set = ws.model(stage), ws.source(stage), ws.train_data(stage)
    ckpt_dir = ws.run_dir / "checkpoints" / stage.name
    evaluated = evaluates(cfg, stage) and ws.eval_set is not None
    args = training_arguments(cfg, stage, ckpt_dir, ws.use_cpu, evaluated)
    augment = batch_augmenter(cfg, stage, ws)
    # args.device first: it joins the process group, which a sharded cache build needs
    source, train_set, cached = teacher_cache.prepare(stage, source, train_set, ws, args.device,
                                                      cfg.hardware.eval_batch_size)
    guard = NonFiniteGuard(stage.name, cfg.train.nonfinite_patience, divergence_fix(cfg, stage),
                           ignore_grad_norm=cfg.hardware.precision == "fp16")
    trainer = DistillationTrainer(
        model=model, args=args, train_dataset=train_set, data_collator=ws.collator, processing_class=ws.tokenizer,
        eval_dataset=ws.eval_set if evaluated else None,
        compute_metrics=classification_metrics_fn(model.config.num_labels) if evaluated else None,
        objective=stage.objective, source=source, layer_learning_rate=stage.budget.layer_learning_rate,
        warmup_ratio=cfg.train.warmup_ratio, guard=guard, augment=augment,
        callbacks=_callbacks(cfg, stage, ws.run_dir, ws.wandb_run if args.should_save else None, evaluated),
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
        log.info("[%s] not evaluated during training: its loss does not read the logits, so its accuracy says "
                 "nothing about it (eval.every applies to the stages that train the head)", stage.name)
    started = time.time()
    output = trainer.train(resume_from_checkpoint=checkpoint)
    trainer.check_weights()
    best = trainer.load_best() if evaluated and cfg.eval.keep == "best" else None
    if best:
        log.info("[%s] ends on its best checkpoint: step %d, eval accuracy %.4f", stage.name, best["step"],
                 best["accuracy"])
    record = _record(stage, trainer, output, train_set, time.time() - started, checkpoint, best, evaluated, source)
    if cached is not None:
        if cached["used"]:
            cached["saved_s"] = source.saved_s(cached["build_s"])
        record["teacher_cache"] = cached
    return record


def batch_augmenter(cfg: RunConfig, stage: Stage, ws):
    """The stage's online augmentation (mixup, cutmix, consistency), or None: never for ``teacher_prep``;
    consistency (a term on the logits) only where the stage has a teacher and its loss reads the logits (not
    FitNets' hints or TinyBERT's intermediate stage); a stage without a teacher keeps mixup/cutmix on its labels."""
    from distillkit.augment.offline import seed_of
    from distillkit.augment.online import BatchAugmenter

    aug = cfg.augmentation
    wanted = online_options(cfg, stage)
    if not wanted:
        return None
    augmenter = BatchAugmenter(aug, ws.tokenizer, seed_of(aug, stage.budget.seed), int(os.environ.get("RANK", 0)))
    if "consistency" not in wanted:
        augmenter.consistency = None
    return augmenter


def online_options(cfg: RunConfig, stage: Stage) -> list[str]:
    """The online augmentation options that reach ``stage`` (see ``batch_augmenter``)."""
    if stage.trains_teacher:
        return []
    consistency = stage.teacher is not None and stage.objective.reads_logits
    return [name for name in cfg.augmentation.online if name != "consistency" or consistency]


def _callbacks(cfg: RunConfig, stage: Stage, run_dir: Path, wandb_run, evaluated: bool) -> list:
    from transformers import EarlyStoppingCallback

    from distillkit.trainer import MetricsCallback, SaveBestCallback

    callbacks = [MetricsCallback(stage.name, run_dir / "metrics.jsonl", wandb_run)]
    if evaluated and cfg.eval.keep == "best":
        callbacks.append(SaveBestCallback())
    if evaluated and cfg.eval.early_stopping_patience is not None:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=cfg.eval.early_stopping_patience))
    return callbacks


def _record(stage: Stage, trainer, output, train_set, wall: float, resumed_from, best, evaluated, source) -> dict:
    terms, evals = {}, [r for r in trainer.state.log_history if "eval_accuracy" in r]
    for record in reversed(trainer.state.log_history):
        terms = {k.split("/", 1)[1]: v for k, v in record.items() if k.startswith("loss/")}
        if terms:
            break
    max_steps = trainer.state.max_steps
    return {
        "name": stage.name,
        "cached": False,
        "model": stage.student.model,
        "objective": stage.objective.name,
        "formula": stage.objective.formula(),
        "teacher": source.describe() if source is not None else None,
        "steps": trainer.state.global_step,
        "epochs": stage.budget.epochs,
        "train_examples": len(train_set),
        "wall_time_s": round(wall, 3),
        "train_samples_per_s": output.metrics.get("train_samples_per_second"),
        "train_loss": output.metrics.get("train_loss"),
        "final_loss_terms": terms,
        "resumed_from": resumed_from,
        "checkpoint": f"best (step {best['step']}, accuracy {best['accuracy']:.4f})" if best else "last",
        "best_step": best["step"] if best else None,
        "eval_accuracy": best["accuracy"] if best else (evals[-1]["eval_accuracy"] if evals else None),
        "evaluations": len(evals),
        "stopped_early": bool(evaluated and trainer.state.global_step < max_steps),
    }


# ------------------------------------------------------------------- finished stages, for resume
def _done_dir(run_dir: Path, stage: Stage) -> Path:
    return run_dir / "checkpoints" / stage.name / "done"


def mark_done(stage: Stage, model, record: dict, run_dir: Path) -> None:
    """Keep what the next stages start from (the stage's model weights, its adapters) and the stage's
    record. Written to a temporary directory and renamed, so a half-written one is never taken as done."""
    import json
    import shutil

    import torch

    from distillkit.trainer import ADAPTERS_FILE

    final = _done_dir(run_dir, stage)
    tmp = final.with_name("done.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    torch.save(model.state_dict(), tmp / "student.pt")
    torch.save(stage.objective.adapters.state_dict(), tmp / ADAPTERS_FILE)
    (tmp / "record.json").write_text(json.dumps(record, default=str))
    os.replace(tmp, final)


def load_done(stage: Stage, model, run_dir: Path) -> dict | None:
    """If ``stage`` finished in an earlier attempt of this run: load its student weights and adapters into
    ``model`` and the objective, and return its record (marked ``resumed: "done"``); else None."""
    import json

    import torch

    from distillkit.trainer import ADAPTERS_FILE

    final = _done_dir(run_dir, stage)
    if not (final / "record.json").exists():
        return None
    model.load_state_dict(torch.load(final / "student.pt", map_location="cpu", weights_only=True))
    stage.objective.adapters.load_state_dict(torch.load(final / ADAPTERS_FILE, map_location="cpu",
                                                     weights_only=True))
    record = json.loads((final / "record.json").read_text())
    record["resumed_from"] = "done"
    log.info("[%s] finished in an earlier attempt: skipped (weights from %s)", stage.name, final)
    return record
