"""One run, start to finish: plan, run each stage in order, evaluate, report. Orchestration only.

``run(cfg, ctx)`` is what the Hydra entry point, the DDP workers and the tests call. The order is the
contract: every check that can fail on the configuration, the data fields, the model configs and the
tokenizers runs (``plan.make_plan``) before the first weight is loaded or trained. Each stage gets the run's
``Workspace`` (models, teacher sources, data views); a stage whose model the report cares about (a
generation, an assistant, the student) is evaluated when it ends.
"""

from __future__ import annotations

import datetime
import logging
import shutil
import time
from pathlib import Path

from distillkit import dist
from distillkit import store as cache
from distillkit.config.schema import RunConfig
from distillkit.context import RunContext  # noqa: F401 (re-exported: tests and launch import it from here)
from distillkit.errors import require
from distillkit.models import loading as models
from distillkit.plan import Plan, make_plan, teacher_spec  # noqa: F401 (make_plan re-exported)
from distillkit.stages.checkpoints import load_done, mark_done
from distillkit.stages.runner import run_stage
from distillkit.stages.workspace import Workspace
from distillkit.training.checkpoints import checkpoint_mismatch, last_checkpoint

log = logging.getLogger("distillkit")


def _run_stages(ws: Workspace) -> list[dict]:
    """Every stage in order. A finished stage is marked done (its model's weights, its record) so a resumed run
    skips it; a stage that produces a model of the report is evaluated when it ends."""
    records, stages = [], ws.plan.stages
    for i, stage in enumerate(stages):
        if stage.cached:
            record = _prepared_teacher(ws, stage)
            if record:
                records.append(record)
            continue
        if not stage.trains:  # a generation stage: writes a dataset into the run directory, trains nothing
            records.append(_generation(ws, stage))
            continue
        model = ws.model(stage)
        if ws.resume:
            _check_resumable(stage, model, ws.run_dir)
        record = load_done(stage, model, ws.run_dir) if ws.resume else None
        if record is None:
            record = run_stage(stage, ws)
            if stage.produces and (dist.is_main() or ws.everyone_evaluates):
                model.to(ws.plan.device)
                kind = ws.plan.kind
                record["eval"] = kind.stage_scores(
                    model, ws.source(stage), ws.eval_set, ws.collator, ws.tokenizer, ws.plan.device, ws.cfg
                )
                log.info("[%s] %s", stage.name, kind.describe_scores(record["eval"]))
            if i < len(stages) - 1 and dist.is_main():
                mark_done(stage, model, record, ws.run_dir)
            dist.barrier()
        record["group"], record["produces"] = stage.group, stage.produces
        records.append(record)
    return records


def _generation(ws: Workspace, stage) -> dict:
    """A generation stage: on resume, a dataset it finished is reused (its card holds its record); otherwise it
    runs, and every completion an interrupted attempt paid for comes from the completion cache."""
    import json

    from distillkit.stages.generation import generated_dir, run_generation

    card = generated_dir(ws.run_dir, stage.name) / "card.json"
    if ws.resume and card.exists():
        record = json.loads(card.read_text())["record"]
        record["resumed_from"] = "done"
        log.info("[%s] finished in an earlier attempt: reusing its dataset %s", stage.name, card.parent)
        return record
    return run_generation(stage, ws)


def _check_resumable(stage, model, out: Path) -> None:
    """On resume: the stage's saved model (finished, or its last checkpoint) must fit the model the run's
    config.yaml describes; and say when a stage has nothing saved to continue from."""
    folder = out / "checkpoints" / stage.name
    saved = folder / "done" if (folder / "done" / "record.json").exists() else last_checkpoint(folder)
    if saved is None:
        log.info(
            "[%s] no checkpoint of this stage was saved before the interruption: it starts from its beginning",
            stage.name,
        )
        return
    mismatch = checkpoint_mismatch(model, Path(saved))
    require(
        mismatch is None,
        "resume",
        str(out),
        f"has a checkpoint ({saved}) that does not fit the model its config.yaml describes: the checkpoint {mismatch}.",
        "restore the run's original config.yaml, or start a new run (its checkpoints are under checkpoints/).",
    )


