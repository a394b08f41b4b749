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


@pytest.fixture
def cache_dir(tmp_path):
    """This test's own cache (not the session's): the completion cache keys an answer by the endpoint's model name
    ("stub"), so answers that another test's stub server gave under other rules would be served here instead."""
    return tmp_path / "cache"


def _run(overrides, out: Path, resume: bool = False):
    from distillkit.run import RunContext, run

    cfg = validate(compose_config(list(overrides)))
    out.mkdir(parents=True, exist_ok=True)
    return run(cfg, RunContext(output_dir=out, job_name="test", overrides=tuple(overrides), resume=resume))


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


def test_star_rounds_keep_exactly_what_the_checker_accepts_and_split_the_budget(tmp_path, cache_dir):
    from tests import star_checker

    n = 32
    overrides = TINY_LM + [
        f"data.lm_synthetic.n_train={n}",
        f"cache_dir={cache_dir}",
        "method=star",
        "method.rounds=2",
        "method.checker=tests.star_checker:by_kind",
        "method.sft_share=0.8",  # round 0: a student fine-tuned enough to write more than blank lines
        "train.max_steps=100",
    ]
    star_checker.CALLS.clear()
    out = tmp_path / "star"
    results = _run(overrides, out)
    assert results["status"] == "complete"
    stages = {s["name"]: s for s in results["stages"]}
    names = [s["name"] for s in results["stages"] if s["name"] != "teacher_prep"]
    assert names == ["sft", "star_gen1", "round1", "star_gen2", "round2"]
    calls, seen = star_checker.CALLS, 0
    for r in (1, 2):
        record = stages[f"star_gen{r}"]
        g = record["generation"]
        assert g["writer"] == ("student" if r == 1 else "round1") and record["outside_budget"]
        # this round's checker calls: the first attempts (blank ones are never checked), then the rationalisations
        # (one chunk: 32 prompts < stages.generation.CHUNK, so no interleaving)
        checked, firsts = g["checked"], n - g["blank"]["first"]
        first, hinted = calls[seen : seen + firsts], calls[seen + firsts : seen + checked]
        assert g["rationalization_attempts"] == n - g["correct"]
        rows = _rows(out, f"star_gen{r}")
        accepted = {p for p, _, _, ok in first + hinted if ok}
        assert {row["prompt"] for row in rows} == accepted and len(rows) == g["kept"] > 0  # exactly the accepted
        assert g["correct"] == sum(ok for *_, ok in first) and g["accuracy"] == round(g["correct"] / n, 4)
        assert g["rationalized"] == sum(ok for *_, ok in hinted) and g["kept"] == g["correct"] + g["rationalized"]
        assert not any("Hint:" in row["prompt"] for row in rows)  # the hint is never part of a kept prompt
        assert "exact_match" in stages[f"round{r}"]["eval"]  # each round's eval exact match after it trained
        seen += checked
    assert seen == len(calls)
    assert all("Hint:" not in p for p, *_ in calls)  # the checker judges against the original prompt
    # the budget: train.max_steps=100 split over sft (0.8) and the two rounds; the generation stages outside it
    assert [stages[name]["steps"] for name in ("sft", "round1", "round2")] == [80, 10, 10]
    budget = results["budget"]
    assert budget["total"]["steps"] == 100 and [s["name"] for s in budget["stages"]] == ["sft", "round1", "round2"]
    assert [g["name"] for g in budget["generation"]] == ["star_gen1", "star_gen2"]
    # resumed after it finished: both rounds' datasets reused from their cards, the checker never asked again
    calls = len(star_checker.CALLS)
    again = {s["name"]: s for s in _run(overrides, out, resume=True)["stages"]}
    assert again["star_gen1"]["resumed_from"] == again["star_gen2"]["resumed_from"] == "done"
    assert len(star_checker.CALLS) == calls and again["star_gen2"]["generation"] == stages["star_gen2"]["generation"]
