"""Tests for distillkit.tasks.causal_lm.synthetic, the embedded instruction-following task for causal LMs."""

from __future__ import annotations

import collections
import re

import pytest

from distillkit.tasks.causal_lm import synthetic as lm_synthetic
from distillkit.tasks.causal_lm.synthetic import (
    KINDS,
    SEP,
    LMTaskData,
    check,
    generate,
    parse,
    texts_for_tokenizer,
    to_text,
)
from distillkit.tasks.lexicon import _GENERIC_ADJ, _GENERIC_NOUNS, _NOUNS, _TOPIC_ADJ

# Independent answer keys, read straight from the lexicon.
TOPIC_OF = {w: t for t, ws in _NOUNS.items() for w in ws}
TOPIC_OF.update({w: t for t, d in _TOPIC_ADJ.items() for ws in d.values() for w in ws})
POLARITY_OF = {w: ("positive" if p > 0 else "negative") for p, ws in _GENERIC_ADJ.items() for w in ws}
POLARITY_OF.update(
    {w: ("positive" if p > 0 else "negative") for d in _TOPIC_ADJ.values() for p, ws in d.items() for w in ws}
)
DOMAIN_OF = {w: ("hospitality" if t in ("food", "travel") else "media") for t, ws in _NOUNS.items() for w in ws}
DOMAIN_OF.update({w: d for d, ws in _GENERIC_NOUNS.items() for w in ws})


def items_after_colon(prompt: str) -> list[str]:
    return [x for x in re.split(r"[,\s]+", prompt.split(":", 1)[1]) if x]


def quoted(prompt: str) -> str:
    return re.search(r"'([^']+)'", prompt).group(1)


def expected_answer(ex: dict) -> str:
    """The answer computed by the test's own reading of the prompt (not the module's parser)."""
    p, kind = ex["prompt"], ex["kind"]
    if kind == "add":
        a, b = map(int, re.findall(r"\d+", p))
        return str(a + b)
    if kind == "sort":
        xs = items_after_colon(p)
        return " ".join(sorted(xs, key=int) if xs[0].isdigit() else sorted(xs))
    if kind == "reverse":
        return " ".join(items_after_colon(p)[::-1])
    if kind == "count":
        return str(len(items_after_colon(p)))
    word = quoted(p)
    if "positive" in p or "sentiment" in p:
        return POLARITY_OF[word]
    if "domain" in p or "hospitality" in p:
        return DOMAIN_OF[word]
    return TOPIC_OF[word]


@pytest.fixture(scope="module")
def default() -> LMTaskData:
    return generate(seed=0)


def test_sizes_and_types(default):
    assert isinstance(default, LMTaskData)
    assert len(default.train) == 8000 and len(default.eval) == 500
    small = generate(seed=3, n_train=37, n_eval=11)
    assert len(small.train) == 37 and len(small.eval) == 11
    for ex in default.train + default.eval:
        assert set(ex) == {"prompt", "response", "kind"}
        assert all(isinstance(v, str) and v for v in ex.values())


def test_deterministic_and_seed_dependent(default):
    again = generate(seed=0)
    assert again.train == default.train and again.eval == default.eval
    other = generate(seed=1)
    assert other.train != default.train and other.eval != default.eval
    assert len({ex["prompt"] for ex in other.eval} & {ex["prompt"] for ex in default.eval}) < 250


def test_eval_does_not_depend_on_n_train(default):
    assert generate(seed=0, n_train=100).eval == default.eval


def test_no_eval_prompt_in_train_and_no_duplicate_eval(default):
    eval_prompts = [ex["prompt"] for ex in default.eval]
    assert len(set(eval_prompts)) == len(eval_prompts)
    assert not set(eval_prompts) & {ex["prompt"] for ex in default.train}
    # The look-up space is small (1368 prompts), so holding out eval prompts has to be enforced, not lucky.
    lk = generate(seed=2, n_train=3000, n_eval=800, kinds=["lookup"])
    assert not {ex["prompt"] for ex in lk.eval} & {ex["prompt"] for ex in lk.train}
    assert len({ex["prompt"] for ex in lk.eval}) == 800


def test_every_example_is_correct(default):
    for ex in default.train + default.eval:
        assert ex["response"] == expected_answer(ex), ex
        assert check(ex), ex


