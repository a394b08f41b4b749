"""Shared fixtures: everything offline, CPU-only, and small enough for a 2-core machine; and the lanes.

Every test lives in a lane (DESIGN.md, "Layout"), and its directory gives its markers, so nobody can forget one:

    tests/unit/<package>/   no marker    no training, no process started; mirrors distillkit's packages
    tests/integration/      integration  end-to-end runs, training, the command line in subprocesses
    tests/faults/           faults       kill / SIGTERM / resume, W&B failures, broken caches
    tests/benchmarks/       benchmark    the smoke test of every script in scripts/ (also slow)

A test module outside these directories is a collection error. A unit test that starts a process fails and says
to move it to integration/."""

from __future__ import annotations

import os
import subprocess

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.pop("WANDB_API_KEY", None)
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# One torch thread per test process (and the distillkit processes tests start, which inherit it): the suite runs as
# two xdist workers on two cores, its models are tiny, and torch's thread pool on a busy machine spins instead of
# working (a 16-wide BART's layer norm took 11 ms instead of 0.1: back-translating 6 texts 13 s instead of 1.2).
os.environ.setdefault("OMP_NUM_THREADS", "1")

from pathlib import Path  # noqa: E402 (after the offline environment is set)

import pytest  # noqa: E402 (after the offline environment is set)
from hydra import compose, initialize_config_dir  # noqa: E402 (after the offline environment is set)

from distillkit import conf_dir  # noqa: E402 (after the offline environment is set)
from distillkit.config.schema import register_schemas, validate  # noqa: E402 (after the offline environment is set)

register_schemas()

# A teacher of 4 layers × 32 wide and a 2-layer student on 256 examples: seconds, not minutes.
TINY = [
    "logger=none",
    "student=bert-2l",
    "data.synthetic.n_train=256",
    "data.synthetic.n_eval=64",
    "data.max_length=48",
    "teacher.arch.num_layers=4",
    "teacher.arch.hidden_size=32",
    "teacher.arch.num_heads=2",
    "teacher.arch.intermediate_size=64",
    "teacher.arch.vocab_size=300",
    "teacher.prepare_epochs=1",
    "train.max_steps=6",
    "train.logging_steps=2",
    "train.save_steps=3",
    "hardware=cpu",
    "hardware.per_device_batch_size=16",
    "eval.latency_batches=2",
    "eval.throughput_batches=1",
]

# A 2-layer × 32 teacher, a 1-layer × 16 student, 128 examples: seconds.
TINY_LM = [
    "task=causal_lm",
    "logger=none",
    "hardware=cpu",
    "data.lm_synthetic.n_train=128",
    "data.lm_synthetic.n_eval=24",
    "teacher.arch.num_layers=2",
    "teacher.arch.hidden_size=32",
    "teacher.arch.num_heads=2",
    "teacher.arch.intermediate_size=64",
    "teacher.arch.vocab_size=300",
    "teacher.prepare_epochs=1",
    "student.hidden_size=16",
    "student.intermediate_size=32",
    "train.max_steps=4",
    "train.logging_steps=2",
    "train.save_steps=2",
    "hardware.per_device_batch_size=16",
    "eval.repeats=1",
    "eval.warmup=0",
    "task.max_new_tokens=6",
    "task.eval_generations=16",
    "task.stage_generations=8",
    "task.speed_batches=1",
]


def compose_config(overrides=()):
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        return compose("config", overrides=list(overrides))


TESTS = Path(__file__).resolve().parent
LANES = {"unit": (), "integration": ("integration",), "faults": ("faults",), "benchmarks": ("benchmark", "slow")}


def _lane(path: Path) -> str | None:
    try:
        return Path(path).resolve().relative_to(TESTS).parts[0]
    except ValueError:  # a test outside tests/ (pytest given another path)
        return None


def pytest_collection_modifyitems(config, items):
    """Mark every test by the lane its directory names; refuse a test that sits in no lane."""
    for item in items:
        lane = _lane(item.path)
        if lane is None:
            continue
        if lane not in LANES:
            raise pytest.UsageError(
                f"{item.path.relative_to(TESTS.parent)}: every test lives in a lane, tests/"
                f"{{unit/<package>,integration,faults,benchmarks}}/ (tests/conftest.py)"
            )
        for marker in LANES[lane]:
            item.add_marker(marker)


@pytest.fixture(autouse=True)
def _unit_tests_start_no_process(request, monkeypatch):
    """tests/unit/ is the fast lane: a test there that starts a process (a CLI run, DDP workers, W&B's service)
    fails with the reason instead of slowing the lane down."""
    if _lane(request.node.path) == "unit":
        import multiprocessing.process

        def refuse(*args, **kwargs):
            raise RuntimeError(
                f"{request.node.nodeid} starts a process: move it to tests/integration/ "
                "(tests/unit/ neither trains nor starts processes)"
            )

        monkeypatch.setattr(subprocess.Popen, "__init__", refuse)
        monkeypatch.setattr(multiprocessing.process.BaseProcess, "start", refuse)
    yield


@pytest.fixture(autouse=True)
def _no_shared_wandb_service():
    """An in-process W&B run leaves its service's address in WANDB_SERVICE, and every distillkit subprocess started
    later would inherit it and share that service (a run killed there would leave its id held for good)."""
    yield
    os.environ.pop("WANDB_SERVICE", None)


@pytest.fixture
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.getbasetemp() / "distillkit-cache"


@pytest.fixture
def run_tiny(tmp_path, cache_dir):
    """Run distillkit in-process with the tiny settings plus ``overrides``; returns (results, run dir)."""
    from distillkit.run import RunContext, run

    def _run(overrides=(), out=None, resume=False, without=()):
        base = [o for o in TINY if not any(o.startswith(prefix) for prefix in without)]
        cfg = validate(compose_config(base + [f"cache_dir={cache_dir}"] + list(overrides)))
        out = Path(out or tmp_path / "run")
        out.mkdir(parents=True, exist_ok=True)
        return run(cfg, RunContext(output_dir=out, job_name="test", overrides=tuple(overrides), resume=resume)), out

    return _run


@pytest.fixture
def openai_stub():
    """Start ``scripts/openai_stub_server.py``'s server (a real FastAPI + uvicorn app speaking the chat-completions
    API on 127.0.0.1, a free port, in a thread of this process) with the given ``Behaviour`` settings; every server
    started is stopped at the end of the test. ``openai_stub(fail_first=[429, 500])`` → the running ``StubServer``."""
    from scripts.openai_stub_server import Behaviour, StubServer

    servers = []

    def start(**behaviour):
        server = StubServer(Behaviour(**behaviour)).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
