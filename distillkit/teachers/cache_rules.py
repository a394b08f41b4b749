"""Which stages' teacher outputs may be stored and read back instead of recomputed, and why not: the rules both
teacher-output caches (``output_cache``: whole outputs; ``topk_cache``: top-k next-token log-probs) share, and
the column both add to a cached view."""

from __future__ import annotations

ROW = "teacher_row"  # the column (and batch key) that addresses an example of a cached view, in both caches
SHARDED = "the teacher is sharded over the processes (hardware.shard_teacher), and the cache is built per process"


def sharded(cfg) -> bool:
    return bool(getattr(getattr(cfg, "hardware", None), "shard_teacher", False))


def why_not(stage, online_augmentation: list[str]) -> str | None:
    """Why caching the teacher of ``stage`` would be wrong, or None when it is right."""
    teacher = stage.teacher
    if not stage.objective.needs_teacher:
        return "its loss reads no teacher outputs"
    if stage.objective.uncacheable:
        return stage.objective.uncacheable
    if teacher.kind in ("ema", "snapshots"):
        return (
            f"its teacher ({teacher.describe()}) changes as the student trains, so yesterday's outputs are not today's"
        )
    if stage.student.model in teacher.models:
        return f"its teacher is {stage.student.model!r}, the model the stage trains"
    if online_augmentation:
        return (
            f"online augmentation ({', '.join(online_augmentation)}) changes the inputs at every step, so no "
            "output is seen twice"
        )
    return None
