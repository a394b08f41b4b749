"""method=blackbox_sft's pipelines beyond responses, end to end on the embedded causal-LM task, with teacher=openai
pointed at the real local stub server (``scripts/openai_stub_server.py``, which proposes tasks, explains and answers
follow-ups by rule): self_instruct, explanations, dialogue. Each checks the dataset, its card and the counts."""

from __future__ import annotations

import json
import logging

import pytest

from distillkit.config.schema import validate
from distillkit.errors import ConfigError
from distillkit.stages.generation.pipelines import judge_proposal
from distillkit.tasks.causal_lm.synthetic import solve
from tests.conftest import TINY_LM, compose_config

ROWS = 12  # training prompts


@pytest.fixture
def cache_dir(tmp_path):
    """This test's own cache (not the session's): the completion cache keys an answer by the endpoint's model name
    ("stub"), so answers that another test's stub server gave under other rules would be served here instead."""
    return tmp_path / "cache"


@pytest.fixture
def run_pipeline(tmp_path, cache_dir):
    from distillkit.run import RunContext, run

    def _run(server, pipeline, overrides=(), name="run", resume=False):
        endpoint = [
            "teacher=openai",
            f"teacher.endpoint.base_url={server.url}",
            "teacher.endpoint.model=stub",
            "teacher.endpoint.api_key_env=null",
            "teacher.endpoint.concurrency=4",
        ]
        base = TINY_LM + [f"data.lm_synthetic.n_train={ROWS}", "method=blackbox_sft", f"cache_dir={cache_dir}"]
        overrides = [f"method.pipeline={pipeline}", "train.max_steps=2", *overrides]
        cfg = validate(compose_config(base + endpoint + overrides))
        out = tmp_path / name
        out.mkdir(parents=True, exist_ok=True)
        results = run(cfg, RunContext(output_dir=out, job_name="test", overrides=tuple(overrides), resume=resume))
        folder = out / "generated" / "generate"
        rows = [json.loads(line) for line in (folder / "train.jsonl").read_text().splitlines()]
        return results, rows, json.loads((folder / "card.json").read_text()), folder

    return _run


def _checks(results, card):
    assert results["status"] == "complete"
    generate, distill = results["stages"]
    g = generate["generation"]
    assert generate["outside_budget"] and distill["steps"] == 2 and g["completions_per_s"] > 0
    assert card["counts"]["kept"] == g["kept"] and card["counts"]["rejected_by"] == g["rejected_by"]
    assert card["counts"]["rejected"] == sum(g["rejected_by"].values())
    return g


