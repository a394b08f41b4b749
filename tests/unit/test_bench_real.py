"""scripts/bench_real.py's pure helpers: the per-method summary, the gap, the budget check, the table, the data and
teacher arguments and the task's methods. No run, no process: hand-made results.json contents."""

from __future__ import annotations

import sys

import pytest

from tests.helpers import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
import bench_real  # noqa: E402 (after the scripts folder is on sys.path)


def _result(method: str, seed: int, acc: float, teacher: float = 0.9, steps=(100,), budget=None) -> dict:
    stages = [{"name": "teacher_prep", "steps": 500, "wall_time_s": 50.0}]
    stages += [{"name": f"s{i}", "steps": n, "wall_time_s": n / 10} for i, n in enumerate(steps)]
    result = {
        "run": {"method": method, "seed": seed, "wall_time_s": 10.0 * seed},
        "task": {"name": "classification"},
        "teacher": {"accuracy": teacher},
        "student": {"accuracy": acc},
        "comparison": {"retention": acc / teacher, "agreement": 0.8, "speedup": 3.0},
        "stages": stages,
    }
    if budget is not None:
        result["budget"] = {"total": {"steps": budget, "examples": 32 * budget, "teacher_forwards": 0}}
    return result


def test_summary_differences_gap_and_budget_flag():
    runs = [
        _result("kd", 1, 0.85),
        _result("none", 1, 0.80),
        _result("kd", 2, 0.87),
        _result("none", 2, 0.82),
        # its budget section says 104: within 5 %, whatever its stages add up to
        _result("pkd", 1, 0.83, steps=(300,), budget=104),
        _result("tinybert", 1, 0.88, steps=(60, 60)),
    ]
    s = bench_real.summarise(runs, "classification")
    rows = {r["method"]: r for r in s["rows"]}
    # the baseline, the reference, then the method table's order (pkd before tinybert), whatever the runs' order
    assert [r["method"] for r in s["rows"]] == ["none", "kd", "pkd", "tinybert"]
    assert rows["none"]["n"] == 2 and rows["none"]["seeds"] == [1, 2]
    assert rows["kd"]["vs_baseline"] == pytest.approx(0.05)
    assert rows["tinybert"]["vs_reference"] == pytest.approx(0.02)
    assert rows["none"]["steps"] == [100, 100] and rows["tinybert"]["steps"] == [120]  # two stages of 60
    assert rows["tinybert"]["train_s"] == [12.0] and rows["none"]["wall_s"] == [10.0, 20.0]
    assert rows["tinybert"]["budget_off"] and not rows["kd"]["budget_off"] and not rows["pkd"]["budget_off"]
    assert rows["pkd"]["steps"] == [104]
    assert s["gap"] == pytest.approx([0.10, 0.08])  # teacher 0.9 minus each baseline seed


def test_markdown_table_has_the_gap_and_one_row_per_method():
    runs = [_result("none", 1, 0.80), _result("none", 2, 0.82), _result("kd", 1, 0.85, steps=(130,))]
    text = bench_real.markdown(bench_real.summarise(runs, "classification"))
    assert "teacher: accuracy 90.00" in text
    assert "gap teacher minus label-only student (none), accuracy: 9.00 ± 1.41 points (n=2)" in text
    kd = next(line for line in text.splitlines() if line.startswith("| kd |"))
    cells = [c.strip() for c in kd.strip("|").split("|")]
    assert cells[:5] == ["kd", "1", "85.00", "+4.00", "+0.00"]
    assert cells[-3:] == ["130 (budget differs > 5 %)", "13", "10"]
    none = next(line for line in text.splitlines() if line.startswith("| none |"))
    assert "81.00 ± 1.41" in none and "budget differs" not in none


def test_summary_without_a_baseline_has_no_gap():
    s = bench_real.summarise([_result("kd", 1, 0.85)], "classification")
    assert s["gap"] == [] and s["rows"][0]["vs_baseline"] is None
    assert "- (no baseline runs)" in bench_real.markdown(s)


def test_data_arguments(tmp_path):
    (tmp_path / "train.jsonl").write_text("{}\n")
    (tmp_path / "dev.jsonl").write_text("{}\n")
    assert bench_real.data_overrides("classification", [str(tmp_path)]) == [
        "data=local",
        f"data.train_file={tmp_path / 'train.jsonl'}",
        f"data.eval_file={tmp_path / 'dev.jsonl'}",
    ]
    assert bench_real.data_overrides("causal_lm", [str(tmp_path / "train.jsonl"), str(tmp_path / "dev.jsonl")])[0] == (
        "data=lm_local"
    )
    assert bench_real.data_overrides("classification", ["some/dataset"]) == ["data=hub", "data.path=some/dataset"]
    (tmp_path / "dev.jsonl").unlink()
    with pytest.raises(SystemExit, match="needs a train"):
        bench_real.data_overrides("classification", [str(tmp_path)])


def test_teacher_argument_local_directory_or_hub_id(tmp_path):
    assert bench_real.teacher_overrides(str(tmp_path)) == ["teacher=hub", f"teacher.path={tmp_path.resolve()}"]
    assert bench_real.teacher_overrides("org/model") == ["teacher=hub", "teacher.path=org/model"]


def test_task_methods_come_from_the_method_table():
    classification, causal = bench_real.task_methods("classification"), bench_real.task_methods("causal_lm")
    assert classification[:2] == ["none", "kd"] and causal[:2] == ["sft", "forward_kl"]
    assert {"tinybert", "minilm", "takd", "born_again"} <= set(classification) and "sft" not in classification
    assert {"reverse_kl", "gkd", "seq_kd"} <= set(causal) and "kd" not in causal
    assert len(set(classification)) == len(classification)


def test_a_method_variant_is_a_row_of_its_own_after_its_method():
    assert bench_real.variant("tinybert:schedule=joint,kd_weight=0.5") == (
        "tinybert",
        ["method=tinybert", "method.schedule=joint", "method.kd_weight=0.5"],
    )
    assert bench_real.variant("kd") == ("kd", ["method=kd"])
    assert bench_real.folder_name("tinybert:schedule=joint,kd_weight=0.5") == "tinybert+schedule-joint+kd_weight-0.5"
    joint = {**_result("tinybert", 1, 0.86), "label": "tinybert+schedule-joint"}
    runs = [joint, {**_result("tinybert", 1, 0.84), "label": "tinybert"}, {**_result("none", 1, 0.8), "label": "none"}]
    rows = bench_real.summarise(runs, "classification")["rows"]
    assert [r["method"] for r in rows] == ["none", "tinybert", "tinybert+schedule-joint"]
    assert rows[2]["accuracy"] == [0.86] and rows[2]["vs_baseline"] == pytest.approx(0.06)
