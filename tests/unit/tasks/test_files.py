"""The error both tasks give for a dataset that loads neither from disk nor from the hub (tasks/files.py)."""

from __future__ import annotations

import pytest

from distillkit.errors import ConfigError
from distillkit.tasks.files import EXTENSIONS, unloadable_dataset


def test_unloadable_dataset_says_why_offline_and_names_the_tasks_own_file_settings(monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    err = unloadable_dataset("data.path", "org/missing", FileNotFoundError("no such dataset\nmore"), "use data=local")
    assert (err.key, err.value) == ("data.path", "org/missing")
    assert "switched off here" in err.problem and "(FileNotFoundError: no such dataset)" in err.problem
    assert err.fix.endswith(f"as files ({EXTENSIONS}) and use data=local.")
    monkeypatch.delenv("HF_DATASETS_OFFLINE")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    online = unloadable_dataset("data.path", "org/missing", OSError("x"), "use data=local")
    assert "neither a readable local dataset nor reachable on the hub" in online.problem


@pytest.mark.parametrize("task", ["classification", "causal_lm"])
def test_each_task_reports_a_missing_hub_dataset_with_its_own_fix(task, tmp_path, monkeypatch):
    """A path that is no saved dataset, with the hub off: a ConfigError naming the path key and the task's
    local-files option (data=local for classification, data=lm_local for causal LMs)."""
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    missing = str(tmp_path / "no-such-dataset")
    if task == "classification":
        from distillkit.config.data import DataConfig
        from distillkit.tasks.classification.data import _load_hub

        with pytest.raises(ConfigError) as err:
            _load_hub(DataConfig(name="hub", source="hub", path=missing))
        assert err.value.key == "data.path" and "data=local data.train_file=..." in err.value.fix
    else:
        from distillkit.tasks.causal_lm.data import _load_raw

        with pytest.raises(ConfigError) as err:
            _load_raw(missing, None, "data.path")
        assert err.value.key == "data.path" and "data=lm_local with data.train_file=..." in err.value.fix
    assert err.value.value == missing and "switched off here" in err.value.problem
