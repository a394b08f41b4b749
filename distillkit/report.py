"""results.json (the run's contract with every other tool) and the printed table.

results.json is written atomically, and only when a run completed: a failed run has none (its
``error.txt`` says why). The schema is documented in docs/resume-and-outputs.md; ``results()`` builds it.
Version 2 (the stage redesign): each stage record names its ``model``, ``objective`` and ``teacher``
(source) instead of ``method``; stages that produce a model of the report carry ``eval``; ``teacher`` and
``comparison`` are null for a run without a teacher (``teacher=none``).
"""

from __future__ import annotations

import datetime
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from distillkit import dist

SCHEMA_VERSION = 2


def _versions() -> dict:
    import torch
    import transformers

    from distillkit import __version__

    return {"distillkit": __version__, "torch": torch.__version__, "transformers": transformers.__version__}


@dataclass
class Outcome:
    """What a completed run hands the report: the task's figures, the stages' records, the data it saw, its clock."""

    numbers: dict  # the task's teacher / student / comparison / speed sections (Task.evaluate_run)
    stages: list[dict]  # one record per stage, in order
    train_examples: int  # the training split (before offline augmentation)
    eval_examples: int
    started: float  # time.time() when the run began
    started_at: str  # the same, ISO 8601
    augmented: object = None  # augment.offline.AugmentedSet: the offline augmented examples, or None


def results(cfg, ctx, plan, outcome: Outcome) -> dict:
    """The results.json document of a completed run."""
    aug, augmented, n_train = cfg.augmentation, outcome.augmented, outcome.train_examples
    started, started_at = outcome.started, outcome.started_at
    return {
        "schema_version": SCHEMA_VERSION,
        "status": "complete",
        "run": {
            "name": ctx.job_name,
            "output_dir": str(ctx.output_dir),
            "overrides": list(ctx.overrides),
            "method": cfg.method.name,
            "teacher": cfg.teacher.name,
            "student": cfg.student.name,
            "data": cfg.data.name,
            "seed": cfg.seed,
            "started_at": started_at,
            "finished_at": datetime.datetime.now().isoformat(timespec="seconds"),
            "wall_time_s": round(time.time() - started, 2),
            "world_size": dist.world_size(),
            "device": str(plan.device),
            "versions": _versions(),
        },
        "task": plan.kind.task_section(cfg, plan.task, n_train, outcome.eval_examples),
        "augmentation": {
            "options": aug.selected,
            "offline": aug.offline,
            "online": aug.online,
            "train_examples": n_train + (len(augmented.rows) if augmented else 0),
            **(augmented.summary() if augmented else {}),
        },
        **outcome.numbers,
        "budget": budget_section(cfg, n_train, outcome.stages),
        "stages": outcome.stages,
        "artifacts": {"student": "student", "metrics": "metrics.jsonl", "config": "config.yaml"},
    }


BUDGET_KEYS = ("steps", "examples", "teacher_forwards", "wall_time_s")


def budget_section(cfg, train_examples: int, stages: list[dict]) -> dict:
    """What the distillation spent, per stage and in total: optimizer steps, training examples, teacher forward
    rows, wall seconds. The budget is every stage after teacher_prep (``stages.split_budget``); teacher_prep is
    listed apart (cached across runs, it is no part of a method's cost)."""
    from distillkit.stages.planning import total_steps

    per_epoch, planned = total_steps(cfg, train_examples)
    spent = [s for s in stages if s["name"] != "teacher_prep" and not s.get("outside_budget")]
    rows = [{"name": s["name"], "share": s.get("share"), **{k: s.get(k) for k in BUDGET_KEYS}} for s in spent]
    prep = next((s for s in stages if s["name"] == "teacher_prep"), None)
    generated = [s for s in stages if s.get("generation")]
    return {
        "planned_steps": planned,  # train.max_steps, or train.epochs × steps_per_epoch
        "steps_per_epoch": per_epoch,  # of the training split, at the hardware group's global batch
        "pinned": [s["name"] for s in spent if s.get("share") is None],  # method.<stage>.epochs: on top of the plan
        "stages": rows,
        "total": {k: _sum(r[k] for r in rows) for k in BUDGET_KEYS},
        "teacher_prep": None
        if prep is None
        else {"cached": bool(prep.get("steps") == 0), **{k: prep.get(k) for k in BUDGET_KEYS}},
        # generation stages (blackbox_sft): the teacher's completions, outside the optimizer budget like teacher_prep
        **(
            {
                "generation": [
                    {"name": s["name"], "wall_time_s": s.get("wall_time_s"), **s["generation"]} for s in generated
                ]
            }
            if generated
            else {}
        ),
    }


