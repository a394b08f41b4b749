"""Tests for distillkit.tasks.classification.synthetic, the deterministic offline dataset (fast: a few seconds)."""

from __future__ import annotations

import collections
import dataclasses
import random
import re

import pytest

from distillkit.tasks.classification import synthetic
from distillkit.tasks.classification.synthetic import SyntheticSplits, generate, label_distance

# --- lexicon lookups used to check the compositional rules on generated text -------------------
ADJ_POLARITY: dict[str, int] = {}
for pol, words in synthetic._GENERIC_ADJ.items():
    ADJ_POLARITY.update({w: pol for w in words})
for by_pol in synthetic._TOPIC_ADJ.values():
    for pol, words in by_pol.items():
        ADJ_POLARITY.update({w: pol for w in words})
ADJ_RE = "|".join(sorted(map(re.escape, ADJ_POLARITY), key=len, reverse=True))
INTENS_RE = "|".join(map(re.escape, synthetic._INTENSIFIERS + synthetic._EXTREME_INTENSIFIERS))
# A plain evaluative clause: "<noun phrase> was [intensifier] <adjective>" (no hedge, no negation).
PLAIN_CLAUSE = re.compile(rf"^(?!.*\b(?:not|never|no|nothing|hardly)\b).* was (?:(?:{INTENS_RE}) )?({ADJ_RE})$")


def sentiment(label: int) -> int:
    return 1 if label % 2 == 0 else -1