def _prepared_teacher(ws: Workspace, stage) -> dict:
    """Stage teacher_prep: the teacher fitted to the task, from the cache, or trained now and cached. Of several
    runs that need the same missing teacher, one prepares it and the others wait and reuse it; under DDP every
    process trains it (rank 0 holds the entry's lock and saves it)."""
    spec = teacher_spec(ws.cfg, ws.plan, stage)  # its TrainingArguments join the process group the build needs

    def prepare(tmp) -> dict:
        record = run_stage(stage, ws)
        if dist.is_main():
            models.save_model(ws.models["teacher"], ws.tokenizer, tmp)
        return record

    entry = cache.find_or_build(ws.plan.cache_root, "teachers", spec, prepare, every_rank=True)
    final = entry.path
    if entry.built:
        record = entry.value
    else:
        built = datetime.datetime.fromtimestamp((final / "spec.json").stat().st_mtime).isoformat(timespec="seconds")
        log.info(
            "[teacher_prep] reusing the prepared teacher %s (prepared %s from the same teacher, data "
            "content, labels, tokenizer and recipe; its key: %s/spec.json)",
            final,
            built,
            final,
        )
        record = {"name": stage.name, "cached": True, "steps": 0, "wall_time_s": 0.0}
    record["cache_dir"] = str(final)
    kind = ws.plan.kind
    ws.models["teacher"] = models.load_pretrained(
        "teacher", str(final), None, model_class=kind.model_class(), **kind.load_kwargs
    )
    ws.plan.attention.switch(ws.models["teacher"])
    return record


def _augment(cfg: RunConfig, plan: Plan, wandb_run):
    """The run's offline augmented examples (made, or read from the cache), a few logged beside their sources."""
    from distillkit.augment import offline

    augmented = offline.build(cfg, plan)
    if augmented is not None and dist.is_main():
        offline.show(augmented, list(plan.task.train["text"]), cfg.augmentation.show, wandb_run)
    return augmented


def _log_plan(cfg: RunConfig, plan: Plan) -> None:
    origin = (
        f"student layers from teacher layers {plan.student_layers}"
        if plan.student_layers is not None
        else "student from its checkpoint"
        if cfg.student.path
        else "student from scratch (student.init=random)"
    )
    log.info("Plan: %s; %s", " → ".join(s.name for s in plan.stages), origin)
    for stage in plan.method_stages:
        teacher = f" · teacher: {stage.teacher.describe()}" if stage.teacher is not None else ""
        log.info("Loss [%s]: %s%s", stage.name, stage.objective.formula(), teacher)


def run(cfg: RunConfig, ctx: RunContext, plan: Plan | None = None) -> dict | None:
    """Run every stage; on rank 0 write and return the results. Raises ConfigError on bad input."""
    from transformers import set_seed

    from distillkit import report, tracking

    started = time.time()
    started_at = datetime.datetime.now().isoformat(timespec="seconds")
    out = Path(ctx.output_dir)
    plan = plan or make_plan(cfg)
    _log_plan(cfg, plan)
    train_set, eval_set = plan.kind.tokenize(plan.task, plan.tokenizer, cfg)
    wandb_run = None
    if dist.is_main():
        flat = {**tracking.flatten(cfg), "run.overrides": " ".join(ctx.overrides), "run.job": ctx.job_name}
        wandb_run = tracking.start(cfg.logger, out, ctx.job_name, ctx.group, flat, run_id=ctx.wandb_id)
        if wandb_run is not None and ctx.wandb_id != wandb_run.id:
            ctx.wandb_id = wandb_run.id
            ctx.save()  # a resume continues this W&B run instead of starting a second one
    ws = Workspace(cfg, plan, out, train_set, eval_set, plan.kind.collator(plan.tokenizer), wandb_run, ctx.resume)
    try:
        ws.augmented = _augment(cfg, plan, wandb_run)
        set_seed(cfg.seed)
        records = _run_stages(ws)
        plan.attention.restore()
        if not dist.is_main() and not ws.everyone_evaluates:
            return None
        student = ws.models[plan.stages[-1].student.model]
        numbers = plan.kind.evaluate_run(ws.teacher(), student, eval_set, ws.collator, plan.tokenizer, plan.device, cfg)
        if not dist.is_main():
            return None
        models.save_model(student, plan.tokenizer, out / "student")
        outcome = report.Outcome(numbers, records, len(train_set), len(eval_set), started, started_at, ws.augmented)
        results = report.results(cfg, ctx, plan, outcome)
        report.write_json_atomic(out / "results.json", results)
        clear_checkpoints(out)
        table = report.format_table(results) + f"\n\nresults: {out / 'results.json'}\nstudent: {out / 'student'}"
        shown = report.show_generations(results, wandb_run)
        if shown:
            log.info("%s", shown)
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