def test_self_instruct_grows_the_pool_from_seed_tasks(run_pipeline, openai_stub, tmp_path, caplog):
    seeds = tmp_path / "seeds.jsonl"
    seed_tasks = ["What is 2 + 3?", "Sort in ascending order: 5 1 4", "Add 6 and 1."]
    seeds.write_text("".join(json.dumps({"prompt": t}) + "\n" for t in seed_tasks))
    server = openai_stub()
    first = [f"method.seed_file={seeds}", "method.pool_size=15", "method.examples_per_prompt=2"]
    with caplog.at_level(logging.INFO, logger="distillkit"):
        results, rows, card, folder = run_pipeline(server, "self_instruct", first)
    g = _checks(results, card)
    assert (
        "- self_instruct: " in (folder / "card.md").read_text() and "seed_tasks=3" in (folder / "card.md").read_text()
    )
    line = next(r.getMessage() for r in caplog.records if "proposals ·" in r.getMessage())
    assert " kept · " in line and " rejected · " in line and "completions/s" in line
    si = card["self_instruct"]
    # 12 new tasks joined the 3 seeds, each answered correctly by the teacher
    assert (si["seed_tasks"], si["pool_size"], si["new_tasks"], si["cap_hit"]) == (3, 15, 12, False)
    assert g["kept"] == len(rows) == 12 and g["prompts"] == si["proposals"]
    assert all(r["response"] == solve(r["prompt"]) for r in rows)
    # no kept task is a near-duplicate of a seed or of an earlier kept task
    pool = list(seed_tasks)
    for r in rows:
        assert judge_proposal(r["prompt"], pool, 0.7) is None, r["prompt"]
        pool.append(r["prompt"])
    # every proposal is accounted for: kept, or rejected for a reason the card names
    assert si["proposals"] == g["kept"] + g["rejected"]
    assert set(g["rejected_by"]) <= {"empty", "invalid", "near_duplicate"} and g["rejected_by"]
    assert {"empty", "invalid", "near_duplicate"} <= set(card["filters"])
    # completions: one per proposal, one per answered task; a proposal request asked again (the same pool tasks
    # drawn; greedy) comes from the cache, so the server saw each conversation once
    assert g["completions_requested"] == si["proposals"] + 12 == g["paid"] + g["cached_hits"]
    assert len(server.answered()) == g["paid"] and g["rejected_by"].get("near_duplicate", 0) >= g["cached_hits"]

    # run again (another server, the same teacher and settings): the same proposals, all from the cache, no request
    again = openai_stub()
    results, rows_again, card, _ = run_pipeline(again, "self_instruct", first, name="again")
    g = results["stages"][0]["generation"]
    assert rows_again == rows and g["paid"] == 0 == len(again.calls) and g["cached_hits"] == si["proposals"] + 12

    # the cap: too few attempts for the target → a warning, the pool as it got, the cap on the card
    capped = [f"method.seed_file={seeds}", "method.pool_size=40", "method.max_attempts=10", "teacher.sampling.seed=1"]
    with caplog.at_level(logging.WARNING, logger="distillkit"):
        results, rows, card, _ = run_pipeline(openai_stub(), "self_instruct", capped, name="capped")
    si = card["self_instruct"]
    assert si["cap_hit"] and si["proposals"] == 10 and si["pool_size"] == 3 + len(rows) < 40 and rows
    assert any("method.max_attempts=10" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    # no new task at all within the cap: an error naming the key, not an empty dataset
    with pytest.raises(ConfigError) as err:
        run_pipeline(
            openai_stub(proposal="Draw a map."), "self_instruct", capped[:2] + ["method.max_attempts=3"], "none"
        )
    assert err.value.key == "method.max_attempts" and "no new task" in str(err.value)


def test_self_instruct_seeds_default_to_the_training_prompts(run_pipeline, openai_stub):
    results, rows, card, _ = run_pipeline(openai_stub(), "self_instruct", ["method.pool_size=16"])
    si = card["self_instruct"]
    assert si["seed_tasks"] == ROWS and "training prompts" in si["seed_source"] and si["pool_size"] == 16
    assert len(rows) == 4 == results["stages"][0]["generation"]["kept"]


def test_explanations_train_on_step_by_step_traces(run_pipeline, openai_stub):
    server = openai_stub()
    prompts = [
        "You are a helpful assistant. Think step by step. End with a line 'Final answer: <the answer>'.",
        "Be brief.",
    ]
    results, rows, card, _ = run_pipeline(server, "explanations", [f"method.system_prompts={json.dumps(prompts)}"])
    g = _checks(results, card)
    # the stub explains only when asked to think step by step: the 6 rows sent "Be brief." get the bare answer
    half = ROWS // 2
    assert (g["prompts"], g["kept"], g["rejected"]) == (ROWS, ROWS, 0)
    assert [r["system_prompt"] for r in rows] == [prompts[i % 2] for i in range(ROWS)]
    for r in rows:
        answer = solve(r["prompt"])
        if r["system_prompt"] == prompts[0]:
            assert r["response"].endswith(f"Final answer: {answer}") and "Step by step" in r["response"]
        else:
            assert r["response"] == answer
    assert card["explanations"]["rows_by_system_prompt"] == {prompts[0]: half, prompts[1]: half}
    assert card["prompts"]["system_prompts"] == prompts
    # the student's evaluation ran on the task's answers (exact match read from the final-answer line)
    assert "exact_match" in json.dumps(results["student"])


def test_explanations_reject_a_trace_without_the_answer_line(run_pipeline, openai_stub):
    asks = "End with a last line 'Final answer: <the answer>'."
    prompts = [f"Think step by step. {asks}", f"Answer. {asks}"]  # the stub explains only the first
    results, rows, card, _ = run_pipeline(
        openai_stub(), "explanations", [f"method.system_prompts={json.dumps(prompts)}"]
    )
    g = _checks(results, card)
    assert (g["kept"], g["rejected_by"]) == (ROWS // 2, {"no_final_answer": ROWS // 2})
    assert all(r["system_prompt"] == prompts[0] and "Final answer:" in r["response"] for r in rows)
    assert "no_final_answer" in card["filters"]


def test_dialogue_holds_multi_turn_conversations(run_pipeline, openai_stub):
    server = openai_stub()
    follow = ["Are you sure?", "Please repeat the answer only."]
    results, rows, card, folder = run_pipeline(
        server, "dialogue", ["method.turns=3", f"method.follow_ups={json.dumps(follow)}"]
    )
    g = _checks(results, card)
    assert (g["prompts"], g["kept"], g["rejected"]) == (ROWS, ROWS, 0)
    # first turns another test of the session asked already come from the cache; every follow-up is new
    assert g["completions_requested"] == 3 * ROWS == g["paid"] + g["cached_hits"] and g["paid"] == len(
        server.answered()
    )
    assert sum(p in follow for p in server.answered()) == 2 * ROWS
    d = card["dialogue"]
    assert (d["turns"], d["conversations"], d["assistant_turns"], d["follow_ups_from_data"]) == (3, ROWS, 3 * ROWS, 0)
    for i, r in enumerate(rows):
        m = r["messages"]
        assert [t["role"] for t in m] == ["user", "assistant"] * 3
        answer = solve(m[0]["content"])
        assert m[1]["content"] == answer
        assert [m[2]["content"], m[4]["content"]] == [follow[i % 2], follow[(i + 1) % 2]]
        for user, reply in ((m[2], m[3]), (m[4], m[5])):
            expected = answer if "repeat" in user["content"] else f"I checked it again: the answer is {answer}."
            assert reply["content"] == expected
    # the student's data view: every assistant turn labelled (three answers, each ending on eos), nothing else
    from types import SimpleNamespace

    from transformers import AutoTokenizer

    from distillkit.tasks.causal_lm.generated import view

    tok = AutoTokenizer.from_pretrained(folder.parent.parent / "student")
    data = view(
        folder / "train.jsonl", tok, SimpleNamespace(data=SimpleNamespace(prompt_template="{prompt}\n", max_length=256))
    )
    for row, r in zip(data, rows):
        labelled = [t for t, label in zip(row["input_ids"], row["labels"]) if label != -100]
        assert labelled.count(tok.eos_token_id) == 3
        answers = tok.decode(labelled).split(tok.eos_token)[:3]
        assert answers == [r["messages"][k]["content"] for k in (1, 3, 5)]
