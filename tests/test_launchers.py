"""Hydra's submitit launcher (the `cluster` extra): the Slurm config composes as the README shows it, and a sweep
launched through submitit's local executor runs every job (what cannot run here: the Slurm submission itself)."""

import json

import pytest

from .conftest import compose_config
from .test_causal_lm import TINY_LM
from .test_cli import cli

pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="needs distillkit[cluster]")


def test_slurm_launcher_config_composes():
    from hydra import compose, initialize_config_dir

    from distillkit import conf_dir

    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        cfg = compose("config", overrides=["hydra/launcher=slurm", "hydra.launcher.partition=gpu"],
                      return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher") and launcher.partition == "gpu"
    assert launcher.gpus_per_node == 8 and launcher.nodes == 1 and launcher.timeout_min == 720
    compose_config(["hydra/launcher=local"])  # the local twin composes too


@pytest.mark.slow
def test_a_sweep_through_the_submitit_local_launcher_runs_every_job(tmp_path, cache_dir):
    proc = cli(["distillkit", "-m", "hydra/launcher=local", *TINY_LM, f"cache_dir={cache_dir}", "method=sft,forward_kl",
                "hydra.sweep.dir=sweep"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    methods = {json.loads((tmp_path / "sweep" / str(i) / "results.json").read_text())["run"]["method"]
               for i in range(2)}
    assert methods == {"sft", "forward_kl"} and (tmp_path / "sweep" / ".submitit").is_dir()