def topic(label: int) -> str:
    return synthetic.TOPICS[label // 2]


def topics_named(text: str) -> set[str]:
    """Topics whose topic-specific nouns occur in `text` (whole words)."""
    found = set()
    for t, nouns in synthetic._NOUNS.items():
        if any(re.search(rf"(?<![\w-]){re.escape(n)}(?![\w-])", text) for n in nouns):
            found.add(t)
    return found


@pytest.fixture(scope="module")
def default() -> SyntheticSplits:
    return generate(seed=0, n_train=4000, n_eval=2000, label_noise=0.1)


@pytest.fixture(scope="module")
def big_eval() -> list[dict]:
    return generate(seed=1, n_train=1, n_eval=8000).eval


# --- API and basic properties -----------------------------------------------------------------


def test_api_shapes_and_types(default):
    assert isinstance(default, SyntheticSplits)
    with pytest.raises(dataclasses.FrozenInstanceError):
        default.train = []  # type: ignore[misc]
    assert len(default.train) == 4000 and len(default.eval) == 2000
    assert 6 <= len(default.label_names) <= 10
    assert default.label_names == list(synthetic.LABEL_NAMES)
    assert default.label_names[0] == "food/positive"
    assert len(set(default.label_names)) == len(default.label_names)
    for ex in default.train + default.eval:
        assert set(ex) == {"text", "label", "noisy"}
        assert type(ex["text"]) is str and type(ex["label"]) is int and type(ex["noisy"]) is bool
        assert 0 <= ex["label"] < len(default.label_names)


def test_text_format_length_and_vocabulary(default):
    lengths, vocab = [], set()
    for ex in default.train + default.eval:
        text = ex["text"]
        assert text == text.lower() and text == text.strip() and "  " not in text
        assert text.isascii()
        toks = text.split()
        lengths.append(len(toks))
        vocab.update(toks)
    assert min(lengths) >= 4 and max(lengths) <= synthetic._MAX_TOKENS
    assert 12 <= sum(lengths) / len(lengths) <= 22
    assert sorted(lengths)[int(0.95 * len(lengths))] <= 30
    assert 300 <= len(vocab) <= 1500


def test_generation_reads_and_moves_no_global_random_state():
    """Each split draws from its own seeded stream (module docstring): the global `random` stream is neither read
    (another global state gives the same splits) nor advanced (a caller's own draws are not shifted)."""
    random.seed(1)
    before = random.getstate()
    a = generate(seed=5, n_train=800, n_eval=80)
    assert random.getstate() == before
    random.seed(2)
    assert generate(seed=5, n_train=800, n_eval=80) == a


# --- determinism and stream independence -------------------------------------------------------


def test_same_seed_same_output_different_seed_different_output():
    a = generate(seed=7, n_train=300, n_eval=100)
    b = generate(seed=7, n_train=300, n_eval=100)
    c = generate(seed=8, n_train=300, n_eval=100)
    assert a == b
    assert [e["text"] for e in a.train] != [e["text"] for e in c.train]
    assert [e["text"] for e in a.eval] != [e["text"] for e in c.eval]


def test_golden_output_is_stable_across_machines_and_versions():
    # random.Random(str) hashes the seed with SHA-512, so the output depends on nothing but the
    # arguments and the grammar. Results are compared across machines and package versions: if an
    # intentional grammar change breaks this, update the expected texts (and say so in the changelog).
    s = generate(seed=0, n_train=2, n_eval=2, label_noise=0.1)
    assert [(e["text"], s.label_names[e["label"]]) for e in s.train + s.eval] == [
        ("all in all , i found the location near the station not great with my friends .", "travel/negative"),
        (
            "i would never call the balcony weak and the much-hyped lodge during our stay in rome deserves "
            "every award .",
            "travel/positive",
        ),
        (
            "the band seemed neither soulful nor brilliant , and this little live set felt repetitive .",
            "music/negative",
        ),
        ("our burger at the steakhouse is alright .", "food/positive"),
    ]
    train = generate(seed=0, n_train=100, n_eval=1, label_noise=0.1).train
    assert [e["label"] for e in train[:16]] == [3, 2, 6, 0, 5, 0, 7, 4, 0, 4, 3, 6, 7, 2, 1, 5]
    assert [(i, e["label"]) for i, e in enumerate(train) if e["noisy"]] == [
        (3, 0),
        (34, 3),
        (41, 2),
        (49, 2),
        (55, 4),
        (56, 1),
        (62, 4),
        (96, 4),
    ]


def test_eval_split_independent_of_n_train_and_train_prefix_stable():
    small = generate(seed=3, n_train=50, n_eval=200)
    large = generate(seed=3, n_train=900, n_eval=200)
    assert small.eval == large.eval
    assert small.train == large.train[:50]
    # eval is a prefix-stable stream too
    assert generate(seed=3, n_train=50, n_eval=80).eval == small.eval[:80]


def test_train_and_eval_streams_differ(default):
    """The eval split is held out: none of its 2000 sentences occurs among the 4000 training ones, and its labels
    follow no position of the train split's (the streams agree on about 1/8 of the positions, as chance does)."""
    train_texts = {e["text"] for e in default.train}
    assert not [e["text"] for e in default.eval if e["text"] in train_texts]
    same = sum(t["label"] == e["label"] for t, e in zip(default.train, default.eval))
    assert abs(same / len(default.eval) - 1 / len(default.label_names)) < 0.03, same


def test_texts_do_not_depend_on_label_noise_and_flips_are_nested():
    clean = generate(seed=2, n_train=2000, n_eval=100, label_noise=0.0)
    low = generate(seed=2, n_train=2000, n_eval=100, label_noise=0.1)
    high = generate(seed=2, n_train=2000, n_eval=100, label_noise=0.3)
    assert [e["text"] for e in clean.train] == [e["text"] for e in low.train] == [e["text"] for e in high.train]
    assert clean.eval == low.eval == high.eval
    for _, lo, hi in zip(clean.train, low.train, high.train):
        if lo["noisy"]:
            assert hi["noisy"] and hi["label"] == lo["label"]


# --- labels, balance and noise -----------------------------------------------------------------


def test_every_class_present_and_balanced(default):
    n_classes = len(default.label_names)
    eval_counts = collections.Counter(e["label"] for e in default.eval)
    # clean labels are drawn in shuffled blocks holding every class once: balanced to within 1
    assert set(eval_counts) == set(range(n_classes))
    assert max(eval_counts.values()) - min(eval_counts.values()) <= 1
    train_counts = collections.Counter(e["label"] for e in default.train)
    assert set(train_counts) == set(range(n_classes))
    mean = len(default.train) / n_classes
    assert all(abs(c - mean) < 0.15 * mean for c in train_counts.values()), train_counts


def test_eval_labels_are_clean(default):
    assert not any(e["noisy"] for e in default.eval)
    assert (
        generate(seed=0, n_train=10, n_eval=500, label_noise=0.6).eval
        == generate(seed=0, n_train=10, n_eval=500, label_noise=0.0).eval
    )


def test_zero_noise_gives_no_noisy_examples():
    s = generate(seed=4, n_train=3000, n_eval=10, label_noise=0.0)
    assert not any(e["noisy"] for e in s.train)


def test_flip_rate_matches_label_noise_and_noisy_flag_is_truthful():
    clean = generate(seed=11, n_train=5000, n_eval=10, label_noise=0.0)
    noisy = generate(seed=11, n_train=5000, n_eval=10, label_noise=0.2)
    rate = sum(e["noisy"] for e in noisy.train) / 5000
    # binomial sd at p=0.2, n=5000 is 0.0057; 0.03 is > 5 sd
    assert abs(rate - 0.2) < 0.03, rate
    for c, n in zip(clean.train, noisy.train):
        # a flip always changes the label; an unflipped example keeps the clean one
        assert (c["label"] != n["label"]) == n["noisy"]


def test_noisy_flips_prefer_near_classes():
    clean = generate(seed=12, n_train=6000, n_eval=10, label_noise=0.0)
    noisy = generate(seed=12, n_train=6000, n_eval=10, label_noise=0.25)
    dist = collections.Counter(
        label_distance(c["label"], n["label"]) for c, n in zip(clean.train, noisy.train) if n["noisy"]
    )
    total = sum(dist.values())
    assert total > 1000
    # design: 3/7 same topic, 3/7 same domain, 1/7 the four far classes together
    # (uniform flips would give 1/7, 2/7, 4/7)
    assert dist[1] / total > 0.35
    assert (dist[1] + dist[2]) / total > 0.78
    assert dist[3] / total < 0.22
    # per far class, much rarer than the single same-topic class
    assert dist[3] / 4 < dist[1] / 4


def test_label_distance():
    names = list(synthetic.LABEL_NAMES)
    i = names.index
    assert label_distance(i("food/positive"), i("food/positive")) == 0
    assert label_distance(i("food/positive"), i("food/negative")) == 1
    assert label_distance(i("food/positive"), i("travel/positive")) == 2
    assert label_distance(i("movies/negative"), i("music/positive")) == 2
    assert label_distance(i("food/positive"), i("music/positive")) == 3
    n = len(names)
    assert all(label_distance(a, b) == label_distance(b, a) for a in range(n) for b in range(n))


# --- argument validation ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        ({"n_train": 0}, r"n_train.*positive.*0"),
        ({"n_train": -5}, r"n_train.*-5"),
        ({"n_train": 2.5}, r"n_train.*2\.5"),
        ({"n_eval": 0}, r"n_eval.*positive.*0"),
        ({"n_eval": True}, r"n_eval.*True"),
        ({"label_noise": 1.0}, r"label_noise.*\[0, 1\).*1\.0"),
        ({"label_noise": -0.1}, r"label_noise.*\[0, 1\).*-0\.1"),
        ({"label_noise": float("nan")}, r"label_noise.*nan"),
        ({"label_noise": "0.1"}, r"label_noise.*'0\.1'"),
        ({"seed": "zero"}, r"seed.*integer.*'zero'"),
    ],
)
def test_bad_arguments_raise_value_error_naming_argument(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        generate(**kwargs)


def test_boundary_arguments_are_accepted():
    s = generate(seed=0, n_train=1, n_eval=1, label_noise=0.0)
    assert len(s.train) == 1 and len(s.eval) == 1
    generate(seed=0, n_train=3, n_eval=1, label_noise=0.999)


# --- the compositional rules that make word order matter ----------------------------------------


def test_strong_negation_flips_the_adjective(big_eval):
    """'<np> was never tasty .' is negative, '<np> was by no means bland .' is positive."""
    rx = re.compile(rf"^[^,;:().]* was (?:never|not at all|by no means|in no way|not remotely) ({ADJ_RE}) \.$")
    seen = collections.Counter()
    for ex in big_eval:
        m = rx.match(ex["text"])
        if m:
            pol = ADJ_POLARITY[m.group(1)]
            assert sentiment(ex["label"]) == -pol, ex
            seen[pol] += 1
    assert seen[1] >= 10 and seen[-1] >= 10, seen


def test_contrast_main_clause_decides_sentiment(big_eval):
    """'although A , B .' and 'A , but B .' follow B; 'B , although A .' follows B too."""
    after = re.compile(r"^(?:although|even though|while) (.+) , (.+) \.$")
    but = re.compile(r"^(.+) , but (.+) \.$")
    before = re.compile(r"^(.+) , (?:although|even though|though) (.+) \.$")
    checked = collections.Counter()
    for ex in big_eval:
        text = ex["text"]
        for kind, rx, main_group in (("after", after, 2), ("but", but, 2), ("before", before, 1)):
            m = rx.match(text)
            if not m:
                continue
            mm = PLAIN_CLAUSE.match(m.group(main_group))
            if mm:
                assert sentiment(ex["label"]) == ADJ_POLARITY[mm.group(1)], (kind, ex)
                checked[kind] += 1
    assert all(checked[k] >= 10 for k in ("after", "but", "before")), checked


def test_contrast_clauses_disagree_so_bag_of_words_cannot_tell(big_eval):
    """In 'B , although A .' with plain clauses, A carries the opposite sentiment to the label."""
    before = re.compile(r"^(.+) , (?:although|even though|though) (.+) \.$")
    n = 0
    for ex in big_eval:
        m = before.match(ex["text"])
        if m:
            ma, mb = PLAIN_CLAUSE.match(m.group(2)), PLAIN_CLAUSE.match(m.group(1))
            if ma and mb:
                assert ADJ_POLARITY[ma.group(1)] == -ADJ_POLARITY[mb.group(1)] == -sentiment(ex["label"])
                n += 1
    assert n >= 5


def test_topic_aside_main_clause_decides_topic(big_eval):
    """'unlike <other topic> , which was ... , <main np> was ... .': the topic is the main clause's."""
    rx = re.compile(r"^unlike (.+) , which was .+ , (.+?) was .+ \.$")
    n = 0
    for ex in big_eval:
        m = rx.match(ex["text"])
        if not m:
            continue
        aside, main = topics_named(m.group(1)), topics_named(m.group(2))
        if len(main) == 1 and len(aside) == 1:
            assert main == {topic(ex["label"])}, ex
            assert aside != main
            n += 1
    assert n >= 50


def test_mild_phrases_are_genuinely_ambiguous(big_eval):
    """Neutral/hedged simple sentences occur with both sentiments of a class pair."""
    rx = re.compile(r"^[^,;:().]* was (okay|fine|average|passable|so-so|somewhat [\w-]+|not great|not bad) \.$")
    by_phrase = collections.defaultdict(collections.Counter)
    for ex in big_eval:
        m = rx.match(ex["text"])
        if m:
            by_phrase[m.group(1).split()[0]][sentiment(ex["label"])] += 1
    mixed = [p for p, c in by_phrase.items() if c[1] > 0 and c[-1] > 0]
    assert len(mixed) >= 3, dict(by_phrase)


def test_all_frames_occur_in_default_eval():
    meta = [m for _, _, m in synthetic._split(0, "eval", 1000, with_meta=True)]
    frames = collections.Counter(m["frame"] for m in meta)
    assert set(frames) == {"simple", "and", "contrast", "expect", "aside"}
    # contrast, expectation and aside frames cannot be read from a bag of words
    assert frames["contrast"] + frames["expect"] + frames["aside"] > 0.2 * len(meta)
