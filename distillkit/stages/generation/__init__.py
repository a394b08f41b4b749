"""Generation stages (``Stage.generation``): the run's generating teacher (an endpoint, the teacher model, or a model
of the run) writes a dataset that a later stage trains on (``DataView("generated")``). They train nothing and sit
outside the optimizer budget, like ``teacher_prep``; each record counts what was asked for and what was kept.

| module | pipeline |
| --- | --- |
| ``responses.py`` | ``responses`` (Alpaca, Taori et al. 2023): the teacher answers every training prompt |
| ``pipelines.py`` | ``self_instruct`` (Wang et al. 2023), ``explanations`` (Orca), ``dialogue`` (Vicuna) |
| ``labelling.py`` | ``label``: a classifier's training texts labelled through a prompt and a verbaliser |
| ``self_improve.py`` | ``star`` (Zelikman et al. 2022), ``critique_revise`` (Constitutional AI's supervised stage) |
| ``common.py`` | what they share: the writer behind the completion cache, the progress line, the filters, the card |

Every answer goes through the completion cache (``teachers/generating.CachedTeacher``) the moment it arrives, so a
run killed half way, resumed, or started again pays for no completion twice. The dataset is written into
``<run>/generated/<stage>/`` (``train.jsonl``, ``eval.jsonl``: the task's eval split as it was, ``card.json``,
``card.md``), whole or not at all, and can be trained on later with ``data=lm_local`` (``data=local`` for labels).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from distillkit import dist
from distillkit.errors import require
from distillkit.recipe.stage import Stage
from distillkit.stages.generation import labelling, pipelines, responses, self_improve
from distillkit.stages.generation.common import (
    dataset_card,
    generated_dir,
    generating_teacher,
    sampling_text,
    stage_record,
    write_dataset,
)

__all__ = ["generated_dir", "run_generation"]

log = logging.getLogger("distillkit")


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
    if stage.generation.pipeline in self_improve.PIPELINES:  # star, critique_revise: self_improve.py
        return self_improve.PIPELINES[stage.generation.pipeline](stage, ws, out)
    cfg, kind, spec = ws.cfg, ws.plan.kind, stage.generation
    sampling = cfg.teacher.sampling
    teacher = generating_teacher(ws)
    if spec.pipeline == "label":  # blackbox_label: the teacher's answers become class labels (labelling.py)
        return labelling.run_labelling(stage, ws, out, teacher)
    if spec.pipeline == "responses":
        made = responses.responses(stage, ws, teacher, sampling)
    else:  # self_instruct, explanations, dialogue: pipelines.py
        made = pipelines.run_pipeline(stage, ws, teacher, sampling)
    rows, rejected, seconds, requested = made.rows, made.rejected, made.seconds, made.requested
    generation = {
        "pipeline": spec.pipeline,
        "prompts": made.prompts,
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
    record = stage_record(stage, teacher, seconds, generation)
    require(
        len(rows) > 0,
        "teacher.sampling",
        sampling_text(sampling),
        f"gave no answer that passed the filters ({', '.join(f'{k} {v}' for k, v in rejected.items())}), so the "
        "student would have nothing to learn.",
        "look at the answers in the completion cache (" + str(teacher.root) + "); raise teacher.sampling.max_tokens "
        "if they were truncated, or set method.drop_truncated=false.",
    )
    card = dataset_card(cfg, kind, stage, teacher, sampling, record)
    card["filters"] |= made.filters
    card |= made.card
    write_dataset(out, rows, kind.export_rows(ws.plan.task.eval), card)
    return record
