"""The self-improvement pipelines of a generation stage (``GenerationSpec.pipeline``), beside ``responses``
(``stages/generation/``, whose cache, progress line, dataset folder and card they reuse):

- ``star`` (Zelikman et al. 2022): a model of the run (the spec's ``generator``: STaR's current student) answers every
  training prompt; an answer whose final answer (``final_answer``: after the last ``answer_marker``, else the last
  line) the checker accepts is kept; a failure is rationalised: asked again with the correct answer as a hint
  (``hint_template``), and its new rationale kept when it now reaches the answer. A kept row's prompt is always the
  original one (no hint). The record's ``accuracy`` is the fraction right before rationalisation.
- ``critique_revise`` (Bai et al. 2022, Constitutional AI's supervised stage): the run's teacher answers, critiques
  its answer against the principles, and revises it; the revisions are the rows. Counts: revised (the revision
  differs from the answer), unchanged, rejected (by reason: the answer, critique or revision empty or truncated).

Every completion goes through the completion cache (``generating_teacher``), so a resumed run pays nothing twice.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

from distillkit.config.endpoint import SamplingSettings
from distillkit.errors import require
from distillkit.recipe.stage import Stage
from distillkit.stages.generation.common import (
    CHUNK,
    Progress,
    dataset_card,
    filter_answers,
    generating_teacher,
    stage_record,
    write_dataset,
)

log = logging.getLogger("distillkit")


def _first(teacher, conversations, sampling) -> list:
    """The first completion of each conversation (n = 1), or none when there are no conversations."""
    return [answers[0] for answers in teacher.generate(conversations, sampling)] if conversations else []


def _ok(completion, drop_truncated: bool) -> str | None:
    """None when ``completion`` passes the generation stage's filters (not empty; not cut with drop_truncated),
    else the reason."""
    _, why = filter_answers([completion], drop_truncated)
    return why[0] if why else None


def _record(stage: Stage, teacher, seconds: float, generation: dict, out: Path) -> dict:
    generation |= {
        "cached_hits": teacher.hits,  # completions served from the cache (n = 1 per request)
        "paid": teacher.misses,
        "completions_per_s": round(generation["completions_requested"] / max(seconds, 1e-9), 2),
        "dataset": str(out),
    }
    return stage_record(stage, teacher, seconds, generation)


def star(stage: Stage, ws, out: Path) -> dict:
    """STaR's generation stage: write, check, rationalise the failures; the kept rows become the round's dataset."""
    cfg, kind, spec = ws.cfg, ws.plan.kind, stage.generation
    m, si, task = spec.options, ws.plan.kind.self_improvement(), ws.plan.task
    teacher = generating_teacher(ws, stage)
    sampling = SamplingSettings(
        temperature=m.temperature, max_tokens=m.max_new_tokens, seed=cfg.seed if m.temperature > 0 else None
    )
    conversations, refs = kind.generation_prompts(task, spec.system_prompt), si.references(task)
    check = si.load_checker(m.checker)
    prompts = [c[si.last_user(c)]["content"] for c in conversations]
    log.info(
        "[%s] model %r writes for %d training prompts (checker %s%s); completions cached under %s",
        stage.name,
        spec.generator,
        len(conversations),
        m.checker or "the task's own",
        ", failures rationalised with the answer as a hint" if m.rationalize else "",
        teacher.root,
    )
    progress, rows, started = Progress(stage.name, len(conversations)), [], time.perf_counter()
    correct = rationalized = attempts = 0
    rejected: dict[str, int] = {}
    empty: set[int] = set()  # prompts whose last completion was blank
    blank = {"first": 0, "hinted": 0}  # blank completions (no rationale, never shown to the checker), by attempt

    def right(i: int, completion, attempt: str) -> bool:  # a blank completion is no rationale; else the checker decides
        if _ok(completion, False) is not None:
            empty.add(i)
            blank[attempt] += 1
            return False
        empty.discard(i)
        return bool(check(prompts[i], si.final_answer(completion.text, m.answer_marker), refs[i]))

    for start in range(0, len(conversations), CHUNK):
        idx = list(range(start, min(start + CHUNK, len(conversations))))
        first = _first(teacher, [conversations[i] for i in idx], sampling)
        kept = {i: c for i, c in zip(idx, first) if right(i, c, "first")}
        correct += len(kept)
        failed = [i for i in idx if i not in kept]
        if m.rationalize and failed:
            attempts += len(failed)
            hinted = [si.rationalization(conversations[i], refs[i], m.hint_template) for i in failed]
            for i, c in zip(failed, _first(teacher, hinted, sampling)):
                if right(i, c, "hinted"):
                    kept[i] = c  # the row keeps the original prompt: the hint is not part of it
                    rationalized += 1
        for i in idx:
            if i in kept:
                rows.append(
                    kind.generated_row(
                        conversations[i], dataclasses.replace(kept[i], text=kept[i].text.strip()), spec.system_prompt
                    )
                )
            else:
                reason = "empty" if i in empty else "wrong_after_hint" if m.rationalize else "wrong"
                rejected[reason] = rejected.get(reason, 0) + 1
            progress.add(int(i in kept), int(i not in kept))
    seconds = time.perf_counter() - started
    n = len(conversations)
    generation = {
        "pipeline": "star",
        "writer": spec.generator,
        "prompts": n,
        "completions_requested": n + attempts,
        "correct": correct,  # right before rationalisation
        "accuracy": round(correct / max(n, 1), 4),
        "rationalization_attempts": attempts,
        "rationalized": rationalized,  # kept after the hint
        "blank": blank,
        "checked": n + attempts - blank["first"] - blank["hinted"],  # completions the checker judged
        "kept": len(rows),
        "rejected": n - len(rows),
        "rejected_by": rejected,
    }
    record = _record(stage, teacher, seconds, generation, out)
    log.info(
        "[%s] done: accuracy %.4f (%d/%d right before rationalisation), %d rationalised of %d, %d rows kept; "
        "%d from the cache, %d paid; %.1f s",
        stage.name,
        generation["accuracy"],
        correct,
        n,
        rationalized,
        attempts,
        len(rows),
        generation["cached_hits"],
        generation["paid"],
        seconds,
    )
    require(
        len(rows) > 0,
        "method.sft_share",
        m.sft_share,
        f"left the student that writes in stage {stage.name!r} ({spec.generator}) unable to reach a single right "
        "answer, even with the answer as a hint, so the round would have nothing to learn.",
        "give the student a first sft stage (e.g. method.sft_share=0.3), start from a checkpoint that answers the "
        "task (student.path=...), or check method.answer_marker / method.checker against what it writes.",
    )
    card = dataset_card(cfg, kind, stage, teacher, sampling, record)
    card["teacher"] = {
        "name": f"the run's model {spec.generator!r}",
        "kind": teacher.kind,
        "describe": teacher.describe(),
    }
    card["counts"] |= {k: generation[k] for k in ("correct", "accuracy", "rationalized")}
    card["prompts"]["template"] = "one user turn per training prompt; no hint (rationalisation's hint is not kept)"
    card["filters"] = {
        "wrong": f"the final answer (after {m.answer_marker!r}, else the last line) fails the checker "
        f"({m.checker or 'the task own'})",
        "rationalisation": f"failures asked again with {m.hint_template!r}" if m.rationalize else "off",
    }
    write_dataset(out, rows, kind.export_rows(task.eval), card)
    return record


def critique_revise(stage: Stage, ws, out: Path) -> dict:
    """Constitutional AI's supervised data: answer → critique against the principles → revision; rows of revisions."""
    cfg, kind, spec = ws.cfg, ws.plan.kind, stage.generation
    m, si, task = spec.options, ws.plan.kind.self_improvement(), ws.plan.task
    teacher = generating_teacher(ws, stage)  # the run's teacher, or (method.writer=student) the student
    sampling = dataclasses.replace(cfg.teacher.sampling, n=1)  # one answer, critique and revision per prompt
    conversations = kind.generation_prompts(task, spec.system_prompt)
    log.info(
        "[%s] %s answers %d training prompts, critiques each answer against %d principles and revises it; "
        "completions cached under %s",
        stage.name,
        teacher.describe(),
        len(conversations),
        len(m.principles),
        teacher.root,
    )
    progress, rows, started = Progress(stage.name, len(conversations)), [], time.perf_counter()
    counts = {"revised": 0, "unchanged": 0}
    rejected: dict[str, int] = {}
    requested = 0

    def step(alive: dict, what: str, make) -> dict:
        """Ask for ``what`` of every prompt still alive (``make(i, texts) → conversation``); drop the failures."""
        nonlocal requested
        order = list(alive)
        requested += len(order)
        out_ = {}
        for i, c in zip(order, _first(teacher, [make(i, alive[i]) for i in order], sampling)):
            reason = _ok(c, spec.drop_truncated)
            if reason is None:
                out_[i] = alive[i] + [c.text.strip()]
            else:
                rejected[f"{what}_{reason}"] = rejected.get(f"{what}_{reason}", 0) + 1
        return out_

    for start in range(0, len(conversations), CHUNK):
        idx = range(start, min(start + CHUNK, len(conversations)))
        alive = step({i: [] for i in idx}, "answer", lambda i, t: conversations[i])
        alive = step(
            alive, "critique", lambda i, t: si.critique(conversations[i], t[0], m.principles, m.critique_template)
        )
        alive = step(alive, "revision", lambda i, t: si.revision(conversations[i], t[0], t[1], m.revise_template))
        for i in idx:
            if i in alive:
                answer, _, revised = alive[i]
                counts["unchanged" if revised == answer else "revised"] += 1
                rows.append(kind.generated_row(conversations[i], _text(revised), spec.system_prompt))
            progress.add(int(i in alive), int(i not in alive))
    seconds = time.perf_counter() - started
    generation = {
        "pipeline": "critique_revise",
        "prompts": len(conversations),
        "completions_requested": requested,
        **counts,
        "kept": len(rows),
        "rejected": len(conversations) - len(rows),
        "rejected_by": rejected,
        "principles": list(m.principles),
    }
    record = _record(stage, teacher, seconds, generation, out)
    log.info(
        "[%s] done: %d revised, %d unchanged, %d rejected (%s) of %d prompts; %d from the cache, %d paid; %.1f s",
        stage.name,
        counts["revised"],
        counts["unchanged"],
        generation["rejected"],
        ", ".join(f"{k} {v}" for k, v in rejected.items()) or "none",
        len(conversations),
        generation["cached_hits"],
        generation["paid"],
        seconds,
    )
    require(
        len(rows) > 0,
        "teacher.sampling",
        dataclasses.asdict(sampling),
        "gave no revision that passed the filters, so the student would have nothing to learn.",
        f"look at the completions in the completion cache ({teacher.root}); raise teacher.sampling.max_tokens if "
        "they were truncated, or set method.drop_truncated=false.",
    )
    card = dataset_card(cfg, kind, stage, teacher, sampling, record)
    card["counts"] |= counts
    card["critique_revise"] = {
        "principles": list(m.principles),
        "critique_template": m.critique_template,
        "revise_template": m.revise_template,
        "rows": "the original prompt (no critique) with the revision as the response",
    }
    write_dataset(out, rows, kind.export_rows(task.eval), card)
    return record


def _text(text: str):
    from distillkit.teachers.generating import Completion

    return Completion(text)


PIPELINES = {"star": star, "critique_revise": critique_revise}
