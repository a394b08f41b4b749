"""Faults as a user meets them on the command line: SIGTERM and resume, two runs sharing an empty cache."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import TINY
from tests.helpers import ROOT

pytestmark = pytest.mark.slow


def _env():
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "MPLBACKEND": "Agg"}
    env.pop("WANDB_API_KEY", None)
    env.pop("WANDB_MODE", None)
    env.pop("WANDB_SERVICE", None)  # a W&B service of this pytest process: each run here starts its own
    return env


def _start(args, cwd):
    return subprocess.Popen(
        [sys.executable, "-m", "distillkit", *args],
        cwd=cwd,
        env=_env(),
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )


def _wait_for(path, predicate, timeout=300):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if path.exists() and predicate(path.read_text()):
            return
        time.sleep(0.2)
    raise AssertionError(f"{path} never satisfied the condition")


def test_sigterm_leaves_error_txt_and_resume_continues_the_same_run(tmp_path, cache_dir):
    tiny = [o for o in TINY if not o.startswith(("train.max_steps", "logger="))]
    args = [*tiny, f"cache_dir={cache_dir}", "logger=wandb", "train.max_steps=40", "hydra.run.dir=run"]
    proc = _start(args, tmp_path)
    metrics = tmp_path / "run" / "metrics.jsonl"
    _wait_for(
        metrics,
        lambda text: any(
            json.loads(line)["stage"] == "distill" and json.loads(line)["step"] >= 4 for line in text.splitlines()
        ),
    )
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-2000:]
    assert "Traceback" not in err
    error = (tmp_path / "run" / "error.txt").read_text()
    assert "SIGTERM" in error and f"resume={tmp_path / 'run'}" in error
    assert not (tmp_path / "run" / "results.json").exists()
    first_id = json.loads((tmp_path / "run" / "run.json").read_text())["wandb_id"]
    assert first_id

    resumed = subprocess.run(
        [sys.executable, "-m", "distillkit", "resume=run"],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    # recorded as the run it continues, not as the resume command
    assert results["run"]["overrides"] == args[:-1]  # hydra.run.dir is Hydra's, not the run's
    assert results["stages"][-1]["resumed_from"] and results["stages"][-1]["steps"] == 40
    assert not (tmp_path / "outputs").exists()  # no new, empty run folder for the resume
    assert not (tmp_path / "run" / "error.txt").exists()
    assert json.loads((tmp_path / "run" / "run.json").read_text())["wandb_id"] == first_id  # the same W&B run
    assert {p.name.rsplit("-", 1)[-1] for p in (tmp_path / "run" / "wandb").glob("offline-run-*")} == {first_id}
    log = (tmp_path / "run" / "distillkit.log").read_text()
    assert log.rstrip().endswith(f"student: {tmp_path / 'run' / 'student'}") and "retention" in log[-2000:]


def test_two_runs_on_one_empty_cache_prepare_the_teacher_once(tmp_path, cache_dir):
    cache = tmp_path / "shared-cache"
    procs = [
        _start([*TINY, f"cache_dir={cache}", "teacher.prepare_epochs=3", f"hydra.run.dir=run{i}"], tmp_path)
        for i in range(2)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-3000:]
    prepared = [json.loads((tmp_path / f"run{i}" / "results.json").read_text())["stages"][0] for i in range(2)]
    assert sorted(p["cached"] for p in prepared) == [False, True]  # one prepared it, the other waited and reused it
    assert prepared[0]["cache_dir"] == prepared[1]["cache_dir"]
    assert len(list((cache / "teachers").glob("[0-9a-f]*[0-9a-f]"))) == 1


@pytest.mark.parametrize("ddp", [False, True])
def test_a_diverging_run_exits_3_with_its_reason_in_error_txt(tmp_path, cache_dir, ddp):
    hardware = (
        ["hardware=ddp", "hardware.devices=2", "hardware.accelerator=cpu", "hardware.per_device_batch_size=8"]
        if ddp
        else []
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "distillkit",
            *TINY,
            f"cache_dir={cache_dir}",
            *hardware,
            "train.learning_rate=1e30",
            "hydra.run.dir=run",
        ],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 3, proc.stderr[-3000:]
    error = (tmp_path / "run" / "error.txt").read_text()
    assert error.startswith("error: ") and "Traceback" not in error and "train.learning_rate=" in error
    assert not (tmp_path / "run" / "results.json").exists() and not (tmp_path / "run" / "student").exists()


def test_kill_9_then_resume_reproduces_the_uninterrupted_run_and_no_secret_is_written(tmp_path, cache_dir):
    secrets = {
        "WANDB_API_KEY": "wandb-secret-0123456789abcdef0123456789abcdef",
        "HF_TOKEN": "hf_secretTOKEN42",
        "AWS_SECRET_ACCESS_KEY": "aws-secret-key-xyz",
    }
    tiny = [o for o in TINY if not o.startswith(("train.max_steps", "logger="))]
    # Enough steps after checkpoint-6 that the kill lands mid-run: with the teacher's outputs cached a tiny step
    # takes milliseconds, and 30 steps could finish before the poll below sees the checkpoint.
    args = [*tiny, f"cache_dir={cache_dir}", "logger=wandb", "logger.mode=offline", "train.max_steps=150"]
    env = {**_env(), **secrets}
    reference = subprocess.run(
        [sys.executable, "-m", "distillkit", *args, "hydra.run.dir=ref"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
    )
    assert reference.returncode == 0, reference.stderr[-3000:]

    proc = subprocess.Popen(
        [sys.executable, "-m", "distillkit", *args, "hydra.run.dir=run"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    checkpoints = tmp_path / "run" / "checkpoints" / "distill"
    deadline = time.time() + 300
    # any checkpoint: with save_total_limit=2 a given one (checkpoint-6) lives only until two later ones exist, a
    # window a fast step can close between two polls, and then the poll waited out the run (flaky on an idle machine)
    while not list(checkpoints.glob("checkpoint-*/trainer_state.json")) and time.time() < deadline:
        time.sleep(0.1)
    # SIGKILL to the job's whole process group, as a scheduler or a lost node kills a job: no handler runs, nothing
    # is cleaned up, and W&B's service dies with it (killing the main process alone can leave that service holding
    # the run id for minutes; tracking._init then resumes into a new W&B run).
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    assert not (tmp_path / "run" / "results.json").exists()
    resumed = subprocess.run(
        [sys.executable, "-m", "distillkit", "resume=run"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    ref = json.loads((tmp_path / "ref" / "results.json").read_text())
    res = json.loads((tmp_path / "run" / "results.json").read_text())
    assert res["stages"][-1]["resumed_from"] and res["stages"][-1]["steps"] == 150
    for section, key in (
        ("student", "accuracy"),
        ("student", "f1_macro"),
        ("comparison", "kl_to_teacher"),
        ("comparison", "agreement"),
    ):
        assert res[section][key] == ref[section][key], (section, key)
    assert res["stages"][-1]["final_loss_terms"] == pytest.approx(ref["stages"][-1]["final_loss_terms"], rel=1e-5)

    for path in [p for p in (tmp_path / "run").rglob("*") if p.is_file()] + [tmp_path / "ref" / "distillkit.log"]:
        data = path.read_bytes()
        for name, secret in secrets.items():
            assert secret.encode() not in data, f"{name} leaked into {path}"


def test_resume_waits_for_a_killed_runs_wandb_service_to_release_the_run_id():
    """After kill -9 the killed process's W&B service may hold the run id ("run ID ... is in use"): a resume retries,
    then continues in a new W&B run instead of failing; a new run (no id) fails at once on such an error."""
    from types import SimpleNamespace

    from distillkit.tracking import _init

    calls = []

    def init(**kwargs):
        calls.append(kwargs)
        if len(calls) < 3:
            raise RuntimeError("run ID ce3dektg is in use")
        return "run"

    fake = SimpleNamespace(init=init)
    assert _init(fake, {"id": "ce3dektg"}, "ce3dektg", wait_s=0, settings=object) == "run" and len(calls) == 3
    # wandb.init writes the run id into the Settings it is given: every attempt gets a new one
    assert len({id(c["settings"]) for c in calls}) == 3 and all(c["id"] == "ce3dektg" for c in calls)
    calls.clear()
    with pytest.raises(RuntimeError, match="in use"):
        _init(fake, {}, None, wait_s=0)  # not a resume: the error is not ours to wait out
    assert len(calls) == 1
    calls.clear()
    held = SimpleNamespace(
        init=lambda **kwargs: (
            calls.append(kwargs)
            or ("new run" if "id" not in kwargs else (_ for _ in ()).throw(RuntimeError("run ID x is in use")))
        )
    )
    assert _init(held, {"id": "x", "resume": "allow", "dir": "d"}, "x", attempts=2, wait_s=0) == "new run"
    assert calls == [{"id": "x", "resume": "allow", "dir": "d"}] * 2 + [{"dir": "d"}]  # then a new W&B run


_HELD_BY_A_SHARED_SERVICE = r"""
import os, signal, subprocess, sys
from pathlib import Path
import wandb
from distillkit import tracking
from distillkit.config.schema import LoggerConfig

