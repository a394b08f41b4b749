"""method=blackbox_sft end to end on the embedded causal-LM task, with teacher=openai pointed at a real local HTTP
server (``scripts/openai_stub_server.py``, which answers the task's prompts correctly): the generated dataset, its
card and its reuse with data=lm_local; the budget rule; a generation stopped half way and resumed without paying a
completion twice; the API key in no file of the run; and the same pipeline with the local teacher model writing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from distillkit.config.schema import validate
from distillkit.errors import ConfigError
from distillkit.tasks.causal_lm.synthetic import solve
from tests.conftest import TINY_LM, compose_config

SECRET = "sk-test-0123456789-must-never-be-written"
ROWS = 40  # training prompts the teacher answers


@pytest.fixture
def cache_dir(tmp_path):
    """This test's own cache (not the session's): the completion cache keys an answer by the endpoint's model name
    ("stub"), so answers that another test's stub server gave under other rules would be served here instead."""
    return tmp_path / "cache"


@pytest.fixture
def run_bb(tmp_path, cache_dir):
    from distillkit.run import RunContext, run

    def _run(server, overrides=(), out=None, resume=False, key_env=None):
        endpoint = [
            "teacher=openai",
            f"teacher.endpoint.base_url={server.url}",
            "teacher.endpoint.model=stub",
            f"teacher.endpoint.api_key_env={key_env or 'null'}",
            "teacher.endpoint.concurrency=4",
        ]
        base = TINY_LM + [f"data.lm_synthetic.n_train={ROWS}", "method=blackbox_sft", f"cache_dir={cache_dir}"]
        cfg = validate(compose_config(base + endpoint + list(overrides)))
        out = Path(out or tmp_path / "run")
        out.mkdir(parents=True, exist_ok=True)
        ctx = RunContext(output_dir=out, job_name="test", overrides=tuple(overrides), resume=resume)
        return run(cfg, ctx), out

    return _run


def _rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "generated" / "generate" / "train.jsonl").read_text().splitlines()]


def test_responses_pipeline_end_to_end(run_bb, openai_stub, monkeypatch, cache_dir, caplog):
    caplog.set_level("INFO")
    server = openai_stub(api_key=SECRET)
    monkeypatch.setenv("STUB_TEACHER_KEY", SECRET)
    results, out = run_bb(server, ["teacher.sampling.n=2"], key_env="STUB_TEACHER_KEY")
    assert not [r for r in caplog.records if r.name.startswith("httpx")]  # no log line per request
    assert results["status"] == "complete" and results["teacher"] is None  # an endpoint: nothing to evaluate here
    generate, distill = results["stages"]
    g = generate["generation"]
    # n=2 identical answers per prompt: one kept, the repeat rejected as a duplicate
    assert (g["prompts"], g["completions_requested"], g["paid"], g["cached_hits"]) == (ROWS, 2 * ROWS, 2 * ROWS, 0)
    assert (g["kept"], g["rejected"], g["rejected_by"]) == (ROWS, ROWS, {"duplicate": ROWS})
    assert len(server.answered()) == ROWS and g["completions_per_s"] > 0
    rows = _rows(out)
    assert len(rows) == ROWS and all(r["response"] == solve(r["prompt"]) for r in rows)  # the teacher's right answers
    # the budget: train.max_steps is the student's; generation is outside it, like teacher_prep
    budget = results["budget"]
    assert distill["steps"] == budget["total"]["steps"] == budget["planned_steps"] == 4
    assert [s["name"] for s in budget["stages"]] == ["distill"] and budget["generation"][0]["kept"] == ROWS
    assert generate["outside_budget"] and generate["steps"] == 0
    card = json.loads((out / "generated" / "generate" / "card.json").read_text())
    assert card["teacher"]["model"] == "stub" and card["teacher"]["api_key_env"] == "STUB_TEACHER_KEY"
    assert card["sampling"]["n"] == 2 and card["counts"]["rejected_by"] == {"duplicate": ROWS}
    assert "data=lm_local" in (out / "generated" / "generate" / "card.md").read_text()
    # the key: in no file the run wrote (config, results, dataset, card, metrics, student) nor in the cache
    for folder in (out, cache_dir):
        for f in (p for p in folder.rglob("*") if p.is_file()):
            assert SECRET.encode() not in f.read_bytes(), f


def test_a_rerun_pays_nothing_and_the_dataset_trains_again_with_lm_local(
    run_bb, openai_stub, run_tiny_lm_local, tmp_path
):
    run_bb(openai_stub(), out=tmp_path / "first")
    again, out = run_bb(openai_stub(), out=tmp_path / "second")  # another server (port), the same model: cached
    g = again["stages"][0]["generation"]
    assert (g["paid"], g["cached_hits"]) == (0, ROWS)
    folder = out / "generated" / "generate"
    results = run_tiny_lm_local(folder / "train.jsonl", folder / "eval.jsonl")
    assert results["status"] == "complete" and results["task"]["train_examples"] == ROWS


