"""Tests for distillkit.compare on hand-written fake sweep directories (no torch needed)."""

import io
import json
import math

import pytest

from distillkit import compare as cmp
from tests.helpers import ROOT

REPO = ROOT
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# (job dir, method, seed, student accuracy, agreement, kl)
JOBS = [
    ("0", "none", 1, 0.70, 0.80, 0.50),
    ("1", "none", 2, 0.76, 0.84, 0.40),
    ("2", "none", 3, 0.79, 0.86, 0.30),
    ("3", "kd", 1, 0.80, 0.90, 0.20),
    ("4", "kd", 2, 0.82, 0.92, 0.10),
    ("5", "kd", 3, 0.84, 0.94, 0.15),
    ("6", "pkd", 1, 0.85, 0.95, 0.05),
]
TEACHER_ACC = 0.90


def results(method, seed, acc, agreement, kl, **extra):
    data = {
        "schema_version": 1,
        "status": "complete",
        "run": {
            "name": f"method={method},seed={seed}",
            "output_dir": "x",
            "overrides": [f"method={method}", f"seed={seed}"],
            "method": method,
            "teacher": "embedded-bert-12l",
            "student": "bert-4l",
            "data": "synthetic",
            "seed": seed,
            "started_at": "2026-11-22T19:00:00",
            "wall_time_s": 61.25,
        },
        "task": {"metric": "accuracy", "num_labels": 8, "eval_examples": 1000},
        "teacher": {
            "accuracy": TEACHER_ACC,
            "f1_macro": 0.89,
            "params": 3012345,
            "latency_ms": 3.1,
            "throughput_samples_s": 900.0,
        },
        "student": {
            "accuracy": acc,
            "f1_macro": acc - 0.01,
            "params": 1100000,
            "latency_ms": 1.2,
            "throughput_samples_s": 2400.0,
        },
        "comparison": {
            "agreement": agreement,
            "kl_to_teacher": kl,
            "retention": acc / TEACHER_ACC,
            "compression": 2.74,
            "speedup": 2.6,
        },
        "stages": [{"name": "distill", "cached": False, "steps": 750, "wall_time_s": 40.2}],
        "some_future_key": {"ignored": True},  # unknown extra keys must be tolerated
    }
    data.update(extra)
    return data


