"""scripts/check_figures.py: the figures it keeps of a results.json and how it compares two records, on hand-made
records (``record`` itself runs distillkit jobs in subprocesses; this smoke test runs none)."""

import importlib.util
import json

import pytest

from tests.helpers import ROOT


@pytest.fixture(scope="module")
def check_figures():
    spec = importlib.util.spec_from_file_location("check_figures", ROOT / "scripts" / "check_figures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


RESULTS = {
    "schema_version": 2,
    "status": "complete",
    "run": {"method": "kd", "seed": 42, "started_at": "2025-01-01T00:00:00"},
    "output_dir": "/tmp/run",
    "cache_dir": "/tmp/cache",
    "artifacts": {"student": "/tmp/run/student"},
    "teacher": {"accuracy": 0.9, "params": 4000, "latency_ms": 3.25, "throughput_samples_s": 812.5},
    "student": {"accuracy": 0.8125, "f1_macro": 0.79, "latency_ms_spread": 0.02},
    "comparison": {"agreement": 0.875, "retention": 0.9027, "speedup": 2.1, "gen_speedup": 1.7},
    "stages": [
        {
            "name": "distill",
            "steps": 6,
            "wall_time_s": 3.5,
            "train_samples_per_s": 27.4,
            "final_loss_terms": {"kd": 0.5, "ce": 1.25},
            "train_loss": 0.75,
        }
    ],
    "speed": {"device": "cpu", "threads": 1, "repeats": 5},
    "generations": [{"prompt": "2 + 2 =", "student": "4"}],
}


def test_figures_keep_the_quality_figures_and_drop_timings_places_and_dates(check_figures):
    assert check_figures.figures(RESULTS) == {
        "schema_version": 2,
        "status": "complete",
        "teacher.accuracy": 0.9,
        "teacher.params": 4000,
        "student.accuracy": 0.8125,
        "student.f1_macro": 0.79,
        "comparison.agreement": 0.875,
        "comparison.retention": 0.9027,
        "stages[0].name": "distill",
        "stages[0].steps": 6,
        "stages[0].final_loss_terms.kd": 0.5,
        "stages[0].final_loss_terms.ce": 1.25,
        "stages[0].train_loss": 0.75,
        "generations[0].prompt": "2 + 2 =",
        "generations[0].student": "4",
    }


def test_cache_keys_are_the_entries_two_levels_down(check_figures, tmp_path):
    assert check_figures.cache_keys(tmp_path / "absent") == []
    for entry in ("teacher/ab12", "teacher/.lock-ab12", "topk/cd34", "augment/ef56"):
        (tmp_path / entry).mkdir(parents=True)
    (tmp_path / "README.txt").write_text("a file beside the kinds")
    assert check_figures.cache_keys(tmp_path) == ["augment/ef56", "teacher/ab12", "topk/cd34"]


def _record(path, **jobs):
    path.write_text(json.dumps(jobs))
    return path


def test_compare_passes_identical_records_and_names_every_difference(check_figures, tmp_path, capsys):
    kd = {"overrides": ["method=kd"], "figures": check_figures.figures(RESULTS), "cache": ["teacher/ab12"]}
    before = _record(tmp_path / "before.json", kd=kd)
    assert check_figures.main(["compare", str(before), str(before)]) == 0
    assert capsys.readouterr().out.strip() == "1 runs, 15 figures compared, cache keys compared: identical"

    changed = {**kd, "figures": {**kd["figures"], "student.accuracy": 0.8126}, "cache": ["teacher/ff00"]}
    del changed["figures"]["stages[0].steps"]
    after = _record(tmp_path / "after.json", kd=changed, gkd=kd)
    assert check_figures.compare(before, after) == 1
    assert capsys.readouterr().out.splitlines() == [
        "gkd: only in after",
        "kd: stages[0].steps: 6 -> '<absent>'",
        "kd: student.accuracy: 0.8125 -> 0.8126",
        "kd: cache keys ['teacher/ab12'] -> ['teacher/ff00']",
        "1 runs, 15 figures compared, cache keys compared: 4 differences",
    ]
