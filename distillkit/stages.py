"""A run is an ordered list of stages; each trains one model with one method for one budget.

Today a run has at most two: ``teacher_prep`` (the teacher fine-tuned on the task with labels alone,
when it has no head fitted to the data; cached) and ``distill`` (the student trained by the chosen
method). Multi-phase methods (TinyBERT, FitNets, born-again chains) add stages to ``plan_stages``.
Each stage checkpoints under ``<run>/checkpoints/<stage>/`` and resumes from there.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from distillkit.config import NoneMethodConfig, RunConfig
from distillkit.methods import Method, build_method

log = logging.getLogger(__name__)


@dataclass
class Stage:
    name: str
    method: Method
    epochs: float
    learning_rate: float
    seed: int
    max_steps: int = -1


def plan_stages(cfg: RunConfig, prepare_teacher: bool) -> list[Stage]:
    stages = []
    if prepare_teacher:
        t = cfg.teacher
        stages.append(Stage("teacher_prep", build_method(NoneMethodConfig()), t.prepare_epochs,
                            t.prepare_learning_rate, t.prepare_seed))
    stages.append(Stage("distill", build_method(cfg.method), cfg.train.epochs, cfg.train.learning_rate, cfg.seed,
                        cfg.train.max_steps))
    return stages


def last_checkpoint(directory: Path) -> str | None:
    """The newest complete ``checkpoint-N`` under ``directory`` (Trainer writes trainer_state.json last)."""
    found = [p for p in directory.glob("checkpoint-*") if (p / "trainer_state.json").exists()]
    if not found:
        return None
    return str(max(found, key=lambda p: int(p.name.split("-")[1])))


def training_arguments(cfg: RunConfig, stage: Stage, output_dir: Path, use_cpu: bool):
    from transformers import TrainingArguments

    hw, tr = cfg.hardware, cfg.train
    return TrainingArguments(
        output_dir=str(output_dir),
        num_train_epochs=stage.epochs,
        max_steps=stage.max_steps,
        learning_rate=stage.learning_rate,
        weight_decay=tr.weight_decay,
        warmup_steps=tr.warmup_ratio,  # a float < 1 is a ratio of the total steps
        lr_scheduler_type=tr.lr_scheduler,
        max_grad_norm=tr.max_grad_norm,
        per_device_train_batch_size=hw.per_device_batch_size,
        per_device_eval_batch_size=hw.eval_batch_size,
        gradient_accumulation_steps=hw.gradient_accumulation_steps,
        bf16=hw.precision == "bf16",
        fp16=hw.precision == "fp16",
        use_cpu=use_cpu,
        ddp_backend="gloo" if use_cpu and int(os.environ.get("WORLD_SIZE", 1)) > 1 else None,
        dataloader_num_workers=hw.dataloader_workers,
        seed=stage.seed,
        logging_steps=tr.logging_steps,
        logging_first_step=True,
        save_strategy="steps",
        save_steps=tr.save_steps,
        save_total_limit=tr.save_total_limit,
        eval_strategy="no",
        train_sampling_strategy="group_by_length" if tr.group_by_length else "random",
        report_to="none",
        disable_tqdm=False,
        remove_unused_columns=False,
        ddp_find_unused_parameters=False,
    )


def run_stage(stage: Stage, cfg: RunConfig, model, teacher, train_set, collator, tokenizer, run_dir: Path,
              use_cpu: bool, wandb_run, resume: bool) -> dict:
    """Train ``model`` for ``stage``; return the stage's record for results.json."""
    from distillkit.trainer import DistillationTrainer, MetricsCallback

    ckpt_dir = run_dir / "checkpoints" / stage.name
    args = training_arguments(cfg, stage, ckpt_dir, use_cpu)
    trainer = DistillationTrainer(
        model=model, args=args, train_dataset=train_set, data_collator=collator, processing_class=tokenizer,
        method=stage.method, teacher=teacher,
        callbacks=[MetricsCallback(stage.name, run_dir / "metrics.jsonl", wandb_run if args.should_save else None)],
    )
    checkpoint = last_checkpoint(ckpt_dir) if resume else None
    if checkpoint:
        log.info("[%s] resuming from %s", stage.name, checkpoint)
    log.info("[%s] %s", stage.name, stage.method.formula())
    started = time.time()
    output = trainer.train(resume_from_checkpoint=checkpoint)
    terms = {}
    for record in reversed(trainer.state.log_history):
        terms = {k.split("/", 1)[1]: v for k, v in record.items() if k.startswith("loss/")}
        if terms:
            break
    return {
        "name": stage.name,
        "cached": False,
        "method": stage.method.name,
        "formula": stage.method.formula(),
        "steps": trainer.state.global_step,
        "epochs": stage.epochs,
        "wall_time_s": round(time.time() - started, 3),
        "train_samples_per_s": output.metrics.get("train_samples_per_second"),
        "train_loss": output.metrics.get("train_loss"),
        "final_loss_terms": terms,
        "resumed_from": checkpoint,
    }
