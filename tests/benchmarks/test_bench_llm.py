"""scripts/bench_llm.py: the causal-LM benchmark runs both parts with tiny settings and prints its figures."""

import pytest

from tests.conftest import TINY_LM


@pytest.mark.slow
def test_benchmark_script_smoke(tmp_path):
    """scripts/bench_llm.py, both parts, with the tiny settings and one seed: it runs and prints its figures."""
    import os
    import subprocess
    import sys

    overrides = [o for o in TINY_LM if not o.startswith(("logger", "task="))]
    proc = subprocess.run(
        [
            sys.executable,
            "scripts/bench_llm.py",
            "all",
            "--work",
            str(tmp_path),
            "--seeds",
            "1",
            "--override",
            *overrides,
        ],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert all(f"\n{m} " in out for m in ("sft", "forward_kl", "reverse_kl", "gkd", "minillm", "seq_kd")), out
    assert "cached, second run (reads)" in out and "second run vs online:" in out
