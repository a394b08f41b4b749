"""One run, start to finish: check everything, prepare the teacher, distil, evaluate, report.

``run(cfg, ctx)`` is what the Hydra entry point, the DDP workers and the tests call. The order is the
contract: every check that can fail on the configuration, the data fields, the model configs and the
tokenizers runs before the first weight is loaded or trained.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from distillkit import cache, models
from distillkit.config import RunConfig
from distillkit.errors import require
from distillkit.data import tokenize_text_file
from distillkit.method_types import Dims
from distillkit.stages import load_done, mark_done, plan_stages, run_stage

log = logging.getLogger("distillkit")


@dataclass
class RunContext:
    """Where and as what this run is recorded (from Hydra's runtime, or set by tests)."""

    output_dir: Path
    job_name: str = "default"
    overrides: tuple[str, ...] = ()
    group: str | None = None  # the sweep's name in a multirun
    resume: bool = False


def _rank() -> tuple[int, int, int]:
    return int(os.environ.get("RANK", 0)), int(os.environ.get("LOCAL_RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def _barrier() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()


def resolve_device(cfg: RunConfig) -> tuple[bool, torch.device]:
    """(use_cpu, device) for this process; a GPU request without a GPU fails here, not mid-run."""
    hw = cfg.hardware
    gpus = torch.cuda.device_count()
    if hw.accelerator == "gpu":
        require(gpus > 0, "hardware.accelerator", "gpu", "was requested but torch sees no CUDA device.",
                "use hardware=cpu (or hardware=auto), or check CUDA_VISIBLE_DEVICES and the torch build.")
    use_cpu = hw.accelerator == "cpu" or gpus == 0
    if not use_cpu and hw.devices > 1:
        require(hw.devices <= gpus, "hardware.devices", hw.devices, f"exceeds the {gpus} visible GPU(s).",
                f"use hardware.devices={gpus} or fewer.")
    require(not (use_cpu and hw.precision == "fp16"), "hardware.precision", "fp16", "needs a GPU, and this run uses "
            "the CPU.", "use hardware.precision=bf16 or fp32 on the CPU.")
    _, local_rank, _ = _rank()
    return use_cpu, torch.device("cpu") if use_cpu else torch.device("cuda", local_rank)


def _tokenizer(cfg: RunConfig, task, root: Path):
    """The teacher's tokenizer; for a teacher built from a config, a WordPiece trained on the task."""
    from transformers import AutoTokenizer

    from distillkit.data import train_wordpiece

    if cfg.teacher.path is not None:
        return models.load_tokenizer("teacher.path", cfg.teacher.path, cfg.teacher.revision,
                                     cfg.teacher.trust_remote_code)
    spec = {"data": dataclasses.asdict(cfg.data), "vocab_size": cfg.teacher.arch.vocab_size}
    final = cache.entry_dir(root, "tokenizers", spec)
    if not final.exists():
        texts = list(task.train["text"]) + (list(task.train["text_pair"]) if task.has_pair else [])
        with cache.building(final) as tmp:
            train_wordpiece(texts, cfg.teacher.arch.vocab_size, tmp)
            cache.write_spec(tmp, spec)
    return AutoTokenizer.from_pretrained(final)


def _teacher_spec(cfg: RunConfig, task, tokenizer, world: int) -> dict:
    """Everything that determines a prepared teacher: its cache key."""
    tr = cfg.train
    return {
        "teacher": {k: v for k, v in dataclasses.asdict(cfg.teacher).items() if k != "name"},
        "data": {k: v for k, v in dataclasses.asdict(cfg.data).items() if k != "name"},
        "labels": task.label_names,
        "tokenizer": len(tokenizer),
        "global_batch": cfg.hardware.per_device_batch_size * cfg.hardware.gradient_accumulation_steps * world,
        "precision": cfg.hardware.precision,
        "train": [tr.weight_decay, tr.warmup_ratio, tr.lr_scheduler, tr.max_grad_norm],
    }


def _versions() -> dict:
    import transformers

    from distillkit import __version__

    return {"distillkit": __version__, "torch": torch.__version__, "transformers": transformers.__version__}


@dataclass
class Plan:
    """Everything decided and checked before the first weight is loaded or trained."""

    task: "TaskData"  # noqa: F821
    tokenizer: object
    teacher_config: object
    student_config: object
    student_layers: list[int] | None
    prepare_teacher: bool
    stages: list  # [teacher_prep] + the method's stages
    use_cpu: bool
    device: torch.device
    cache_root: Path


def make_plan(cfg: RunConfig) -> Plan:
    """The checks: device, data fields, tokenizers, model configs, layer map. Raises ConfigError."""
    import datasets

    from distillkit.data import load_task

    datasets.disable_progress_bars()
    use_cpu, device = resolve_device(cfg)
    root = cache.cache_root(cfg.cache_dir)
    task = load_task(cfg.data)
    tokenizer = _tokenizer(cfg, task, root)
    t_config, head_fitted = models.teacher_config(cfg.teacher, tokenizer, task.label_names)
    s_config, layers = models.student_config(cfg.student, t_config, tokenizer, task.label_names)
    if cfg.student.path is not None:
        models.check_tokenizers(tokenizer, models.load_tokenizer("student.path", cfg.student.path), cfg.student.path)
    require(head_fitted or cfg.teacher.prepare != "never", "teacher.prepare", "never",
            f"but {cfg.teacher.path} has no classifier for these {task.num_labels} labels.",
            "use teacher.prepare=auto to fine-tune it on the task first, or give a fine-tuned checkpoint.")
    prepare = cfg.teacher.prepare == "always" or (cfg.teacher.prepare == "auto" and not head_fitted)
    dims = Dims.from_configs(s_config, t_config, len(task.train), cfg.pair.layer_map)
    stages = plan_stages(cfg, prepare, dims)
    return Plan(task, tokenizer, t_config, s_config, layers, prepare, stages, use_cpu, device, root)


def _method_stages(plan: Plan) -> list:
    return [s for s in plan.stages if s.name != "teacher_prep"]


def _eager_attention(plan: Plan, *models) -> list:
    """Attention maps exist only under eager attention (sdpa returns none): switch when a stage needs them.
    Returns what to restore afterwards, so evaluation times each model with its usual implementation."""
    needing = [s.name for s in _method_stages(plan) if s.method.needs_attentions]
    before = [(model, model.config._attn_implementation) for model in models]
    if needing:
        log.info("Stage(s) %s read attention maps: teacher and student switched to eager attention "
                 "(slower than sdpa, and needed for output_attentions).", ", ".join(needing))
        for model in models:
            model.set_attn_implementation("eager")
    return before


def _restore_attention(before: list) -> None:
    for model, implementation in before:
        if model.config._attn_implementation != implementation:
            model.set_attn_implementation(implementation)


def _train_student(cfg: RunConfig, plan: Plan, student, teacher, train_set, collator, out: Path, wandb_run,
                   resume: bool) -> list[dict]:
    """The method's stages in order; each finished stage is marked done so a resumed run skips it."""
    rank = _rank()[0]
    stages = _method_stages(plan)
    records = []
    for i, stage in enumerate(stages):
        record = load_done(stage, student, out) if resume else None
        if record is None:
            data = train_set if stage.text_file is None else tokenize_text_file(stage.text_file, plan.tokenizer,
                                                                                 cfg.data.max_length)
            record = run_stage(stage, cfg, student, teacher, data, collator, plan.tokenizer, out, plan.use_cpu,
                               wandb_run, resume)
            if i < len(stages) - 1 and rank == 0:
                mark_done(stage, student, record, out)
            _barrier()
        records.append(record)
    return records


def _prepared_teacher(cfg: RunConfig, plan: Plan, train_set, collator, out: Path, wandb_run, resume: bool):
    """The teacher fitted to the task: from the cache, or trained now (stage teacher_prep) and cached."""
    from transformers import set_seed

    rank, _, world = _rank()
    if not plan.prepare_teacher:
        return models.load_pretrained("teacher.path", cfg.teacher.path, plan.teacher_config, cfg.teacher.revision,
                                      cfg.teacher.trust_remote_code), None
    spec = _teacher_spec(cfg, plan.task, plan.tokenizer, world)
    final = cache.entry_dir(plan.cache_root, "teachers", spec)
    if final.exists():
        log.info("[teacher_prep] using the cached prepared teacher %s", final)
        record = {"name": "teacher_prep", "cached": True, "steps": 0, "wall_time_s": 0.0, "cache_dir": str(final)}
    else:
        set_seed(cfg.teacher.prepare_seed)
        if cfg.teacher.path is None:
            base = models.build_from_config(plan.teacher_config, cfg.teacher.prepare_seed,
                                            cfg.teacher.arch.identity_attention_layers)
        else:
            base = models.load_pretrained("teacher.path", cfg.teacher.path, plan.teacher_config, cfg.teacher.revision,
                                          cfg.teacher.trust_remote_code)
        record = run_stage(plan.stages[0], cfg, base, None, train_set, collator, plan.tokenizer, out, plan.use_cpu,
                           wandb_run, resume)
        if rank == 0:
            with cache.building(final) as tmp:
                models.save_model(base, plan.tokenizer, tmp)
                cache.write_spec(tmp, spec)
        record["cache_dir"] = str(final)
        _barrier()
    return models.load_pretrained("teacher", str(final), None), record


def _results(cfg: RunConfig, ctx: RunContext, plan: Plan, numbers: dict, records: list, started: float,
             started_at: str, n_train: int, n_eval: int) -> dict:
    from distillkit import report

    return {
        "schema_version": report.SCHEMA_VERSION,
        "status": "complete",
        "run": {"name": ctx.job_name, "output_dir": str(ctx.output_dir), "overrides": list(ctx.overrides),
                "method": cfg.method.name, "teacher": cfg.teacher.name, "student": cfg.student.name,
                "data": cfg.data.name, "seed": cfg.seed, "started_at": started_at,
                "finished_at": datetime.datetime.now().isoformat(timespec="seconds"),
                "wall_time_s": round(time.time() - started, 2), "world_size": _rank()[2], "device": str(plan.device),
                "versions": _versions()},
        "task": {"metric": "accuracy", "num_labels": plan.task.num_labels, "label_names": plan.task.label_names,
                 "train_examples": n_train, "eval_examples": n_eval},
        **numbers,
        "stages": records,
        "artifacts": {"student": "student", "metrics": "metrics.jsonl", "config": "config.yaml"},
    }


def run(cfg: RunConfig, ctx: RunContext, plan: Plan | None = None) -> dict | None:
    """Run every stage; on rank 0 write and return the results. Raises ConfigError on bad input."""
    from transformers import DataCollatorWithPadding, set_seed

    from distillkit import evaluate, report, tracking
    from distillkit.data import tokenize

    started, started_at = time.time(), datetime.datetime.now().isoformat(timespec="seconds")
    rank = _rank()[0]
    out = Path(ctx.output_dir)
    plan = plan or make_plan(cfg)
    origin = (f"student layers from teacher layers {plan.student_layers}" if plan.student_layers is not None
              else "student from its checkpoint" if cfg.student.path else "student from scratch (student.init=random)")
    log.info("Plan: %s; %s", " → ".join(s.name for s in plan.stages), origin)
    for stage in _method_stages(plan):
        log.info("Loss [%s]: %s", stage.name, stage.method.formula())
    train_set, eval_set = tokenize(plan.task, plan.tokenizer, cfg.data.max_length)
    collator = DataCollatorWithPadding(plan.tokenizer)
    wandb_run = None
    if rank == 0:
        flat = {**tracking.flatten(cfg), "run.overrides": " ".join(ctx.overrides), "run.job": ctx.job_name}
        wandb_run = tracking.start(cfg.logger, out, ctx.job_name, ctx.group, flat)
    try:
        teacher, record = _prepared_teacher(cfg, plan, train_set, collator, out, wandb_run, ctx.resume)
        records = [record] if record else []
        set_seed(cfg.seed)
        if cfg.student.path is None:
            identity = cfg.teacher.arch.identity_attention_layers if cfg.teacher.arch is not None else 0
            student = models.derive_student(teacher, plan.student_config, plan.student_layers, cfg.seed, identity)
        else:
            student = models.load_pretrained("student.path", cfg.student.path, plan.student_config,
                                             cfg.student.revision, cfg.student.trust_remote_code)
        attention = _eager_attention(plan, teacher, student)
        records += _train_student(cfg, plan, student, teacher, train_set, collator, out, wandb_run, ctx.resume)
        _restore_attention(attention)
        if rank != 0:
            return None
        teacher.to(plan.device)
        student.to(plan.device)
        numbers = evaluate.evaluate_pair(teacher, student, eval_set, collator, plan.task.num_labels, plan.device,
                                         cfg.hardware.eval_batch_size, cfg.eval.latency_batches,
                                         cfg.eval.throughput_batches)
        models.save_model(student, plan.tokenizer, out / "student")
        results = _results(cfg, ctx, plan, numbers, records, started, started_at, len(train_set), len(eval_set))
        report.write_json_atomic(out / "results.json", results)
        clear_checkpoints(out)
        print("\n" + report.format_table(results) + f"\n\nresults: {out / 'results.json'}\nstudent: {out / 'student'}",
              flush=True)
        tracking.finish(wandb_run, report.summary_for_wandb(results))
        wandb_run = None
        return results
    finally:
        tracking.finish(wandb_run, failed=True)  # only reached with a run still open: the run failed


def clear_checkpoints(out: Path) -> None:
    """Checkpoints exist to resume an interrupted run; a completed run no longer needs them."""
    shutil.rmtree(out / "checkpoints", ignore_errors=True)


