"""A generation stage (``Stage.generation``): the run's generating teacher writes a dataset that a later stage trains
on (``DataView("generated")``). It trains nothing and sits outside the optimizer budget, like ``teacher_prep``; its
record counts what it asked for and what it kept.

``pipeline=responses`` (Alpaca's recipe, Taori et al. 2023): the teacher answers every training prompt (the task's
``generation_prompts``: a user turn per prompt, after ``system_prompt`` when one is given); each answer passes the
filters (not empty; not cut by max_tokens with ``drop_truncated``; not a repeat of an answer kept for the same
prompt) and becomes a row in the task's own format (``Task.generated_row``).

Every answer goes through the completion cache (``teachers/generating.CachedTeacher``) the moment it arrives, so a
run killed half way, resumed, or started again pays for no completion twice. The dataset is written into
``<run>/generated/<stage>/`` (``train.jsonl``, ``eval.jsonl``: the task's eval split as it was, ``card.json``,
``card.md``), whole or not at all, and can be trained on later with ``data=lm_local``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import time
from pathlib import Path

from distillkit import dist, store
from distillkit.errors import require
from distillkit.recipe.stage import Stage

log = logging.getLogger("distillkit")

CHUNK = 64  # conversations handed to the teacher at a time (the progress line and the cache advance per answer)
PROGRESS_EVERY_S = 10.0


def generated_dir(run_dir: Path, stage_name: str) -> Path:
    return Path(run_dir) / "generated" / stage_name


def generating_teacher(ws, stage: Stage | None = None):
    """The run's teacher as a writer: the endpoint (``teacher.endpoint``) or the teacher model, behind the
    completion cache under ``cache_dir``; a stage whose spec names a ``generator`` gets that model of the run (made
    as the stage's ``student`` says when no stage has made it yet: STaR's round-0 student)."""
    from distillkit.teachers.generating import CachedTeacher, LocalTeacher

    cfg = ws.cfg
    generator = stage.generation.generator if stage is not None else None
    if generator is None and cfg.teacher.endpoint is not None:
        from distillkit.teachers.endpoint import EndpointTeacher

        inner = EndpointTeacher(cfg.teacher.endpoint)
    else:
        kind, tokenizer = ws.plan.kind, ws.tokenizer
        if generator is not None and generator not in ws.models:  # made with the run's seed, as a first stage would
            ws.model(dataclasses.replace(stage, budget=dataclasses.replace(stage.budget, seed=cfg.seed)))
        inner = LocalTeacher(
            ws.teacher() if generator is None else ws.models[generator],
            tokenizer,
            ws.plan.device,
            lambda conversation: kind.render_conversation(conversation, tokenizer, cfg),
            cfg.task.max_new_tokens,
            cfg.hardware.eval_batch_size,
        )
    return CachedTeacher(inner, ws.plan.cache_root)


class _Progress:
    """The stage's progress line: prompts done, completions kept and rejected, completions per second."""

    def __init__(self, name: str, total: int):
        self.name, self.total, self.done, self.kept, self.rejected = name, total, 0, 0, 0
        self.started = self.last = time.perf_counter()
        self.completions = 0

    def add(self, kept: int, rejected: int) -> None:
        self.done += 1
        self.kept, self.rejected, self.completions = (
            self.kept + kept,
            self.rejected + rejected,
            self.completions + kept + rejected,
        )
        now = time.perf_counter()
        if now - self.last >= PROGRESS_EVERY_S or self.done == self.total:
            self.last = now
            log.info("[%s] %s", self.name, self.line(now))

    def line(self, now: float | None = None) -> str:
        elapsed = max((now or time.perf_counter()) - self.started, 1e-9)
        return (
            f"{self.done}/{self.total} prompts · {self.kept} kept · {self.rejected} rejected · "
            f"{self.completions / elapsed:.1f} completions/s"
        )


