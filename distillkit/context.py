"""Where and as what a run is recorded: ``RunContext``, light enough to import before any check.

A run's identity (its job name, the overrides it was started with, its sweep group, its W&B run id) is
saved in ``<run dir>/run.json`` when it starts, so ``resume=<run dir>`` continues it under the same name,
overrides and W&B run instead of recording the resume command as if it were the run.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

RUN_FILE = "run.json"


@dataclass
class RunContext:
    """Where and as what this run is recorded (from Hydra's runtime, or set by tests)."""

    output_dir: Path
    job_name: str = "default"
    overrides: tuple[str, ...] = ()
    group: str | None = None  # the sweep's name in a multirun
    resume: bool = False
    wandb_id: str | None = field(default=None)  # set when the W&B run starts; a resume continues it

    def save(self) -> None:
        """Record the run's identity (rank 0, at start and once the W&B run id is known)."""
        data = {k: v for k, v in asdict(self).items() if k not in ("output_dir", "resume")}
        data["overrides"] = list(self.overrides)
        (Path(self.output_dir) / RUN_FILE).write_text(json.dumps(data, indent=2) + "\n")

    def restore(self) -> None:
        """Take the identity of the run in ``output_dir`` (when it recorded one)."""
        path = Path(self.output_dir) / RUN_FILE
        if not path.is_file():
            return
        data = json.loads(path.read_text())
        self.job_name, self.group, self.wandb_id = (
            data.get("job_name", self.job_name),
            data.get("group"),
            data.get("wandb_id"),
        )
        self.overrides = tuple(data.get("overrides", ()))