def _sum(values):
    values = [v for v in values if v is not None]
    return round(sum(values), 3) if values else None


def budget_line(budget: dict | None) -> str:
    """``budget: 750 optimizer steps (planned 750) · 24,000 examples · 8,000 teacher forwards · 41 s`` ("" for results
    written before the budget section existed)."""
    if not budget:
        return ""
    t = budget["total"]
    pinned = f" · pinned on top: {', '.join(budget['pinned'])}" if budget["pinned"] else ""
    return (
        f"budget: {t['steps']} optimizer steps (planned {budget['planned_steps']}) · {t['examples'] or 0:,} examples · "
        f"{t['teacher_forwards'] or 0:,} teacher forwards · {t['wall_time_s'] or 0:.0f} s{pinned}"
    )


def _task(results: dict):
    """The Task whose run wrote ``results`` (its ``task`` section's name; without one, the default task)."""
    from distillkit import tasks

    return tasks.get(results["task"].get("name"))


def show_generations(results: dict, wandb_run=None) -> str:
    """A sample of the student's outputs, for the log (and W&B), where the task shows one; else ""."""
    if not results.get("generations"):
        return ""
    return _task(results).show_generations(results, wandb_run)


def write_json_atomic(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
    os.replace(tmp, path)


def summary_for_wandb(results: dict) -> dict:
    """Flat summary values: teacher/accuracy, student/latency_ms, comparison/retention, speed/threads ..."""
    flat = {}
    for section in ("teacher", "student", "comparison", "speed"):
        for key, value in (results.get(section) or {}).items():
            flat[f"{section}/{key}"] = value
    budget = results.get("budget") or {}
    for key, value in (budget.get("total") or {}).items():
        flat[f"budget/{key}"] = value
    if budget:
        flat["budget/planned_steps"] = budget["planned_steps"]
    for row in budget.get("stages") or []:
        for key in BUDGET_KEYS + ("share",):
            flat[f"stages/{row['name']}/{key}"] = row[key]
    for stage in results.get("stages", []):
        for key, value in (stage.get("eval") or {}).items():
            flat[f"stages/{stage['name']}/{key}"] = value
        for key in ("used", "built", "size_bytes", "saved_s"):
            if key in (stage.get("teacher_cache") or {}):
                flat[f"stages/{stage['name']}/teacher_cache_{key}"] = stage["teacher_cache"][key]
    return flat


def speed_note(speed: dict | None) -> str:
    """How the speed rows were measured, so a reader knows what the figures and their ± mean."""
    if not speed:
        return ""
    if speed["device"] == "cpu":
        where = f"{speed['threads']} CPU thread{'s' if speed['threads'] != 1 else ''}, " + (
            "thread CPU time" if speed["clock"] == "thread_cpu" else "wall time"
        )
    else:
        where = f"{speed['device']}, wall time (CPU threads do not matter)"
    return (
        f"speed: {where}; median of {speed['repeats']} repetitions after {speed['warmup']} warm-up; "
        f"± half their range, relative to the median"
    )


def format_table(results: dict) -> str:
    run, task = results["run"], _task(results)
    rows = task.report_rows(results)
    head = ("", f"teacher ({run['teacher']})", f"student ({run['student']})", "")
    widths = [max(len(r[i]) for r in rows + [head]) for i in range(4)]
    fmt = lambda r: "  ".join(v.ljust(w) if i in (0, 3) else v.rjust(w) for i, (v, w) in enumerate(zip(r, widths)))  # noqa: E731 (a one-line local function)
    title = (
        f"distillkit · method={run['method']} · data={run['data']} · seed={run['seed']} · "
        f"{results['task']['eval_examples']} eval examples · {run['wall_time_s']:.0f} s"
    )
    note = speed_note(results.get("speed"))
    lines = [title, fmt(head), "-" * len(fmt(head))] + [fmt(r) for r in rows] + ([note] if note else [])
    lines += ["", "stages:"]
    lines += [f"  {stage_line(stage)}" for stage in results["stages"]]
    budget = budget_line(results.get("budget"))
    if budget:
        lines += [budget]
    evaluated = [stage for stage in results["stages"] if stage.get("eval")]
    if len(evaluated) > 1:
        lines += ["", "models the stages produced (eval split):"]
        lines += [f"  {stage['name']:<14} {task.eval_text(stage['eval'])}" for stage in evaluated]
    return "\n".join(line.rstrip() for line in lines)


def stage_line(stage: dict) -> str:
    """One stage of the run: its budget, time and final loss terms (or that it was cached / resumed)."""
    if stage.get("cached"):
        return f"{stage['name']:<14} cached ({stage.get('cache_dir', '')})"
    if stage.get("generation"):
        g = stage["generation"]
        return (
            f"{stage['name']:<14} {g['kept']} rows kept, {g['rejected']} rejected of {g['completions_requested']} "
            f"completions ({g['cached_hits']} from the cache, {g['paid']} paid){_pipeline_text(g)} · "
            f"{stage['wall_time_s']:.0f} s · outside the budget" + (" · resumed" if stage.get("resumed_from") else "")
        )
    terms = " ".join(f"{k}={v:.4g}" for k, v in (stage.get("final_loss_terms") or {}).items())
    resumed = " · resumed" if stage.get("resumed_from") else ""
    # Which weights the stage ended with (eval.keep); the report's figures come from the last stage's. Said
    # whenever the stage was evaluated during training (without evaluation there is only the last).
    kept = ""
    if stage.get("evaluations"):
        kept = f" · checkpoint: {stage['checkpoint']}"
        if stage["checkpoint"] == "last" and stage.get("eval_accuracy") is not None:
            kept += f" (eval accuracy {stage['eval_accuracy']:.4f})"
    stopped = " · stopped early" if stage.get("stopped_early") else ""
    kept += _cache_text(stage.get("teacher_cache"))
    share = stage.get("share")
    part = (
        ""
        if stage["name"] == "teacher_prep" or "share" not in stage  # outside the budget / written before shares
        else f" ({share:.0%} of the budget)"
        if share is not None
        else " (pinned)"
    )
    return (
        f"{stage['name']:<14} {stage['steps']} steps{part} · {stage['wall_time_s']:.0f} s{resumed}{stopped}{kept}"
        + (f" · {terms}" if terms else "")
    )


def _pipeline_text(g: dict) -> str:
    """What a self-improvement pipeline adds to its line: STaR's accuracy before rationalisation and the rationalised
    rows; critique_revise's revised and unchanged answers."""
    if g.get("pipeline") == "star":
        return (
            f" · {g['writer']} right on {g['accuracy']:.1%} of the prompts before rationalisation, "
            f"{g['rationalized']} rationalised"
        )
    if g.get("pipeline") == "critique_revise":
        return f" · {g['revised']} revised, {g['unchanged']} unchanged"
    return ""


def _cache_text(cache: dict | None) -> str:
    """`` · teacher outputs cached (4.1 MB, built 9 s, saved ~21 s)`` or why not."""
    if not cache:
        return ""
    if not cache["used"]:
        return f" · teacher online ({cache['reason']})"
    size = cache["size_bytes"]
    size = f"{size / 1e9:.2f} GB" if size >= 1e8 else f"{size / 1e6:.1f} MB"
    how = f"built in {cache['build_s']:.0f} s" if cache["built"] else "reused"
    return f" · teacher outputs cached ({size}, {how}, saved ~{cache['saved_s']:.0f} s)"
