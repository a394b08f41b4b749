"""method=blackbox_label end to end on the embedded classification task, with teacher=openai pointed at a real local
HTTP server (``scripts/openai_stub_server.py``: it answers each text's clean class name, a wrong class for an
``error_rate`` share of the texts and no class for a ``refuse_rate`` share, and the first token's top log-probs over
the class names when asked): the labelled dataset and its card, the counts of the train and eval splits, soft labels
used in the loss when log-probs are on and CE alone when not, a rerun paying nothing, and the dataset trained on again
with data=local."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from distillkit.config.schema import validate
from distillkit.tasks.classification.synthetic import LABEL_NAMES, generate
from scripts.openai_stub_server import _draw, classification_top
from tests.conftest import TINY, compose_config

N_TRAIN, N_EVAL, ERRORS, REFUSALS, K, FLOOR = 64, 32, 0.1, 0.05, 3, 1e-4
SOFT = ["teacher.sampling.logprobs=true", f"teacher.sampling.top_logprobs={K}"]


@pytest.fixture
def cache_dir(tmp_path):
    """This test's own cache (not the session's): the completion cache keys an answer by the endpoint's model name
    ("stub"), so answers that another test's stub server gave under other rules would be served here instead."""
    return tmp_path / "cache"


@pytest.fixture
def run_label(tmp_path, cache_dir):
    from distillkit.run import RunContext, run

    def _run(server, overrides=(), out="run"):
        endpoint = [
            "teacher=openai",
            f"teacher.endpoint.base_url={server.url}",
            "teacher.endpoint.model=stub",
            "teacher.endpoint.api_key_env=null",
            "teacher.endpoint.concurrency=4",
            "teacher.sampling.max_tokens=8",
        ]
        base = TINY + [
            f"data.synthetic.n_train={N_TRAIN}",
            f"data.synthetic.n_eval={N_EVAL}",
            "method=blackbox_label",
            f"method.floor={FLOOR}",
            f"cache_dir={cache_dir}",
        ]
        cfg = validate(compose_config(base + endpoint + list(overrides)))
        out = tmp_path / out
        out.mkdir(parents=True, exist_ok=True)
        return run(cfg, RunContext(output_dir=out, job_name="test", overrides=tuple(overrides))), out

    return _run


def _stub_answer(text: str, clean: int) -> int | None:
    """What the stub answers for ``text`` (its class id; None: a refusal), as its rule says."""
    draw = _draw(text)
    return None if draw < REFUSALS else (clean + 1) % len(LABEL_NAMES) if draw < REFUSALS + ERRORS else clean