def write_job(sweep, name, data=None, overrides=None):
    job = sweep / name
    (job / ".hydra").mkdir(parents=True)
    if overrides is not None:
        (job / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    if data is not None:
        (job / "results.json").write_text(json.dumps(data))
    return job


def fake_sweep(tmp_path):
    root = tmp_path / "multirun" / "2026-11-22" / "19-00-00"
    for name, method, seed, acc, agr, kl in JOBS:
        write_job(root, name, results(method, seed, acc, agr, kl), overrides=[f"method={method}", f"seed={seed}"])
    write_job(root, "7", None, overrides=["method=kd", "seed=4"])  # crashed: no results.json
    failed = results("kd", 5, 0.1, 0.1, 9.9)
    failed["status"] = "failed"
    write_job(root, "8", failed, overrides=["method=kd", "seed=5"])
    (root / "multirun.yaml").write_text("hydra: {}\n")
    return root


@pytest.fixture
def sweep(tmp_path):
    return fake_sweep(tmp_path)


def run_compare(paths, **kw):
    out = io.StringIO()
    rows = cmp.compare(paths, out=out, **kw)
    return rows, out.getvalue()


def test_rows_and_values(sweep):
    rows, text = run_compare([sweep], plot_path=False)
    assert [r["job"] for r in rows] == [f"method={m},seed={s}" for _, m, s, *_ in JOBS]
    kd1 = rows[3]
    assert kd1["method"] == "kd" and kd1["student"] == "bert-4l" and kd1["seed"] == 1
    assert kd1["metric"] == "accuracy"
    assert kd1["teacher_metric"] == pytest.approx(0.90)
    assert kd1["student_metric"] == pytest.approx(0.80)
    assert kd1["retention"] == pytest.approx(0.80 / 0.90)
    assert kd1["agreement"] == pytest.approx(0.90)
    assert kd1["kl"] == pytest.approx(0.20)
    assert kd1["compression"] == pytest.approx(2.74) and kd1["speedup"] == pytest.approx(2.6)
    assert kd1["wall_s"] == pytest.approx(61.25)
    assert kd1["overrides"] == ["method=kd", "seed=1"]
    # table: header with the metric name, one line per job, percentages and ratios formatted
    lines = text.splitlines()
    assert "teacher accuracy" in lines[0] and "student accuracy" in lines[0]
    assert "retention %" in lines[0] and "compression" in lines[0] and "wall s" in lines[0]
    kd1_line = next(ln for ln in lines if ln.startswith("method=kd,seed=1 "))
    assert "0.8000" in kd1_line and "88.9" in kd1_line and "90.0" in kd1_line
    assert "2.74" in kd1_line and "2.60" in kd1_line and "61.2" in kd1_line
    header, rule = lines[0], lines[1]
    assert set(rule) == {"-"} and len(rule) == len(header)


def test_failed_jobs_are_listed_not_crashed_on(sweep):
    rows, text = run_compare([sweep], plot_path=False)
    assert len(rows) == len(JOBS)
    assert "failed/unfinished jobs (2):" in text
    assert f"{sweep / '7'}: no results.json" in text
    assert f"{sweep / '8'}: status 'failed'" in text
    assert "seed=5" not in text.split("failed/unfinished")[0]


def test_unreadable_json_and_schema_warning(tmp_path):
    write_job(tmp_path, "0", results("kd", 1, 0.8, 0.9, 0.2, schema_version=3))
    (tmp_path / "1").mkdir()
    (tmp_path / "1" / "results.json").write_text("{not json")
    rows, text = run_compare([tmp_path], plot_path=False)
    assert len(rows) == 1
    assert "warning:" in text and "schema_version 3 (expected 2)" in text
    assert "unreadable results.json" in text


def test_group_by_seed_mean_and_std(sweep):
    rows, text = run_compare([sweep], group_by_seed=True, plot_path=False)
    by = {r["job"]: r for r in rows}
    assert set(by) == {"method=none", "method=kd", "method=pkd"}
    kd, none, pkd = by["method=kd"], by["method=none"], by["method=pkd"]
    assert kd["n"] == 3 and kd["seeds"] == [1, 2, 3]
    # kd accuracies 0.80, 0.82, 0.84: mean 0.82, sample std sqrt((.02²+0+.02²)/2) = 0.02
    assert kd["student_metric"] == pytest.approx(0.82)
    assert kd["student_metric_std"] == pytest.approx(0.02)
    # none accuracies 0.70, 0.76, 0.79: mean 0.75, deviations -.05 .01 .04 -> var .0042/2
    assert none["student_metric"] == pytest.approx(0.75)
    assert none["student_metric_std"] == pytest.approx(math.sqrt(0.0021))
    # kd KL 0.20, 0.10, 0.15: mean 0.15, std 0.05; agreement .90 .92 .94: mean .92, std .02
    assert kd["kl"] == pytest.approx(0.15) and kd["kl_std"] == pytest.approx(0.05)
    assert kd["agreement"] == pytest.approx(0.92) and kd["agreement_std"] == pytest.approx(0.02)
    assert kd["retention"] == pytest.approx(0.82 / 0.90)
    assert kd["retention_std"] == pytest.approx(0.02 / 0.90)
    # n = 1: just the value, no std
    assert pkd["n"] == 1 and pkd["student_metric"] == pytest.approx(0.85)
    assert pkd["student_metric_std"] is None
    kd_line = next(ln for ln in text.splitlines() if ln.startswith("method=kd "))
    assert "0.8200 ± 0.0200" in kd_line and "92.0 ± 2.0" in kd_line
    pkd_line = next(ln for ln in text.splitlines() if ln.startswith("method=pkd "))
    assert "0.8500" in pkd_line and "±" not in pkd_line


def test_group_uses_hydra_overrides_yaml_when_run_has_none(tmp_path):
    for name, seed, acc in [("0", 1, 0.6), ("1", 2, 0.8)]:
        data = results("kd", seed, acc, 0.9, 0.1)
        del data["run"]["overrides"], data["run"]["name"]
        write_job(tmp_path, name, data, overrides=["method=kd", "+student=tiny", f"++seed={seed}"])
    rows, _ = run_compare([tmp_path], plot_path=False)
    assert [r["job"] for r in rows] == ["0", "1"]  # falls back to the dir name
    groups, _ = run_compare([tmp_path], group_by_seed=True, plot_path=False)
    assert len(groups) == 1 and groups[0]["n"] == 2
    assert groups[0]["job"] == "+student=tiny,method=kd"
    assert groups[0]["student_metric"] == pytest.approx(0.7)
    assert groups[0]["student_metric_std"] == pytest.approx(math.sqrt(0.02))


def test_sort_and_natural_order(tmp_path):
    for i, acc in enumerate([0.5, 0.9, 0.7] + [0.6] * 9):
        write_job(tmp_path, str(i), results("kd", i, acc, 0.9, 0.1))
    rows, _ = run_compare([tmp_path], plot_path=False)
    assert [r["seed"] for r in rows] == list(range(12))  # job dir 10 after 9
    rows, _ = run_compare([tmp_path], plot_path=False, sort="-student_metric")
    assert [r["student_metric"] for r in rows][:3] == [0.9, 0.7, 0.6]


def test_single_run_dir_and_plot_default(sweep):
    rows, text = run_compare([sweep / "4"])
    assert len(rows) == 1 and rows[0]["seed"] == 2
    png = sweep / "4" / "compare.png"
    assert f"plot written: {png}" in text
    assert png.read_bytes()[:8] == PNG_MAGIC


@pytest.mark.parametrize("grouped", [False, True])
def test_plot_is_valid_png(sweep, tmp_path, grouped):
    target = tmp_path / "plots" / "out.png"
    run_compare([sweep], group_by_seed=grouped, plot_path=target)
    data = target.read_bytes()
    assert len(data) > 1000 and data[:8] == PNG_MAGIC


def test_main_exit_2_when_no_results(tmp_path, capsys):
    empty = tmp_path / "empty"
    write_job(empty, "0", None)
    assert cmp.main([str(empty)]) == 2
    captured = capsys.readouterr()
    assert "no results found" in captured.err and str(empty) in captured.err
    assert "results.json" in captured.err and "complete" in captured.err
    assert "no results.json" in captured.out  # the crashed job is still listed
    assert not (empty / "compare.png").exists()
    assert cmp.main([str(tmp_path / "missing"), "--no-plot"]) == 2
    captured = capsys.readouterr()
    assert "does not exist" in captured.out and "missing" in captured.err


def test_main_ok_and_bad_sort(sweep, tmp_path, capsys):
    assert cmp.main([str(sweep), "--group-by-seed", "--plot", str(tmp_path / "g.png")]) == 0
    assert (tmp_path / "g.png").exists()
    with pytest.raises(SystemExit) as exc:
        cmp.main([str(sweep), "--sort", "nope"])
    assert exc.value.code == 2


def _rows_with_accuracies(tmp_path, accuracies, teacher=0.676):
    """Rows as `load` reads them from jobs whose student accuracies are ``accuracies``."""
    for i, acc in enumerate(accuracies):
        data = results("kd", i, acc, 0.9, 0.1)
        data["teacher"]["accuracy"] = teacher
        write_job(tmp_path, str(i), data, overrides=["method=kd", f"seed={i}"])
    rows, _, _ = cmp.load([tmp_path])
    return rows


def test_plot_axis_is_fitted_to_the_data_not_started_at_zero(tmp_path):
    rows = _rows_with_accuracies(tmp_path, [0.639, 0.659, 0.6973])
    low, high = cmp.figure(rows).axes[0].get_ylim()
    assert 0.55 < low < 0.639  # above 0: a gap of a few points between bars is visible
    assert 0.6973 < high < 0.75
    assert (0.6973 - 0.639) / (high - low) > 0.5  # the data fill most of the axis


def test_plot_axis_includes_teacher_and_error_bars(tmp_path):
    rows = _rows_with_accuracies(tmp_path, [0.66, 0.67], teacher=0.72)
    assert cmp.figure(rows).axes[0].get_ylim()[1] > 0.72  # the teacher's mark is on the plot
    grouped = [{**rows[0], "job": "g", "n": 3, "student_metric": 0.66, "student_metric_std": 0.05}]
    low, high = cmp.figure(grouped, grouped=True).axes[0].get_ylim()
    assert low < 0.61 and high > 0.72  # mean ± std and the teacher
    assert low > 0


def test_y_limits_stay_at_zero_or_above_for_non_negative_data():
    assert cmp.y_limits([0.0, 0.01])[0] == 0.0
    low, high = cmp.y_limits([0.65, 0.65])  # one job that scores its teacher's figure: still a range
    assert low < 0.65 < high


# ------------------------------------------------------------------------------------------- budgets
def _budget(steps, examples, forwards=None):
    total = {"steps": steps, "examples": examples, "teacher_forwards": forwards, "wall_time_s": 10.0}
    return {"planned_steps": steps, "steps_per_epoch": 250, "pinned": [], "stages": [], "total": total}


def test_budget_columns_and_a_mismatch_flagged_at_the_top(tmp_path):
    root = tmp_path / "sweep"
    write_job(root, "0", results("kd", 1, 0.8, 0.9, 0.1, budget=_budget(750, 24000, 24000)))
    write_job(root, "1", results("tinybert", 1, 0.8, 0.9, 0.1, budget=_budget(1500, 48000, 48000)))
    write_job(root, "2", results("fitnets", 1, 0.8, 0.9, 0.1, budget=_budget(760, 24320, 24320)))  # 1.3 %: fine
    rows, text = run_compare(root, plot_path=False)
    assert [(r["steps"], r["examples"], r["teacher_fwd"]) for r in rows] == [
        (750, 24000, 24000),
        (1500, 48000, 48000),
        (760, 24320, 24320),
    ]
    first = text.splitlines()[0]
    assert (
        first.startswith("BUDGET MISMATCH: 1 of 3 runs") and "more than 5%" in first and "760 optimizer steps" in first
    )
    flagged = [line for line in text.splitlines() if line.startswith("  method=")]
    assert flagged == ["  method=tinybert,seed=1: 1500 steps, 48,000 examples"]
    header = next(line for line in text.splitlines() if line.startswith("job"))
    assert "steps" in header and "examples" in header and "teacher fwd" in header


def test_equal_budgets_print_no_warning_and_old_results_count_their_stage_steps(sweep):
    rows, text = run_compare(sweep, plot_path=False)  # schema-1 results: one 750-step distill stage each
    assert "BUDGET MISMATCH" not in text
    assert {r["steps"] for r in rows} == {750} and {r["examples"] for r in rows} == {None}


def test_budget_mismatch_needs_more_than_the_tolerance():
    rows = [{"job": str(i), "steps": s, "examples": None} for i, s in enumerate([100, 100, 105, 106])]
    reference, off = cmp.budget_mismatches(rows)
    assert reference == {"steps": 102.5} and [r["job"] for r in off] == []
    reference, off = cmp.budget_mismatches(rows + [{"job": "x", "steps": 200, "examples": None}])
    assert reference["steps"] == 105 and [r["job"] for r in off] == ["x"]
