"""One run, start to finish: check everything, prepare the teacher, distil, evaluate, report.

``run(cfg, ctx)`` is what the Hydra entry point, the DDP workers and the tests call. The order is the
contract: every check that can fail on the configuration, the data fields, the model configs and the
tokenizers runs before the first weight is loaded or trained.
"""

from __future__ import annotations

import contextlib
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
from distillkit.context import RunContext  # noqa: F401 (re-exported: tests and launch import it from here)
from distillkit.errors import require
from distillkit.data import tokenize_text_file
from distillkit.method_types import Dims
from distillkit.stages import checkpoint_mismatch, last_checkpoint, load_done, mark_done, plan_stages, run_stage

log = logging.getLogger("distillkit")


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
    spec = {"data": _data_spec(cfg, root), "vocab_size": cfg.teacher.arch.vocab_size}
    final = cache.entry_dir(root, "tokenizers", spec)
    with cache.locked(final):
        if not final.exists():
            texts = list(task.train["text"]) + (list(task.train["text_pair"]) if task.has_pair else [])
            with cache.building(final) as tmp:
                train_wordpiece(texts, cfg.teacher.arch.vocab_size, tmp)
                cache.write_spec(tmp, spec)
    return AutoTokenizer.from_pretrained(final)


def _data_spec(cfg: RunConfig, root: Path) -> dict:
    """The data settings and, for local files and dataset directories, their content digests: an entry built
    from a file is never reused after the file's text changes (the path alone would say nothing)."""
    spec = {k: v for k, v in dataclasses.asdict(cfg.data).items() if k != "name"}
    local = [cfg.data.train_file, cfg.data.eval_file] if cfg.data.source == "local" else [cfg.data.path]
    spec["content"] = {str(p): cache.file_digest(root, p) for p in local if p and Path(p).exists()}
    return spec


# TrainingArguments that do not change the prepared weights: where and how often the run writes and logs,
# and how the work is spread over processes (the recipe's global batch stands in for the batch fields).
_NOT_RECIPE = ("output_dir", "logging", "log_", "save_", "report_to", "disable_tqdm", "dataloader_", "ddp_",
               "use_cpu", "per_device_", "gradient_accumulation_steps", "run_name", "push_to_hub", "hub_",
               "resume_from_checkpoint", "local_rank", "eval_", "per_gpu", "overwrite_output_dir", "print_")


def _teacher_spec(cfg: RunConfig, plan: "Plan", stage) -> dict:
    """Everything that determines a prepared teacher, its cache key: the teacher, the data (by content), the
    labels and tokenizer, and every setting that reaches its training, derived from the stage's own
    TrainingArguments so a setting added later cannot be forgotten. Hardware-free: the global batch is
    ``teacher.prepare_batch_size`` whatever the process count, so every DDP size reuses one teacher."""
    from distillkit.stages import training_arguments

    args = training_arguments(cfg, stage, plan.cache_root / "unused", plan.use_cpu).to_dict()
    recipe = {k: v for k, v in args.items() if not k.startswith(_NOT_RECIPE)}
    return {
        "teacher": {k: v for k, v in dataclasses.asdict(cfg.teacher).items() if k != "name"},
        "data": _data_spec(cfg, plan.cache_root),
        "labels": plan.task.label_names,
        "tokenizer": cache.entry_key(plan.tokenizer.get_vocab()),
        "stage": {"epochs": stage.epochs, "learning_rate": stage.learning_rate, "seed": stage.seed,
                  "layer_learning_rate": stage.layer_learning_rate, "method": stage.method.formula(),
                  "warmup_ratio": cfg.train.warmup_ratio},  # the trainer turns it into steps itself
        "recipe": recipe,
    }