out = sys.argv[1]
wandb.init(project="p", mode="offline", dir=out).finish()  # this process's W&B service, now in WANDB_SERVICE
assert os.environ.get("WANDB_SERVICE")
holder = subprocess.Popen([sys.executable, "-c", (
    "import sys, time, wandb; wandb.init(project='p', id='held0001', resume='allow', mode='offline', dir=sys.argv[1]);"
    "print('up', flush=True); time.sleep(600)"), out], stdout=subprocess.PIPE, text=True, start_new_session=True)
assert holder.stdout.readline().strip() == "up"
os.killpg(holder.pid, signal.SIGKILL)  # the whole group: the shared service lives on, holding held0001
holder.wait()
init = tracking._init
tracking._init = lambda *a, **k: init(*a, **{**k, "attempts": 2, "wait_s": 0.5})
run = tracking.start(LoggerConfig(mode="offline"), Path(out), "job", None, {"a": 1}, run_id="held0001")
print("resumed-into", run.id, flush=True)
tracking.finish(run, {"done": 1})
"""


def test_a_resume_whose_wandb_run_id_a_shared_service_still_holds_continues_in_a_new_wandb_run(tmp_path):
    """CI failure on a clean clone: the killed run had connected to a W&B service it inherited through WANDB_SERVICE
    (pytest's own, from an in-process test), so killing its process group left that service holding the run id for
    good; the fallback to a new W&B run then asked for the same id again (wandb.init had written it into the shared
    Settings object) and the resume failed. Real wandb, offline."""
    env = _env()
    env["WANDB_MODE"] = "offline"
    done = subprocess.run(
        [sys.executable, "-c", _HELD_BY_A_SHARED_SERVICE, str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    new_id = done.stdout.split("resumed-into", 1)[1].split()[0]
    assert new_id != "held0001"
    assert "is still held by the interrupted process's W&B service" in done.stderr
    assert list((tmp_path / "wandb").glob(f"offline-run-*-{new_id}/run-{new_id}.wandb"))
