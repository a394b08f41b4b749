"""``pipeline=responses`` (Alpaca's recipe, Taori et al. 2023): the teacher answers every training prompt."""

from __future__ import annotations

import logging
import time

from distillkit.recipe.stage import Stage
from distillkit.stages.generation.common import CHUNK, Made, Progress, count, filter_answers, sampling_text

log = logging.getLogger("distillkit")


def responses(stage: Stage, ws, teacher, sampling) -> Made:
    """pipeline=responses: the teacher answers every training prompt (Alpaca)."""
    kind, spec = ws.plan.kind, stage.generation
    conversations = kind.generation_prompts(ws.plan.task, spec.system_prompt)
    log.info(
        "[%s] %s answers %d training prompts (%s; %d completion(s) each); answers cached under %s",
        stage.name,
        teacher.describe(),
        len(conversations),
        sampling_text(sampling),
        sampling.n,
        teacher.root,
    )
    progress, rows, rejected = Progress(stage.name, len(conversations)), [], {}
    started = time.perf_counter()
    for start in range(0, len(conversations), CHUNK):
        chunk = conversations[start : start + CHUNK]
        kept_rows: dict[int, list] = {}

        def take(i: int, answers, chunk=chunk, kept_rows=kept_rows) -> None:
            kept, why = filter_answers(answers, spec.drop_truncated)
            count(rejected, why)
            kept_rows[i] = [kind.generated_row(chunk[i], a, spec.system_prompt) for a in kept]
            progress.add(len(kept), len(why))

        teacher.generate(chunk, sampling, take)
        rows += [row for i in range(len(chunk)) for row in kept_rows[i]]  # in prompt order
    seconds = time.perf_counter() - started
    return Made(rows, rejected, len(conversations), len(conversations) * sampling.n, seconds)