def run_generation(stage: Stage, ws) -> dict:
    """Run the generation stage ``stage`` on rank 0 (the others wait, then read its card); return its record."""
    out = generated_dir(ws.run_dir, stage.name)
    if dist.is_main():
        record = _generate(stage, ws, out)
    dist.barrier()
    if not dist.is_main():
        record = json.loads((out / "card.json").read_text())["record"]
    return record


def _generate(stage: Stage, ws, out: Path) -> dict:
    if stage.generation.pipeline != "responses":  # star, critique_revise: stages/self_improve.py
        from distillkit.stages.self_improve import PIPELINES

        return PIPELINES[stage.generation.pipeline](stage, ws, out)
    cfg, kind, spec = ws.cfg, ws.plan.kind, stage.generation
    sampling = cfg.teacher.sampling
    teacher = generating_teacher(ws)
    conversations = kind.generation_prompts(ws.plan.task, spec.system_prompt)
    log.info(
        "[%s] %s answers %d training prompts (%s; %d completion(s) each); answers cached under %s",
        stage.name,
        teacher.describe(),
        len(conversations),
        _sampling_text(sampling),
        sampling.n,
        teacher.root,
    )
    progress, rows, rejected = _Progress(stage.name, len(conversations)), [], {}
    started = time.perf_counter()
    for start in range(0, len(conversations), CHUNK):
        chunk = conversations[start : start + CHUNK]
        kept_rows: dict[int, list] = {}

        def take(i: int, answers, chunk=chunk, kept_rows=kept_rows) -> None:
            kept, why = _filter(answers, spec.drop_truncated)
            for reason in why:
                rejected[reason] = rejected.get(reason, 0) + 1
            kept_rows[i] = [kind.generated_row(chunk[i], a, spec.system_prompt) for a in kept]
            progress.add(len(kept), len(why))

        teacher.generate(chunk, sampling, take)
        rows += [row for i in range(len(chunk)) for row in kept_rows[i]]  # in prompt order
    seconds = time.perf_counter() - started
    requested = len(conversations) * sampling.n
    generation = {
        "pipeline": spec.pipeline,
        "prompts": len(conversations),
        "completions_requested": requested,
        "cached_hits": teacher.hits * sampling.n,  # completions served from the cache, not paid for again
        "paid": teacher.misses * sampling.n,  # completions this run asked the teacher for
        "kept": len(rows),
        "rejected": sum(rejected.values()),
        "rejected_by": rejected,
        "completions_per_s": round(requested / max(seconds, 1e-9), 2),
        "dataset": str(out),
    }
    log.info(
        "[%s] done: %d rows kept, %d rejected (%s) of %d completions; %d from the cache, %d paid; %.1f s",
        stage.name,
        len(rows),
        generation["rejected"],
        ", ".join(f"{k} {v}" for k, v in rejected.items()) or "none",
        requested,
        generation["cached_hits"],
        generation["paid"],
        seconds,
    )
    record = {
        "name": stage.name,
        "cached": False,
        "model": None,
        "objective": None,
        "teacher": teacher.describe(),
        "outside_budget": True,  # like teacher_prep: no optimizer step, no part of train.max_steps / train.epochs
        "steps": 0,
        "examples": 0,
        "teacher_forwards": 0,
        "wall_time_s": round(seconds, 3),
        "generation": generation,
    }
    require(
        len(rows) > 0,
        "teacher.sampling",
        _sampling_text(sampling),
        f"gave no answer that passed the filters ({', '.join(f'{k} {v}' for k, v in rejected.items())}), so the "
        "student would have nothing to learn.",
        "look at the answers in the completion cache (" + str(teacher.root) + "); raise teacher.sampling.max_tokens "
        "if they were truncated, or set method.drop_truncated=false.",
    )
    _write_dataset(out, rows, kind.export_rows(ws.plan.task.eval), _card(cfg, kind, stage, teacher, sampling, record))
    return record


