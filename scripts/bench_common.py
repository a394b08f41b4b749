"""What the benchmark scripts share: one distillkit sweep per group, run as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path


def run_sweep(work: Path, name: str, args: list[str], seeds: str) -> float:
    """``python -m distillkit -m ARGS seed=SEEDS`` into ``work/name`` (cache under ``work/cache``, offline, no
    logger); returns its wall time in seconds."""
    cmd = [
        sys.executable,
        "-m",
        "distillkit",
        "-m",
        *args,
        f"seed={seeds}",
        "logger=none",
        f"cache_dir={work / 'cache'}",
        f"hydra.sweep.dir={work / name}",
    ]
    print("$ " + " ".join(cmd), flush=True)
    started = time.time()
    subprocess.run(
        cmd,
        check=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"},
        stdout=subprocess.DEVNULL,
    )
    return time.time() - started
