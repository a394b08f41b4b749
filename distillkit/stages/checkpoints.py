"""A finished stage's marker: ``<run>/checkpoints/<stage>/done/`` holds its model's weights, adapters and record, so
a resumed run skips the stage."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from distillkit.recipe.stage import Stage

log = logging.getLogger(__name__)


def _done_dir(run_dir: Path, stage: Stage) -> Path:
    return run_dir / "checkpoints" / stage.name / "done"


def mark_done(stage: Stage, model, record: dict, run_dir: Path) -> None:
    """Keep what the next stages start from (the stage's model weights, its adapters) and the stage's
    record. Written to a temporary directory and renamed, so a half-written one is never taken as done."""
    import json
    import shutil

    import torch

    from distillkit.training.trainer import ADAPTERS_FILE

    final = _done_dir(run_dir, stage)
    tmp = final.with_name("done.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    torch.save(model.state_dict(), tmp / "student.pt")
    torch.save(stage.objective.adapters.state_dict(), tmp / ADAPTERS_FILE)
    (tmp / "record.json").write_text(json.dumps(record, default=str))
    os.replace(tmp, final)


def load_done(stage: Stage, model, run_dir: Path) -> dict | None:
    """If ``stage`` finished in an earlier attempt of this run: load its student weights and adapters into
    ``model`` and the objective, and return its record (marked ``resumed: "done"``); else None."""
    import json

    import torch

    from distillkit.training.trainer import ADAPTERS_FILE

    final = _done_dir(run_dir, stage)
    if not (final / "record.json").exists():
        return None
    model.load_state_dict(torch.load(final / "student.pt", map_location="cpu", weights_only=True))
    stage.objective.adapters.load_state_dict(torch.load(final / ADAPTERS_FILE, map_location="cpu", weights_only=True))
    record = json.loads((final / "record.json").read_text())
    record["resumed_from"] = "done"
    log.info("[%s] finished in an earlier attempt: skipped (weights from %s)", stage.name, final)
    return record
