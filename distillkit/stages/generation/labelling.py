"""A label stage (``Stage.generation`` with ``pipeline=label``; ``method=blackbox_label``): the run's text teacher
labels the training texts through a prompt, and its answers become a classification dataset a later stage trains on
(``DataView("generated")``). It trains nothing and sits outside the optimizer budget, like ``teacher_prep`` and the
responses pipeline (``stages/generation/``, whose cache and teacher it shares).

Per text: the task's labeller (``Task.labeller``) writes the prompt, maps the answer to a class through the
verbaliser (an answer naming none is rejected, ``no_class``) and, with soft labels, reads a distribution over the
classes from the first answer token's top log-probabilities. With ``label_eval`` the eval split is labelled too
(counted apart: ``generation.eval``), so the report has the teacher's own accuracy beside the student's.

``<run>/generated/<stage>/``: ``train.jsonl`` (``text``, ``label``, ``soft`` when there is one, the teacher's
``answer``), ``eval.jsonl`` (the task's eval split as it was, gold labels), ``eval_teacher.jsonl`` (the teacher's
labels of it), ``card.json`` / ``card.md``; written whole or not at all; trained on again with ``data=local``.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from distillkit.errors import require
from distillkit.recipe.stage import Stage
from distillkit.stages.generation.common import Progress, stage_record, teacher_card, write_dataset

log = logging.getLogger("distillkit")


def run_labelling(stage: Stage, ws, out: Path, teacher) -> dict:
    """Label the training (and eval) split with ``teacher`` (a ``CachedTeacher``); write the dataset; its record."""
    cfg, kind, task = ws.cfg, ws.plan.kind, ws.plan.task
    spec, sampling = stage.generation, cfg.teacher.sampling
    labeller = kind.labeller(task.label_names, spec.label)
    log.info(
        "[%s] %s labels %d training texts%s (%s labels); answers cached under %s",
        stage.name,
        teacher.describe(),
        len(task.train),
        f" and {len(task.eval)} eval texts" if spec.label.label_eval else "",
        "soft" if spec.label.soft else "hard",
        teacher.root,
    )
    started = time.perf_counter()
    train_rows, train = _label_split(stage.name, "train", task.train, teacher, labeller, spec, sampling)
    seconds = time.perf_counter() - started
    require(
        len(train_rows) > 0,
        "method.verbaliser",
        labeller.describe()["verbaliser"],
        f"mapped none of the teacher's {train['requested']} answers to a class, so the student would have nothing "
        "to learn.",
        f"look at the answers in the completion cache ({teacher.root}); set method.verbaliser to the words the "
        "teacher uses, or change method.template so it answers with a class name.",
    )
    generation = {
        "pipeline": "label",
        "prompts": train["requested"],
        "completions_requested": train["requested"],
        "cached_hits": train["cached_hits"],
        "paid": train["paid"],
        "kept": train["kept"],
        "rejected": train["rejected"],
        "rejected_by": {"no_class": train["rejected"]} if train["rejected"] else {},
        "soft_labels": train["soft_labels"],
        **({"unanimous": train["unanimous"], "answers_per_text": sampling.n} if "unanimous" in train else {}),
        "agreement_with_data": train["accuracy"],  # the teacher's labels against the training split's own
        "completions_per_s": round(train["requested"] / max(seconds, 1e-9), 2),
        "dataset": str(out),
    }
    eval_rows = []
    if spec.label.label_eval:
        eval_rows, counts = _label_split(stage.name, "eval", task.eval, teacher, labeller, spec, sampling)
        generation["eval"] = {k: v for k, v in counts.items() if k != "accuracy"} | {
            "teacher_accuracy": counts["accuracy"],  # rejected answers count as wrong
        }
    seconds = time.perf_counter() - started
    record = stage_record(stage, teacher, seconds, generation)
    card = _card(cfg, stage, teacher, labeller, record)
    card["reuse"] = "python -m distillkit " + labeller.reuse_overrides(str(out), cfg)
    write_dataset(out, train_rows, kind.export_rows(task.eval), card, _markdown, eval_teacher=eval_rows)
    return record


def _label_split(name: str, split_name: str, split, teacher, labeller, spec, sampling):
    """(the kept rows, the counts) of one split: requested, cached_hits, paid, kept, rejected, soft_labels,
    accuracy (the teacher's labels against the split's own; a rejected answer counts as wrong)."""
    conversations = labeller.prompts(split, spec.system_prompt)
    hits, misses = teacher.hits, teacher.misses
    progress = Progress(f"{name}: {split_name}", len(conversations))  # a line every 10 s: texts, kept, rejected

    def each(i: int, completions) -> None:
        kept = labeller.vote(completions)[0] is not None
        progress.add(int(kept), int(not kept))

    answers = teacher.generate(conversations, sampling, each)
    rows, soft, right, unanimous = [], 0, 0, 0
    examples = split.to_list()
    for example, completions in zip(examples, answers):
        label, dist, answer, votes = labeller.vote(completions)  # teacher.sampling.n answers: a majority vote
        if label is None:
            continue
        soft += dist is not None
        right += label == example["label"]
        unanimous += votes == len(completions) and len({labeller.read(c)[0] for c in completions}) == 1
        rows.append(labeller.row(example, label, dist, answer))
    counts = {
        "requested": len(conversations),
        "cached_hits": teacher.hits - hits,
        "paid": teacher.misses - misses,
        "kept": len(rows),
        "rejected": len(conversations) - len(rows),
        "soft_labels": soft,
        "accuracy": round(right / max(len(conversations), 1), 6),
    }
    if sampling.n > 1:  # self-consistency: how often the n answers agreed
        counts["unanimous"] = unanimous
    log.info(
        "[%s] %s: %d texts, %d labelled (%d soft), %d rejected (no class); %d from the cache, %d paid; "
        "teacher accuracy %.4f",
        name,
        split_name,
        counts["requested"],
        counts["kept"],
        soft,
        counts["rejected"],
        counts["cached_hits"],
        counts["paid"],
        counts["accuracy"],
    )
    return rows, counts


def _card(cfg, stage: Stage, teacher, labeller, record: dict) -> dict:
    g = record["generation"]
    return {
        "pipeline": "label",
        "teacher": teacher_card(cfg, teacher),
        "prompt": {"system_prompt": stage.generation.system_prompt, **labeller.describe()},
        "label_names": labeller.label_names,
        "source": f"the training split of data={cfg.data.name}",
        "sampling": {k: getattr(cfg.teacher.sampling, k) for k in ("temperature", "max_tokens", "logprobs")}
        | {"top_logprobs": cfg.teacher.sampling.top_logprobs, "seed": cfg.teacher.sampling.seed},
        "counts": {k: g[k] for k in ("prompts", "cached_hits", "paid", "kept", "rejected", "soft_labels")}
        | {"agreement_with_data": g["agreement_with_data"]}
        | ({"eval": g["eval"]} if "eval" in g else {}),
        "files": {
            "train": "train.jsonl (text, label, soft when the teacher's log-probs gave one, the teacher's answer)",
            "eval": "eval.jsonl (the task's eval split, gold labels)",
            "eval_teacher": "eval_teacher.jsonl (the teacher's labels of the eval split)",
        },
        "record": record,
    }


def _markdown(card: dict) -> str:
    c, t, p = card["counts"], card["teacher"], card["prompt"]
    lines = [
        "# Teacher-labelled dataset (label pipeline)",
        "",
        f"- teacher: {t['describe']} (teacher={t['name']})",
        f"- texts: {card['source']}",
        f"- prompt template: {p['template']!r}; system prompt: {p['system_prompt']!r}",
        f"- verbaliser ({p['match']} match): " + "; ".join(f"{k}: {', '.join(v)}" for k, v in p["verbaliser"].items()),
        f"- labels: {'soft (top log-probs, floor ' + str(p['floor']) + ')' if p['soft'] else 'hard'}",
        f"- counts: {c['prompts']} texts, {c['kept']} labelled ({c['soft_labels']} soft), {c['rejected']} rejected "
        f"(no class); {c['cached_hits']} from the cache, {c['paid']} paid",
    ]
    if "eval" in c:
        e = c["eval"]
        lines.append(
            f"- eval split: {e['requested']} texts labelled apart ({e['paid']} paid), teacher accuracy "
            f"{e['teacher_accuracy']:.4f} ({e['rejected']} rejected, counted wrong)"
        )
    lines += ["", f"Reuse: `{card['reuse']}`", ""]
    return "\n".join(lines)
