"""A run is an ordered list of stages; each trains one model with one method for one budget.

``teacher_prep`` comes first when the teacher has no head fitted to the data (the teacher fine-tuned
with labels alone; cached), then the method's own stages: ``distill`` for single-stage methods, or
e.g. ``hints → distill`` (FitNets), ``[general →] intermediate → prediction`` (TinyBERT),
``relations → finetune`` (MiniLM). Each stage checkpoints under ``<run>/checkpoints/<stage>/``; a
finished stage leaves ``<stage>/done/`` (student weights, adapters, its record), so a resumed run skips
it and continues in the stage it stopped in.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from distillkit.config import NoneMethodConfig, RunConfig
from distillkit.method_types import Dims, Method
from distillkit.methods import build_method, build_stages

log = logging.getLogger(__name__)


@dataclass
class Stage:
    name: str
    method: Method
    epochs: float
    learning_rate: float
    seed: int
    max_steps: int = -1
    text_file: str | None = None  # unlabeled texts to train on instead of the training split
    layer_learning_rate: float | None = None  # the encoder layers' rate, when it differs from learning_rate


def plan_stages(cfg: RunConfig, prepare_teacher: bool, dims: Dims) -> list[Stage]:
    """The run's stages; building the method checks it against the models' shapes (ConfigError)."""
    stages = []
    if prepare_teacher:
        t = cfg.teacher
        stages.append(Stage("teacher_prep", build_method(NoneMethodConfig()), t.prepare_epochs,
                            t.prepare_learning_rate, t.prepare_seed, layer_learning_rate=t.prepare_layer_learning_rate))
    tr = cfg.train
    for s in build_stages(cfg.method, dims):
        stages.append(Stage(s.name, s.method, s.epochs if s.epochs is not None else tr.epochs,
                            s.learning_rate if s.learning_rate is not None else tr.learning_rate, cfg.seed,
                            tr.max_steps, s.text_file, layer_learning_rate=tr.layer_learning_rate))
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
        # A stage whose losses read only features leaves the student's head without gradients.
        ddp_find_unused_parameters=not stage.method.reads_logits,
    )


def run_stage(stage: Stage, cfg: RunConfig, model, teacher, train_set, collator, tokenizer, run_dir: Path,
              use_cpu: bool, wandb_run, resume: bool) -> dict:
    """Train ``model`` for ``stage``; return the stage's record for results.json."""
    from distillkit.trainer import DistillationTrainer, MetricsCallback

    ckpt_dir = run_dir / "checkpoints" / stage.name
    args = training_arguments(cfg, stage, ckpt_dir, use_cpu)
    trainer = DistillationTrainer(
        model=model, args=args, train_dataset=train_set, data_collator=collator, processing_class=tokenizer,
        method=stage.method, teacher=teacher, layer_learning_rate=stage.layer_learning_rate,
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
        "train_examples": len(train_set),
        "wall_time_s": round(time.time() - started, 3),
        "train_samples_per_s": output.metrics.get("train_samples_per_second"),
        "train_loss": output.metrics.get("train_loss"),
        "final_loss_terms": terms,
        "resumed_from": checkpoint,
    }


# ------------------------------------------------------------------- finished stages, for resume
def _done_dir(run_dir: Path, stage: Stage) -> Path:
    return run_dir / "checkpoints" / stage.name / "done"


def mark_done(stage: Stage, model, record: dict, run_dir: Path) -> None:
    """Keep what the next stages start from (student weights, the stage's adapters) and the stage's
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
    torch.save(stage.method.adapters.state_dict(), tmp / ADAPTERS_FILE)
    (tmp / "record.json").write_text(json.dumps(record, default=str))
    os.replace(tmp, final)


def load_done(stage: Stage, model, run_dir: Path) -> dict | None:
    """If ``stage`` finished in an earlier attempt of this run: load its student weights and adapters into
    ``model`` and the method, and return its record (marked ``resumed: "done"``); else None."""
    import json

    import torch

    from distillkit.trainer import ADAPTERS_FILE

    final = _done_dir(run_dir, stage)
    if not (final / "record.json").exists():
        return None
    model.load_state_dict(torch.load(final / "student.pt", map_location="cpu"))
    stage.method.adapters.load_state_dict(torch.load(final / ADAPTERS_FILE, map_location="cpu"))
    record = json.loads((final / "record.json").read_text())
    record["resumed_from"] = "done"
    log.info("[%s] finished in an earlier attempt: skipped (weights from %s)", stage.name, final)
    return record