def test_check_on_hand_written_examples():
    assert check({"prompt": "What is 47 + 8?", "response": "55", "kind": "add"})
    assert not check({"prompt": "What is 47 + 8?", "response": "56", "kind": "add"})
    assert check({"prompt": "Sort in ascending order: 7 2 9 2", "response": "2 2 7 9", "kind": "sort"})
    assert not check({"prompt": "Sort in ascending order: 7 2 9 2", "response": "2 7 9", "kind": "sort"})
    assert check({"prompt": "Arrange alphabetically: soup, cozy, album", "response": "album cozy soup", "kind": "sort"})
    assert check({"prompt": "Reverse the list: pasta dull ferry", "response": "ferry dull pasta", "kind": "reverse"})
    assert not check(
        {"prompt": "Reverse the list: pasta dull ferry", "response": "pasta dull ferry", "kind": "reverse"}
    )
    assert check({"prompt": "Count the words: cast, soup, dull, spa", "response": "4", "kind": "count"})
    assert check({"prompt": "What topic is the word 'risotto' about?", "response": "food", "kind": "lookup"})
    assert check({"prompt": "Is 'stale' positive or negative?", "response": "negative", "kind": "lookup"})
    assert check({"prompt": "Is 'staff' hospitality or media?", "response": "hospitality", "kind": "lookup"})
    assert not check({"prompt": "Is 'staff' hospitality or media?", "response": "media", "kind": "lookup"})
    # Wrong kind, unknown template, unknown word, and a non-canonical response all fail.
    assert not check({"prompt": "What is 47 + 8?", "response": "55", "kind": "count"})
    assert not check({"prompt": "What's 47 + 8?", "response": "55", "kind": "add"})
    assert not check({"prompt": "Is 'zebra' positive or negative?", "response": "positive", "kind": "lookup"})
    assert not check({"prompt": "What is 47 + 8?", "response": " 55", "kind": "add"})


def corruptions(ex: dict) -> list[str]:
    r = ex["response"]
    out = [r + " 1", r.upper(), r + " ", ""]
    toks = r.split()
    if r.isdigit():
        out += [str(int(r) + 1), str(int(r) - 1)]
    if len(toks) > 1:
        out += [" ".join(toks[:-1]), " ".join(toks[::-1]) if toks != toks[::-1] else r + " x", ",".join(toks)]
    if ex["kind"] == "lookup":
        out += [
            a for a in ("food", "travel", "movies", "music", "positive", "negative", "hospitality", "media") if a != r
        ]
    return [bad for bad in out if bad != r]  # e.g. "55".upper() is no corruption


def test_corrupted_responses_fail(default):
    for ex in default.eval + default.train[:1000]:
        for bad in corruptions(ex):
            assert not check({**ex, "response": bad}), (ex, bad)


def test_kind_proportions(default):
    counts = collections.Counter(ex["kind"] for ex in default.train)
    assert counts == {"add": 800, "sort": 1600, "reverse": 1200, "lookup": 3200, "count": 1200}
    assert lm_synthetic.KIND_WEIGHTS["lookup"] == max(lm_synthetic.KIND_WEIGHTS.values())  # memorisation weighs most
    first = collections.Counter(ex["kind"] for ex in default.eval[:100])  # shuffled blocks of 20: prefixes balanced
    assert first == {k: 5 * w for k, w in lm_synthetic.KIND_WEIGHTS.items()}
    assert set(ex["kind"] for ex in default.eval) == set(KINDS)


def test_several_templates_per_kind(default):
    by_kind = collections.defaultdict(set)
    openings = collections.defaultdict(set)
    for ex in default.train:
        kind, _, template, _ = parse(ex["prompt"])
        assert kind == ex["kind"]
        by_kind[kind].add(template)
        openings[kind].add(" ".join(ex["prompt"].split()[:2]))  # independent of parse()
    for kind in KINDS:
        assert by_kind[kind] == set(range(len(lm_synthetic.TEMPLATES[kind]))), kind
        assert len(openings[kind]) >= 3, kind


def test_every_template_parses_back_to_itself():
    payload = {"a": 12, "b": 7, "items": "cozy, 3 dull", "word": "roast chicken"}
    for kind, templates in lm_synthetic.TEMPLATES.items():
        for i, (_, t) in enumerate(templates):
            prompt = t.format(**payload)
            assert parse(prompt)[:3] == (kind, templates[i][0], i), prompt