def _expected_soft(answer: int) -> list[float]:
    """The stub's first-token top-K over class names, renormalised over the classes with the floor for the rest."""
    mass = [FLOOR] * len(LABEL_NAMES)
    for token, logprob in classification_top(LABEL_NAMES[answer], LABEL_NAMES, 0.7)[:K]:
        mass[LABEL_NAMES.index(token)] = math.exp(logprob)
    return [m / sum(mass) for m in mass]


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_soft_labels_from_top_logprobs_end_to_end_and_the_dataset_trains_again(run_label, openai_stub, cache_dir):
    server = openai_stub(error_rate=ERRORS, refuse_rate=REFUSALS)
    results, out = run_label(server, SOFT)
    assert results["status"] == "complete" and results["teacher"] is None
    label, distill = results["stages"]
    clean = generate(seed=0, n_train=N_TRAIN, n_eval=N_EVAL, label_noise=0.0)
    train_answers = [_stub_answer(r["text"], r["label"]) for r in clean.train]
    eval_answers = [_stub_answer(r["text"], r["label"]) for r in clean.eval]
    kept = [a for a in train_answers if a is not None]
    assert 0 < len(kept) < N_TRAIN  # the rates drew some refusals
    g = label["generation"]
    assert (g["pipeline"], g["prompts"], g["paid"], g["cached_hits"]) == ("label", N_TRAIN, N_TRAIN, 0)
    assert (g["kept"], g["rejected"], g["soft_labels"]) == (len(kept), N_TRAIN - len(kept), len(kept))
    assert g["rejected_by"] == {"no_class": N_TRAIN - len(kept)}
    # the eval split is labelled too, counted apart; the teacher's accuracy: its answers against the gold labels
    e = g["eval"]
    right = sum(a == r["label"] for a, r in zip(eval_answers, clean.eval))
    assert (e["requested"], e["paid"], e["kept"]) == (N_EVAL, N_EVAL, sum(a is not None for a in eval_answers))
    assert e["teacher_accuracy"] == pytest.approx(right / N_EVAL)
    assert e["cached_hits"] == 0 and e["soft_labels"] == e["kept"] and e["rejected"] == N_EVAL - e["kept"]
    assert len(server.answered()) == N_TRAIN + N_EVAL
    # outside the budget, like teacher_prep; the student's steps are train.max_steps
    assert label["outside_budget"] and label["steps"] == 0 and distill["steps"] == results["budget"]["planned_steps"]
    assert [s["name"] for s in results["budget"]["stages"]] == ["distill"]
    # soft labels used: the loss has its KD term on them beside CE
    assert set(distill["final_loss_terms"]) == {"ce", "kd"}
    # the dataset: text, the teacher's class, its soft label (hand-computed from the stub's log-probs)
    folder = out / "generated" / "label"
    rows = _read(folder / "train.jsonl")
    assert [r["text"] for r in rows] == [r["text"] for r, a in zip(clean.train, train_answers) if a is not None]
    assert [r["label"] for r in rows] == kept
    for r in rows:
        assert (
            r["soft"] == pytest.approx(_expected_soft(r["label"]), abs=1e-6) and r["answer"] == LABEL_NAMES[r["label"]]
        )
    assert len(_read(folder / "eval.jsonl")) == N_EVAL and len(_read(folder / "eval_teacher.jsonl")) == e["kept"]
    card = json.loads((folder / "card.json").read_text())
    assert card["teacher"]["model"] == "stub" and card["prompt"]["soft"] and card["prompt"]["match"] == "first"
    assert "{text}" in card["prompt"]["template"] and card["prompt"]["verbaliser"]["food/positive"] == ["food/positive"]
    assert (
        card["counts"]["rejected"] == N_TRAIN - len(kept)
        and card["counts"]["eval"]["teacher_accuracy"] == e["teacher_accuracy"]
    )
    md = (folder / "card.md").read_text()
    assert "data=local" in md and "teacher accuracy" in md
    # the report: the teacher's accuracy from its labels beside the student's
    from distillkit.report import format_table

    assert f"{e['teacher_accuracy']:.4f} (its labels)" in format_table(results)
    # the dataset trains again with data=local (the card's command), here labels only without a teacher
    reuse = card["reuse"].split("python -m distillkit ", 1)[1]
    overrides = [o.strip("'") for o in reuse.split(" ")]
    again = _plain_run(overrides + ["teacher=none", "method=none", f"cache_dir={cache_dir}"], out.parent / "reuse")
    assert again["status"] == "complete" and again["task"]["train_examples"] == len(kept)
    assert again["task"]["label_names"] == list(LABEL_NAMES)


def test_hard_labels_without_logprobs_and_a_rerun_pays_nothing(run_label, openai_stub):
    results, out = run_label(openai_stub(), ["method.label_eval=false"])
    label, distill = results["stages"]
    g = label["generation"]
    assert (g["kept"], g["rejected"], g["soft_labels"], g["paid"]) == (N_TRAIN, 0, 0, N_TRAIN)
    assert "eval" not in g and set(distill["final_loss_terms"]) == {"ce"}  # CE alone: no soft labels
    assert not any("soft" in r for r in _read(out / "generated" / "label" / "train.jsonl"))
    again, _ = run_label(openai_stub(), ["method.label_eval=false"], out="again")  # another server, the same model
    g = again["stages"][0]["generation"]
    assert (g["paid"], g["cached_hits"], g["kept"]) == (0, N_TRAIN, N_TRAIN)


