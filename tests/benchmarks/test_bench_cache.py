"""scripts/bench_cache.py: the teacher-cache benchmark runs every part with tiny settings and prints its figures."""

import pytest


@pytest.mark.slow
def test_benchmark_script_smoke(tmp_path):
    """scripts/bench_cache.py, every part, with the tiny settings: it runs and prints its figures."""
    import os
    import subprocess
    import sys

    from tests.conftest import TINY

    overrides = [arg for o in TINY if not o.startswith("logger") for arg in ("--override", o)]
    proc = subprocess.run(
        [
            sys.executable,
            "scripts/bench_cache.py",
            "all",
            "--work",
            str(tmp_path),
            "--steps",
            "4",
            "--repeats",
            "1",
            "--rows",
            "300",
            "--temperatures",
            "1,2",
            *overrides,
        ],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "cached kd epoch / label-only epoch:" in out and "hand loop (kd online)" in out
    assert "-m method.temperature=1,2 teacher.cache_outputs=never:" in out and "teacher.cache_outputs=auto:" in out
    assert "300-example 2-class task (logits):" in out and "top operators by self CPU time" in out
