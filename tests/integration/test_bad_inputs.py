"""The bad-input catalogue on the command line: each refused with exit status 2, no traceback, one paragraph
naming the key, the value and the fix, before any folder is made or any heavy module is imported; and the cache
lock across processes (the in-process half: tests/unit/test_bad_inputs.py)."""

import subprocess
import sys

import pytest

from tests.conftest import TINY
from tests.helpers import cli

METHODS = ["attention_transfer", "crd", "distilbert", "fitnets", "kd", "minilm", "none", "pkd", "rkd", "tinybert"]


def _refused(proc, key: str) -> str:
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, proc.stderr
    assert errors[0].startswith(f"error: {key}=") and "Fix:" in errors[0]
    return errors[0]


@pytest.mark.parametrize(
    "args,key,words",
    [
        # Hydra's own composition errors, in distillkit's words (Hydra alone exits 1 and suggests +key=...)
        (["train.epoks=3"], "train.epoks", ["not a setting of train", "epochs", "learning_rate"]),
        (["method.temprature=3"], "method.temprature", ["method=kd", "temperature", "ce_weight"]),
        (["method=kdd"], "method", ["not an option of the method group", *METHODS]),
        (["method.ce_weight=abc"], "method.ce_weight", ["wrong type", "Float"]),
        (["seed=[1"], "override", ["cannot be parsed"]),
        (["method=none,kd"], "override", ["without -m", "-m"]),
        # distillkit's own schema checks, same path
        (["+foo=1"], "foo", ["top-level"]),
        (["method.temperature=0"], "method.temperature", ["positive"]),
    ],
)
def test_command_line_errors_are_one_paragraph_before_any_folder(tmp_path, args, key, words):
    proc = cli(["distillkit", *args, "hydra.run.dir=run"], tmp_path, timeout=120)
    line = _refused(proc, key)
    for word in words:
        assert word in line, line
    assert not (tmp_path / "run").exists()  # nothing was made for a command that cannot run


def test_preflight_checks_without_importing_torch_or_transformers():
    code = (
        "import sys; from distillkit.config.schema import register_schemas; from distillkit import preflight; "
        "register_schemas(); preflight.check(['method=kd', 'seed=3']);"
        "print(sorted(m for m in ('torch', 'transformers', 'datasets') if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_a_sweep_with_a_bad_job_is_refused_before_its_folder_exists(tmp_path):
    proc = cli(
        ["distillkit", "-m", "method=kd,pkd", "method.temperature=0,2", "hydra.sweep.dir=sweep"], tmp_path, timeout=120
    )
    line = _refused(proc, "method.temperature")
    assert "sweep job" in line and "no job was started" in line
    assert not (tmp_path / "sweep").exists()


def test_resume_of_a_directory_that_is_no_run(tmp_path):
    proc = cli(["distillkit", f"resume={tmp_path / 'nothing-here'}"], tmp_path, timeout=120)
    assert "no config.yaml" in _refused(proc, "resume")


def test_an_unusable_cache_dir_from_the_command_line(tmp_path):
    (tmp_path / "a-file").write_text("x")
    proc = cli(["distillkit", *TINY, f"cache_dir={tmp_path / 'a-file'}", "hydra.run.dir=run"], tmp_path, timeout=300)
    assert "is a file" in _refused(proc, "cache_dir")
    assert (tmp_path / "run" / "error.txt").read_text().startswith("error: cache_dir=")


def test_the_cache_lock_makes_a_second_builder_wait(tmp_path):
    """A second process asking for the same entry blocks until the first releases it."""
    import time

    from distillkit import store as cache

    final = tmp_path / "teachers" / "abc"
    code = (
        f"import time; from pathlib import Path; from distillkit import store as cache\n"
        f"with cache.locked(Path({str(final)!r})):\n    print('got', time.time(), flush=True)\n"
    )
    with cache.locked(final):
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        time.sleep(2.0)
        assert proc.poll() is None  # still waiting
        released = time.time()
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0 and float(out.split()[1]) >= released