def test_several_sampled_answers_vote_and_their_shares_are_the_soft_labels(run_label, openai_stub):
    """teacher.sampling.n=3 at temperature 0.7, no log-probs: each text's label is its answers' majority and, with
    method.soft, the votes' shares (the stub answers a text alike every time: unanimous, the floor elsewhere)."""
    votes = ["teacher.sampling.n=3", "teacher.sampling.temperature=0.7", "method.soft=true", "method.label_eval=false"]
    results, out = run_label(openai_stub(error_rate=ERRORS, refuse_rate=REFUSALS), votes)
    label, distill = results["stages"]
    g = label["generation"]
    clean = generate(seed=0, n_train=N_TRAIN, n_eval=N_EVAL, label_noise=0.0).train
    answers = [_stub_answer(r["text"], r["label"]) for r in clean]
    kept = sum(a is not None for a in answers)
    assert (g["kept"], g["soft_labels"], g["unanimous"], g["answers_per_text"]) == (kept, kept, kept, 3)
    assert g["completions_requested"] == N_TRAIN and g["paid"] == N_TRAIN  # one request per text asks for n=3
    rows = _read(out / "generated" / "label" / "train.jsonl")
    expected = [a for a in answers if a is not None]
    assert [r["label"] for r in rows] == expected
    one_vote = [1.0 if c == expected[0] else FLOOR for c in range(len(LABEL_NAMES))]
    assert rows[0]["soft"] == pytest.approx([m / sum(one_vote) for m in one_vote], abs=1e-6)
    assert set(distill["final_loss_terms"]) == {"ce", "kd"}


def _plain_run(overrides, out: Path) -> dict:
    from distillkit.run import RunContext, run

    base = [o for o in TINY if not o.startswith("data.synthetic")]
    cfg = validate(compose_config(base + overrides))
    out.mkdir(parents=True)
    return run(cfg, RunContext(output_dir=out, job_name="reuse", overrides=()))


def test_the_stub_answers_classification_prompts_in_the_openai_shape(openai_stub):
    import httpx

    server = openai_stub(error_rate=0.0)
    text = generate(seed=0, n_train=4, n_eval=1, label_noise=0.0).train[0]
    prompt = f"Classify the text into one of: {', '.join(LABEL_NAMES)}.\n\nText: {text['text']}\nClass:"
    body = {"model": "stub", "messages": [{"role": "user", "content": prompt}], "logprobs": True, "top_logprobs": 3}
    choice = httpx.post(f"{server.url}/chat/completions", json=body, timeout=10).json()["choices"][0]
    assert choice["message"]["content"] == LABEL_NAMES[text["label"]]
    first = choice["logprobs"]["content"][0]
    assert first["token"] == LABEL_NAMES[text["label"]] and first["logprob"] == pytest.approx(math.log(0.7))
    assert [set(alt) for alt in first["top_logprobs"]] == [{"token", "logprob", "bytes"}] * 3
    assert first["top_logprobs"][1]["bytes"] == list(first["top_logprobs"][1]["token"].encode())
    other = {**body, "messages": [{"role": "user", "content": "Text: not a text of the task"}]}
    assert httpx.post(f"{server.url}/chat/completions", json=other, timeout=10).json()["choices"][0]["message"][
        "content"
    ] == ("I do not know.")


def test_a_labelling_stopped_half_way_pays_nothing_twice_when_run_again(run_label, openai_stub, tmp_path):
    from distillkit.errors import ConfigError

    fresh = ["teacher.sampling.seed=11", "method.label_eval=false"]  # settings no other test used: nothing cached
    dead = openai_stub(fail_after=20)  # answers 20 requests, then refuses every later one (a run killed mid-way)
    with pytest.raises(ConfigError) as err:
        run_label(dead, fresh)
    assert err.value.key == "teacher.endpoint" and not (tmp_path / "run" / "generated" / "label").exists()
    assert len(dead.answered()) == 20
    alive = openai_stub()
    results, _ = run_label(alive, fresh)  # the same command again: the 20 paid answers come from the cache
    g = results["stages"][0]["generation"]
    assert (g["cached_hits"], g["paid"], g["kept"]) == (20, N_TRAIN - 20, N_TRAIN)
    assert len(alive.answered()) == N_TRAIN - 20