def _prepare_batching(cfg: RunConfig) -> tuple[int, int]:
    """(per-device batch, accumulation steps) that make ``teacher.prepare_batch_size`` the global batch on this
    many processes, each step no larger than ``hardware.per_device_batch_size``."""
    world = int(os.environ.get("WORLD_SIZE", cfg.hardware.devices))
    batch = cfg.teacher.prepare_batch_size
    require(batch % world == 0, "teacher.prepare_batch_size", batch, f"does not divide over {world} processes.",
            f"use a multiple of {world}, e.g. teacher.prepare_batch_size={max(world, batch - batch % world)}.")
    per_device = batch // world
    steps = next(a for a in range(1, per_device + 1)
                 if per_device % a == 0 and per_device // a <= cfg.hardware.per_device_batch_size)
    return per_device // steps, steps


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
    root = cache.usable_root(cfg.cache_dir)
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
    dims = Dims.from_configs(s_config, t_config, len(task.train), cfg.pair.layer_map, layers)
    stages = plan_stages(cfg, prepare, dims)
    if prepare:
        stages[0].batch_size, stages[0].accumulation_steps = _prepare_batching(cfg)
    for stage in stages:
        require(any(term.weight != 0 for term in stage.method.terms), "method", cfg.method.name,
                f"gives every loss term of its stage {stage.name!r} "
                f"({', '.join(term.name for term in stage.method.terms)}) a weight of 0, so the stage would train "
                "nothing.", "give at least one of the stage's loss weights a positive value.")
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
                   resume: bool, eval_set=None) -> list[dict]:
    """The method's stages in order; each finished stage is marked done so a resumed run skips it."""
    rank = _rank()[0]
    stages = _method_stages(plan)
    records = []
    for i, stage in enumerate(stages):
        if resume:
            _check_resumable(stage, student, out)
        record = load_done(stage, student, out) if resume else None
        if record is None:
            data = train_set if stage.text_file is None else tokenize_text_file(stage.text_file, plan.tokenizer,
                                                                                 cfg.data.max_length)
            record = run_stage(stage, cfg, student, teacher, data, collator, plan.tokenizer, out, plan.use_cpu,
                               wandb_run, resume, eval_set=eval_set)
            if i < len(stages) - 1 and rank == 0:
                mark_done(stage, student, record, out)
            _barrier()
        records.append(record)
    return records


def _check_resumable(stage, student, out: Path) -> None:
    """On resume: the stage's saved student (finished, or its last checkpoint) must fit the model the run's
    config.yaml describes; and say when a stage has nothing saved to continue from."""
    folder = out / "checkpoints" / stage.name
    saved = folder / "done" if (folder / "done" / "record.json").exists() else last_checkpoint(folder)
    if saved is None:
        log.info("[%s] no checkpoint of this stage was saved before the interruption: it starts from its beginning",
                 stage.name)
        return
    mismatch = checkpoint_mismatch(student, Path(saved))
    require(mismatch is None, "resume", str(out), f"has a checkpoint ({saved}) that does not fit the student its "
            f"config.yaml describes: the checkpoint {mismatch}.", "restore the run's original config.yaml, or start "
            "a new run (its checkpoints are under checkpoints/).")


def _prepared_teacher(cfg: RunConfig, plan: Plan, train_set, collator, out: Path, wandb_run, resume: bool):
    """The teacher fitted to the task: from the cache, or trained now (stage teacher_prep) and cached. Of several
    runs that need the same missing teacher, one prepares it and the others wait and reuse it (rank 0 holds the
    entry's lock; under DDP the other processes wait for rank 0 at the barrier)."""
    rank = _rank()[0]
    if not plan.prepare_teacher:
        return models.load_pretrained("teacher.path", cfg.teacher.path, plan.teacher_config, cfg.teacher.revision,
                                      cfg.teacher.trust_remote_code), None
    spec = _teacher_spec(cfg, plan, plan.stages[0])
    final = cache.entry_dir(plan.cache_root, "teachers", spec)
    with cache.locked(final) if rank == 0 else contextlib.nullcontext():
        _barrier()
        if final.exists():
            built = datetime.datetime.fromtimestamp((final / "spec.json").stat().st_mtime).isoformat(timespec="seconds")
            log.info("[teacher_prep] reusing the prepared teacher %s (prepared %s from the same teacher, data "
                     "content, labels, tokenizer and recipe; its key: %s/spec.json)", final, built, final)
            record = {"name": "teacher_prep", "cached": True, "steps": 0, "wall_time_s": 0.0, "cache_dir": str(final)}
        else:
            record = _prepare_teacher(cfg, plan, train_set, collator, out, wandb_run, resume, final, spec)
    return models.load_pretrained("teacher", str(final), None), record


