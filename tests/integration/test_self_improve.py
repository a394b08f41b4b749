"""method=critique_revise end to end against a real local HTTP server (``scripts/openai_stub_server.py``, whose
rules answer some prompts wrongly first, critique them and revise them right, and refuse some revisions), and
method=star with the embedded tiny student, its kept/rejected rows made deterministic by a checker named in the
config (``tests/helpers_star.py``): rounds recorded, the kept rows exactly the ones the checker accepts, no hint in
a kept prompt, the budget split across the rounds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from distillkit.config.schema import validate
from distillkit.tasks.causal_lm.synthetic import parse, solve
from tests.conftest import TINY_LM, compose_config

ROWS = 40


def _run(overrides, out: Path):
    from distillkit.run import RunContext, run

    cfg = validate(compose_config(list(overrides)))
    out.mkdir(parents=True, exist_ok=True)
    return run(cfg, RunContext(output_dir=out, job_name="test", overrides=tuple(overrides)))


def _rows(out: Path, stage: str) -> list[dict]:
    return [json.loads(line) for line in (out / "generated" / stage / "train.jsonl").read_text().splitlines()]


def test_critique_revise_end_to_end_against_the_stub(openai_stub, tmp_path, cache_dir):
    server = openai_stub(wrong_first=("add", "count"), empty_revision=("reverse",))
    endpoint = [
        "teacher=openai",
        f"teacher.endpoint.base_url={server.url}",
        "teacher.endpoint.model=stub",
        "teacher.endpoint.api_key_env=null",
        "teacher.endpoint.concurrency=4",
    ]
    overrides = TINY_LM + [f"data.lm_synthetic.n_train={ROWS}", "method=critique_revise", f"cache_dir={cache_dir}"]
    results = _run(overrides + endpoint, tmp_path / "run")
    assert results["status"] == "complete"
    generate, distill = results["stages"]
    g = generate["generation"]
    from distillkit.tasks.causal_lm.synthetic import generate as make

    prompts = [r["prompt"] for r in make(seed=0, n_train=ROWS, n_eval=24).train]
    kinds = [parse(p)[0] for p in prompts]
    wrong = sum(k in ("add", "count") for k in kinds)
    dropped = sum(k == "reverse" for k in kinds)
    assert wrong > 0 and dropped > 0
    assert (g["prompts"], g["revised"], g["unchanged"]) == (ROWS, wrong, ROWS - wrong - dropped)
    assert (g["kept"], g["rejected"], g["rejected_by"]) == (ROWS - dropped, dropped, {"revision_empty": dropped})
    # three requests per prompt (answer, critique, revision), all paid once
    assert g["completions_requested"] == g["paid"] == 3 * ROWS and g["cached_hits"] == 0
    rows = _rows(tmp_path / "run", "generate")
    assert len(rows) == ROWS - dropped
    assert all(r["response"] == solve(r["prompt"]) for r in rows)  # every revision right, even the wrong firsts
    assert all("Critique" not in r["prompt"] for r in rows)  # the row's prompt is the original request
    card = json.loads((tmp_path / "run" / "generated" / "generate" / "card.json").read_text())
    assert card["counts"]["revised"] == wrong and card["critique_revise"]["principles"]
    assert distill["steps"] == results["budget"]["total"]["steps"] == 4 and generate["outside_budget"]
    # the same run again: every completion from the cache
    again = _run(overrides + endpoint, tmp_path / "again")["stages"][0]["generation"]
    assert (again["paid"], again["cached_hits"]) == (0, 3 * ROWS)
