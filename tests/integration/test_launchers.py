"""A sweep launched through submitit's local executor runs every job (the `cluster` extra; the Slurm config:
tests/unit/config/test_launchers.py)."""

import json

import pytest

from tests.conftest import TINY_LM
from tests.helpers import cli

pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="needs distillkit[cluster]")


@pytest.mark.slow
def test_a_sweep_through_the_submitit_local_launcher_runs_every_job(tmp_path, cache_dir):
    proc = cli(
        [
            "distillkit",
            "-m",
            "hydra/launcher=local",
            *TINY_LM,
            f"cache_dir={cache_dir}",
            "method=sft,forward_kl",
            "hydra.sweep.dir=sweep",
        ],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    methods = {
        json.loads((tmp_path / "sweep" / str(i) / "results.json").read_text())["run"]["method"] for i in range(2)
    }
    assert methods == {"sft", "forward_kl"} and (tmp_path / "sweep" / ".submitit").is_dir()