def test_response_lengths_bounded(default):
    for ex in default.train + default.eval:
        assert len(ex["response"].split()) <= 6 and len(ex["response"]) <= 48, ex
        assert ex["response"] == " ".join(ex["response"].split())  # canonical spacing
        assert len(ex["prompt"]) <= 120, ex


def test_difficulty_spread(default):
    add_digits, sort_lens, word_sort_lens, count_vals, joiners = set(), set(), set(), set(), set()
    sums = []
    for ex in default.train:
        p = ex["prompt"]
        if ex["kind"] == "add":
            add_digits.add(tuple(sorted(len(x) for x in re.findall(r"\d+", p))))
            sums.append(int(ex["response"]))
        elif ex["kind"] in ("sort", "reverse", "count"):
            joiners.add("," in p)
            xs = items_after_colon(p)
            if ex["kind"] == "sort":
                (sort_lens if xs[0].isdigit() else word_sort_lens).add(len(xs))
            elif ex["kind"] == "count":
                count_vals.add(len(xs))
    assert add_digits == {(1, 1)}  # single-digit operands only: 100 sums to memorise
    assert set(sums) == set(range(19))
    pairs = {tuple(map(int, re.findall(r"\d+", ex["prompt"]))) for ex in default.train if ex["kind"] == "add"}
    assert pairs == {(a, b) for a in range(10) for b in range(10)}
    assert sort_lens == {3, 4, 5, 6} and word_sort_lens == {3, 4, 5}
    assert count_vals == set(range(2, 10))
    assert joiners == {True, False}
    sort_kinds = {ex["prompt"].split(":")[1].split()[0][0].isdigit() for ex in default.train if ex["kind"] == "sort"}
    assert sort_kinds == {True, False}


def test_lookup_facts_cover_all_groups_and_recur_in_train(default):
    groups = collections.Counter(parse(ex["prompt"])[1] for ex in default.train if ex["kind"] == "lookup")
    assert set(groups) == {"topic", "sentiment", "domain"}
    train_facts = collections.Counter(
        (parse(ex["prompt"])[1], quoted(ex["prompt"])) for ex in default.train if ex["kind"] == "lookup"
    )
    assert len(train_facts) == len(TOPIC_OF) + len(POLARITY_OF) + len(DOMAIN_OF)
    assert min(train_facts.values()) >= 8  # 3200 look-ups dealt in rounds of 376 facts
    # Every eval look-up asks a fact that train teaches, under another phrasing.
    for ex in default.eval:
        if ex["kind"] == "lookup":
            assert train_facts[(parse(ex["prompt"])[1], quoted(ex["prompt"]))] >= 8


def test_kinds_subset():
    d = generate(seed=0, n_train=200, n_eval=40, kinds=["count", "add"])
    assert {ex["kind"] for ex in d.train + d.eval} == {"add", "count"}
    assert generate(seed=0, n_train=200, n_eval=40, kinds=("add", "count")) == d  # order of kinds is irrelevant
    assert {ex["kind"] for ex in generate(seed=0, n_train=50, n_eval=10, kinds=["reverse"]).train} == {"reverse"}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"seed": 1.5},
        {"seed": True},
        {"n_train": 0},
        {"n_eval": -1},
        {"n_train": 2.0},
        {"kinds": []},
        {"kinds": ["add", "multiply"]},
        {"kinds": "add"},
    ],
)
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        generate(**{"n_train": 10, "n_eval": 5, **kwargs})


def test_too_large_lookup_split_raises():
    with pytest.raises(ValueError, match="look-up"):
        generate(seed=0, n_train=10, n_eval=2000, kinds=["lookup"])


def test_add_space_is_small_and_held_out():
    # 100 operand pairs x 5 templates = 500 distinct add prompts: eval holds out some, train never sees them.
    d = generate(seed=0, n_train=2000, n_eval=300, kinds=["add"])
    assert not {ex["prompt"] for ex in d.eval} & {ex["prompt"] for ex in d.train}
    with pytest.raises(ValueError, match="too large"):
        generate(seed=0, n_train=10, n_eval=501, kinds=["add"])


def test_texts_for_tokenizer(default):
    texts = texts_for_tokenizer(default)
    assert len(texts) == len(default.train)
    ex = default.train[5]
    assert texts[5] == ex["prompt"] + "\n" + ex["response"] == to_text(ex)
    assert SEP == "\n" and all(t.count("\n") == 1 for t in texts)
    assert texts_for_tokenizer(default.eval[:3]) == [e["prompt"] + "\n" + e["response"] for e in default.eval[:3]]