@pytest.fixture
def run_tiny_lm_local(tmp_path, cache_dir):
    from distillkit.run import RunContext, run

    def _run(train, evals):
        cfg = validate(
            compose_config(
                TINY_LM
                + [
                    f"cache_dir={cache_dir}",
                    "method=sft",
                    "data=lm_local",
                    f"data.train_file={train}",
                    f"data.eval_file={evals}",
                ]
            )
        )
        out = tmp_path / "reuse"
        out.mkdir()
        return run(cfg, RunContext(output_dir=out, job_name="reuse", overrides=()))

    return _run


def test_a_generation_stopped_half_way_resumes_without_paying_twice(run_bb, openai_stub, tmp_path):
    dead = openai_stub(fail_after=15)  # answers 15 requests, then refuses every later one (a run killed mid-way)
    out, fresh = tmp_path / "run", ["teacher.sampling.seed=7"]  # settings no other test used: nothing cached yet
    with pytest.raises(ConfigError) as err:
        run_bb(dead, fresh, out=out)
    assert err.value.key == "teacher.endpoint" and not (out / "generated" / "generate").exists()
    paid_before = dead.answered()
    assert len(paid_before) == 15
    alive = openai_stub()
    results, _ = run_bb(alive, fresh, out=out, resume=True)
    g = results["stages"][0]["generation"]
    assert (g["cached_hits"], g["paid"], g["kept"]) == (15, ROWS - 15, ROWS)
    paid = paid_before + alive.answered()
    assert len(paid) == len(set(paid)) == ROWS  # every prompt paid for exactly once over both attempts
    # resumed again after it finished: the dataset is reused, no request at all
    results, _ = run_bb(openai_stub(), fresh, out=out, resume=True)
    assert results["stages"][0]["resumed_from"] == "done"


def test_a_local_teacher_model_writes_through_the_same_pipeline(tmp_path, cache_dir):
    from distillkit.run import RunContext, run

    cfg = validate(
        compose_config(
            TINY_LM
            # a teacher trained long enough to write more than blank lines (which the empty filter rejects)
            + [
                f"cache_dir={cache_dir}",
                "method=blackbox_sft",
                "data.lm_synthetic.n_train=32",
                "teacher.prepare_epochs=40",
            ]
        )
    )
    out = tmp_path / "local"
    out.mkdir()
    results = run(cfg, RunContext(output_dir=out, job_name="local", overrides=()))
    names = [s["name"] for s in results["stages"]]
    assert names == ["teacher_prep", "generate", "distill"]
    g = results["stages"][1]["generation"]
    assert g["prompts"] == 32 and g["kept"] + g["rejected"] == 32 and "local model" in results["stages"][1]["teacher"]
    assert results["budget"]["total"]["steps"] == 4 and results["teacher"] is not None


@pytest.mark.parametrize("problem", ["unreachable", "key unset", "model not listed"])
def test_the_command_line_stops_before_any_work_with_one_paragraph(problem, openai_stub, tmp_path):
    """Each endpoint problem: exit 2 and one ConfigError paragraph (key, value, fix), before data or models load."""
    from scripts.openai_stub_server import free_port
    from tests.helpers import cli

    server = openai_stub(models=("stub",))
    url = f"http://127.0.0.1:{free_port()}/v1" if problem == "unreachable" else server.url
    key_env = "DISTILLKIT_TEST_UNSET_KEY" if problem == "key unset" else "null"
    model = "gpt-4o" if problem == "model not listed" else "stub"
    proc = cli(
        [
            "distillkit",
            *TINY_LM,
            "method=blackbox_sft",
            "teacher=openai",
            f"teacher.endpoint.base_url={url}",
            f"teacher.endpoint.model={model}",
            f"teacher.endpoint.api_key_env={key_env}",
            "teacher.endpoint.check_timeout=3",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        tmp_path,
        env={"DISTILLKIT_TEST_UNSET_KEY": ""},
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    expected = {
        "unreachable": f"teacher.endpoint.base_url='{url}': cannot be reached",
        "key unset": "teacher.endpoint.api_key_env='DISTILLKIT_TEST_UNSET_KEY': names an environment variable",
        "model not listed": "teacher.endpoint.model='gpt-4o': is not a model",
    }[problem]
    assert expected in proc.stderr and "Fix:" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "run" / "results.json").exists() and len(server.calls) == 0
