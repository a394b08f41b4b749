"""What every generation pipeline shares: the writer (``generating_teacher``: the endpoint or a model of the run,
behind the completion cache), the progress line, the answer filters, the ``Made`` a pipeline returns, and the
dataset folder with its card, written whole or not at all."""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import time
from pathlib import Path

from distillkit import store
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


class Progress:
    """The stage's progress line: prompts done, completions kept and rejected, completions per second."""

    def __init__(self, name: str, total: int, unit: str = "prompts"):
        self.name, self.total, self.done, self.kept, self.rejected = name, total, 0, 0, 0
        self.unit = unit
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
            f"{self.done}/{self.total} {self.unit} · {self.kept} kept · {self.rejected} rejected · "
            f"{self.completions / elapsed:.1f} completions/s"
        )


@dataclasses.dataclass
class Made:
    """What a pipeline wrote: the rows (in order), the rejected completions by reason, the conversations it asked
    the teacher (``prompts``), the completions it requested, its wall time; ``filters`` and ``card`` add the
    pipeline's own filters and section to the dataset's card."""

    rows: list
    rejected: dict
    prompts: int
    requested: int
    seconds: float
    filters: dict = dataclasses.field(default_factory=dict)
    card: dict = dataclasses.field(default_factory=dict)


def count(rejected: dict, reasons) -> None:
    for reason in reasons:
        rejected[reason] = rejected.get(reason, 0) + 1


def filter_answers(answers, drop_truncated: bool) -> tuple[list, list[str]]:
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


def sampling_text(s) -> str:
    how = "greedy" if s.temperature == 0 else f"temperature {s.temperature:g}, top_p {s.top_p:g}"
    return how + (f", at most {s.max_tokens} tokens" if s.max_tokens else "")


def dataset_card(cfg, kind, stage: Stage, teacher, sampling, record: dict) -> dict:
    """The dataset's card: who wrote it, from what, how, what was filtered, and the counts."""
    spec = stage.generation
    return {
        "pipeline": spec.pipeline,
        "teacher": teacher_card(cfg, teacher),
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


def write_dataset(out: Path, rows: list[dict], eval_rows: list[dict], card: dict, markdown=None, **more) -> None:
    """``out`` (train.jsonl, eval.jsonl, any ``more`` splits, card.json, card.md by ``markdown``, default
    ``card_markdown``) filled in a temporary sibling and renamed into place: a killed run leaves the old one or
    none. A ``{dir}`` in the card's ``reuse`` command becomes ``out``."""
    tmp = out.with_name(f".{out.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name, data in {"train": rows, "eval": eval_rows, **more}.items():
        (tmp / f"{name}.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in data))
    card["reuse"] = card["reuse"].replace("{dir}", str(out))
    store.write_atomic(tmp / "card.json", json.dumps(card, indent=2, ensure_ascii=False) + "\n")
    (tmp / "card.md").write_text((markdown or card_markdown)(card))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)


def card_markdown(card: dict) -> str:
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
        *(
            [f"- {card['pipeline']}: " + ", ".join(f"{k}={v}" for k, v in card[card["pipeline"]].items())]
            if isinstance(card.get(card["pipeline"]), dict)
            else []
        ),
        "",
        f"Reuse: `{card['reuse']}`",
        "",
    ]
    return "\n".join(lines)


def stage_record(stage: Stage, teacher, seconds: float, generation: dict) -> dict:
    """A generation stage's record (results.json's ``stages``): no model, no objective, no optimizer step, outside
    the budget like teacher_prep (no part of train.max_steps / train.epochs); its counts under ``generation``."""
    return {
        "name": stage.name,
        "cached": False,
        "model": None,
        "objective": None,
        "teacher": teacher.describe(),
        "outside_budget": True,
        "steps": 0,
        "examples": 0,
        "teacher_forwards": 0,
        "wall_time_s": round(seconds, 3),
        "generation": generation,
    }


def teacher_card(cfg, teacher) -> dict:
    """Who wrote a dataset, for its card: the teacher's name and kind, and an endpoint's model and URL with the key's
    variable name only, never its value."""
    endpoint = cfg.teacher.endpoint
    return {
        "name": cfg.teacher.name,
        "kind": teacher.kind,
        "describe": teacher.describe(),
        **(
            {"model": endpoint.model, "base_url": endpoint.base_url, "api_key_env": endpoint.api_key_env}
            if endpoint is not None
            else {}
        ),
    }