def _prepare_teacher(cfg: RunConfig, plan: Plan, train_set, collator, out: Path, wandb_run, resume: bool,
                     final: Path, spec: dict) -> dict:
    """Stage teacher_prep: fine-tune the teacher on the task and store it as the cache entry ``final``."""
    from transformers import set_seed

    set_seed(cfg.teacher.prepare_seed)
    if cfg.teacher.path is None:
        base = models.build_from_config(plan.teacher_config, cfg.teacher.prepare_seed,
                                        cfg.teacher.arch.identity_attention_layers)
    else:
        base = models.load_pretrained("teacher.path", cfg.teacher.path, plan.teacher_config, cfg.teacher.revision,
                                      cfg.teacher.trust_remote_code)
    record = run_stage(plan.stages[0], cfg, base, None, train_set, collator, plan.tokenizer, out, plan.use_cpu,
                       wandb_run, resume)
    if _rank()[0] == 0:
        with cache.building(final) as tmp:
            models.save_model(base, plan.tokenizer, tmp)
            cache.write_spec(tmp, spec)
    record["cache_dir"] = str(final)
    _barrier()
    return record


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
        wandb_run = tracking.start(cfg.logger, out, ctx.job_name, ctx.group, flat, run_id=ctx.wandb_id)
        if wandb_run is not None and ctx.wandb_id != wandb_run.id:
            ctx.wandb_id = wandb_run.id
            ctx.save()  # a resume continues this W&B run instead of starting a second one
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
        records += _train_student(cfg, plan, student, teacher, train_set, collator, out, wandb_run, ctx.resume,
                                  eval_set=eval_set)
        _restore_attention(attention)
        if rank != 0:
            return None
        teacher.to(plan.device)
        student.to(plan.device)
        numbers = evaluate.evaluate_pair(teacher, student, eval_set, collator, plan.task.num_labels, plan.device,
                                         cfg.hardware.eval_batch_size, cfg.eval.latency_batches,
                                         cfg.eval.throughput_batches, cfg.eval.threads, cfg.eval.repeats,
                                         cfg.eval.warmup)
        models.save_model(student, plan.tokenizer, out / "student")
        results = _results(cfg, ctx, plan, numbers, records, started, started_at, len(train_set), len(eval_set))
        report.write_json_atomic(out / "results.json", results)
        clear_checkpoints(out)
        table = report.format_table(results) + f"\n\nresults: {out / 'results.json'}\nstudent: {out / 'student'}"
        print("\n" + table, flush=True)
        _append_to_log_files(table)
        tracking.finish(wandb_run, report.summary_for_wandb(results))
        wandb_run = None
        return results
    finally:
        tracking.finish(wandb_run, failed=True)  # only reached with a run still open: the run failed


def _append_to_log_files(text: str) -> None:
    """The results table at the end of the run's log file (distillkit.log under Hydra) as printed: written to the
    file handlers directly, so the console does not show it twice."""
    for handler in logging.getLogger().handlers + log.handlers:
        if isinstance(handler, logging.FileHandler):
            handler.acquire()
            try:
                handler.stream.write("\n" + text + "\n")
                handler.flush()
            finally:
                handler.release()


def clear_checkpoints(out: Path) -> None:
    """Checkpoints exist to resume an interrupted run; a completed run no longer needs them."""
    shutil.rmtree(out / "checkpoints", ignore_errors=True)


