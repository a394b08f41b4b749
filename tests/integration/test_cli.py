"""The command line as a user runs it: subprocesses, a multirun, W&B offline files, error exits."""

import json

import pytest
import torch

from tests.conftest import TINY
from tests.helpers import cli
from tests.wandb_records import read_run


@pytest.mark.parametrize(
    "override,key,at_plan_time",
    [
        ("method.temperature=0", "method.temperature", False),
        ("student.init=uniform student.num_layers=20", "student.num_layers", True),
        ("method=pkd method.layer_map.strategy=list method.layer_map.layers=[9]", "method.layer_map.layers", True),
        ("teacher=hub teacher.path=no-such-org/no-such-model", "teacher.path", True),
        pytest.param(
            "hardware=gpu",
            "hardware.accelerator",
            True,
            marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU"),
        ),
    ],
)
def test_bad_input_is_one_paragraph_and_exit_2(tmp_path, cache_dir, override, key, at_plan_time):
    tiny = [o for o in TINY if not (override.startswith("teacher=") and o.startswith("teacher.arch"))]
    args = ["distillkit", *tiny, f"cache_dir={cache_dir}", *override.split(), "hydra.run.dir=run"]
    proc = cli(args, tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    error_lines = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(error_lines) == 1 and error_lines[0].startswith(f"error: {key}=") and "Fix:" in error_lines[0]
    assert not (tmp_path / "run" / "results.json").exists()
    if at_plan_time:  # found once the run had its folder: the reason is kept there
        assert (tmp_path / "run" / "error.txt").read_text().startswith(f"error: {key}=")
    else:  # refused before Hydra started: no folder at all
        assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_multirun_sweep_wandb_offline_and_compare(tmp_path, cache_dir):
    tiny = [o for o in TINY if o != "logger=none"]
    proc = cli(
        [
            "distillkit",
            "-m",
            *tiny,
            f"cache_dir={cache_dir}",
            "logger=wandb",
            "method=none,kd",
            "hydra.sweep.dir=sweep",
        ],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "wandb sync" in proc.stdout + proc.stderr  # says how to upload the offline runs
    jobs = sorted((tmp_path / "sweep").glob("[0-9]"))
    assert len(jobs) == 2
    groups = set()
    for job in jobs:
        results = json.loads((job / "results.json").read_text())
        assert results["status"] == "complete" and results["run"]["output_dir"] == str(job)
        run_dirs = list((job / "wandb").glob("offline-run-*"))
        assert len(run_dirs) == 1  # run files under the job's own directory
        record = read_run(run_dirs[0])
        groups.add(record["group"])
        assert record["name"] == results["run"]["name"] and record["name"].startswith("method=")
        assert json.loads(record["config"]["method.name"]) == results["run"]["method"]
        assert {"distill/loss", "distill/loss/ce", "distill/step"} <= record["history_keys"]
        assert json.loads(record["summary"]["student/accuracy"]) == pytest.approx(results["student"]["accuracy"])
        assert "comparison/retention" in record["summary"]
        # the budget the run spent, in W&B's summary as in results.json (6 steps: the tiny config's budget)
        assert json.loads(record["summary"]["budget/steps"]) == results["budget"]["total"]["steps"] == 6
        assert json.loads(record["summary"]["stages/distill/examples"]) == results["budget"]["total"]["examples"]
    assert len(groups) == 1 and groups.pop().startswith("sweep-")  # one group per sweep

    proc = cli(["distillkit.compare", "sweep"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "method=none" in proc.stdout and "method=kd" in proc.stdout
    assert "BUDGET MISMATCH" not in proc.stdout and "teacher fwd" in proc.stdout  # one budget for both methods
    assert (tmp_path / "sweep" / "compare.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


METHOD_STAGES = {
    "none": ["distill"],
    "kd": ["distill"],
    "fitnets": ["hints", "distill"],
    "rkd": ["distill"],
    "attention_transfer": ["distill"],
    "crd": ["distill"],
    "pkd": ["distill"],
    "distilbert": ["distill"],
    "tinybert": ["intermediate", "prediction"],
    "minilm": ["distill"],
    "born_again": ["gen0", "gen1", "gen2", "gen3"],
    "self_kd": ["distill"],
    "snapshot_ensemble": ["distill"],
    "ps_kd": ["distill"],
    "ema_teacher": ["distill"],
    "noisy_student": ["round1"],
    "takd": ["assistant3", "student"],
}
# task=causal_lm (tests/integration/test_causal_lm.py)
LM_METHODS = ("blackbox_sft", "critique_revise", "forward_kl", "gkd", "minillm", "reverse_kl", "seq_kd", "sft", "star")


@pytest.mark.slow
def test_every_method_in_one_glob_sweep(tmp_path, cache_dir):
    # 48 examples, batch 16: 3 steps an epoch, 3 epochs (epoch snapshots need epochs, not a step cap)
    proc = cli(
        [
            "distillkit",
            "-m",
            *TINY,
            f"cache_dir={cache_dir}",
            "method=glob(*,exclude=blackbox_label)",  # needs an endpoint teacher (skipped here): test_blackbox_label.py
            "train.max_steps=-1",
            "train.epochs=3",
            "data.synthetic.n_train=48",
            "hydra.sweep.dir=sweep",
        ],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = sorted((tmp_path / "sweep").glob("[0-9]*"), key=lambda p: int(p.name))
    seen = {}
    skipped = [job for job in jobs if (job / "skipped.txt").exists()]  # the causal-LM methods: another task
    assert len(skipped) == len(LM_METHODS) and not any((job / "results.json").exists() for job in skipped)
    assert all("task is classification" in (job / "skipped.txt").read_text() for job in skipped)
    for job in (job for job in jobs if job not in skipped):
        results = json.loads((job / "results.json").read_text())
        method = results["run"]["method"]
        seen[method] = [s["name"] for s in results["stages"] if s["name"] != "teacher_prep"]
        trained = [s for s in results["stages"] if s["name"] != "teacher_prep"]
        # one budget for every method: 3 epochs of the 48-example split at batch 16 = 9 optimizer steps, split
        # between a method's stages (noisy student's view holds an unlabeled pool too: the same steps)
        budget = results["budget"]
        assert budget["planned_steps"] == budget["total"]["steps"] == sum(s["steps"] for s in trained) == 9, method
        assert 0 < budget["total"]["examples"] <= 9 * 16 and all(s["final_loss_terms"] for s in trained), method
        assert method != "none" or budget["total"]["teacher_forwards"] == 0  # labels alone: no teacher ran
        produced = [s for s in trained if s.get("eval")]  # every model a stage produced is evaluated
        assert produced and produced[-1]["name"] == seen[method][-1], method
        metrics = [json.loads(line) for line in (job / "metrics.jsonl").read_text().splitlines()]
        assert {m["stage"] for m in metrics} >= set(seen[method])  # every stage logs under its own name
    assert seen == METHOD_STAGES
    # tinybert fits pre-softmax scores from hooks by default: no method in the sweep needs eager attention
    assert "eager attention" not in proc.stderr + proc.stdout

    proc = cli(["distillkit.compare", "sweep"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert all(f"method={m}" in proc.stdout for m in METHOD_STAGES)


@pytest.mark.slow
def test_ps_kd_from_the_command_line(tmp_path, cache_dir):
    """method=ps_kd as a user runs it, without a teacher: 7 steps of 3 an epoch, so two epoch snapshots refine the
    target (the α schedule step by step: tests/integration/test_self_distill.py)."""
    overrides = ["teacher=none", "method=ps_kd", "data.synthetic.n_train=48", "train.max_steps=7"]
    proc = cli(["distillkit", *TINY, f"cache_dir={cache_dir}", *overrides, "hydra.run.dir=run"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["status"] == "complete" and results["run"]["method"] == "ps_kd" and results["teacher"] is None
    assert [s["name"] for s in results["stages"]] == ["distill"] and results["stages"][0]["steps"] == 7
    assert "L = 1·CE((1 − α_t)·y + α_t·softmax(z_prev), softmax(z_s))" in proc.stdout + proc.stderr  # printed
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert any("loss/ps_kd" in m for m in metrics)


def test_help_is_fast_and_lists_groups(tmp_path):
    proc = cli(["distillkit", "--help"], tmp_path, timeout=60)
    assert proc.returncode == 0
    methods = (
        "method: attention_transfer, blackbox_label, blackbox_sft, born_again, crd, critique_revise, distilbert, "
        "ema_teacher, fitnets, forward_kl, gkd, kd, minillm, minilm, noisy_student, none, pkd, ps_kd, reverse_kl, "
        "rkd, self_kd, seq_kd, sft, snapshot_ensemble, star, takd, tinybert"
    )
    for group in (methods, "student:", "teacher:", "hardware:", "logger:"):
        assert group in proc.stdout