def _filter(answers, drop_truncated: bool) -> tuple[list, list[str]]:
    """(the answers kept, the reason of each rejected one): empty, truncated (cut by max_tokens), duplicate."""
    kept, why, seen = [], [], set()
    for a in answers:
        text = a.text.strip()
        reason = (
            "empty"
            if not text
            else "truncated"
            if drop_truncated and a.finish_reason == "length"
            else "duplicate"
            if text in seen
            else None
        )
        if reason is None:
            kept.append(dataclasses.replace(a, text=text))
            seen.add(text)
        else:
            why.append(reason)
    return kept, why


def _sampling_text(s) -> str:
    how = "greedy" if s.temperature == 0 else f"temperature {s.temperature:g}, top_p {s.top_p:g}"
    return how + (f", at most {s.max_tokens} tokens" if s.max_tokens else "")


def _card(cfg, kind, stage: Stage, teacher, sampling, record: dict) -> dict:
    """The dataset's card: who wrote it, from what, how, what was filtered, and the counts."""
    spec = stage.generation
    endpoint = cfg.teacher.endpoint
    return {
        "pipeline": spec.pipeline,
        "teacher": {
            "name": cfg.teacher.name,
            "kind": teacher.kind,
            "describe": teacher.describe(),
            # the endpoint's model and URL; the key's variable name only, never its value
            **(
                {"model": endpoint.model, "base_url": endpoint.base_url, "api_key_env": endpoint.api_key_env}
                if endpoint is not None
                else {}
            ),
        },
        "prompts": {
            "source": f"the training split of data={cfg.data.name}",
            "system_prompt": spec.system_prompt,
            "template": "one user turn per training prompt (chat datasets: their turns before the answer)",
        },
        "sampling": dataclasses.asdict(sampling),
        "filters": {
            "empty": "the answer is blank",
            "truncated": "cut by max_tokens (finish_reason=length)" if spec.drop_truncated else "off (kept)",
            "duplicate": "the same answer as one kept for the same prompt (n > 1)",
        },
        "counts": {k: record["generation"][k] for k in ("prompts", "completions_requested", "kept", "rejected")}
        | {"rejected_by": record["generation"]["rejected_by"]},
        "files": {"train": "train.jsonl", "eval": "eval.jsonl (the task's eval split, unchanged)"},
        "reuse": "python -m distillkit " + kind.reuse_overrides("{dir}", cfg),
        "record": record,
    }


def _write_dataset(out: Path, rows: list[dict], eval_rows: list[dict], card: dict) -> None:
    """``out`` filled in a temporary sibling and renamed into place: a killed run leaves the old one or none."""
    tmp = out.with_name(f".{out.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    (tmp / "train.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    (tmp / "eval.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in eval_rows))
    card["reuse"] = card["reuse"].replace("{dir}", str(out))
    store.write_atomic(tmp / "card.json", json.dumps(card, indent=2, ensure_ascii=False) + "\n")
    (tmp / "card.md").write_text(_card_markdown(card))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)


def _card_markdown(card: dict) -> str:
    c, t, s = card["counts"], card["teacher"], card["sampling"]
    rejected = ", ".join(f"{k}: {v}" for k, v in c["rejected_by"].items()) or "none"
    lines = [
        f"# Generated dataset ({card['pipeline']} pipeline)",
        "",
        f"- teacher: {t['describe']} (teacher={t['name']})",
        f"- prompts: {card['prompts']['source']}; {card['prompts']['template']}",
        f"- system prompt: {card['prompts']['system_prompt']!r}",
        "- sampling: " + ", ".join(f"{k}={v}" for k, v in s.items()),
        "- filters: " + "; ".join(f"{k}: {v}" for k, v in card["filters"].items()),
        f"- counts: {c['prompts']} prompts, {c['completions_requested']} completions requested, {c['kept']} kept, "
        f"{c['rejected']} rejected ({rejected})",
        "",
        f"Reuse: `{card['reuse']}`",
        "",
    ]
    return "\n".join(lines)
