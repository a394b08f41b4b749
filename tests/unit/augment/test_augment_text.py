"""Rule-based text augmentation (distillkit/augment/text.py) and WordNet (distillkit/augment/wordnet.py):
which words each op may touch, rates, determinism, and that the embedded task's synonyms keep the label."""

from __future__ import annotations

import random
import sys
import types
from collections import Counter

import pytest

from distillkit.augment.text import (
    NEGATIONS,
    STOP_WORDS,
    lexicon_synonyms,
    lexicon_table,
    perturb,
    shuffle_sentences,
    split_sentences,
    synonym_replace,
)
from distillkit.errors import ConfigError
from distillkit.tasks.classification.synthetic import generate
from distillkit.tasks.lexicon import _GENERIC_ADJ, _GENERIC_NOUNS, _NEGATORS, _NOUNS, _TOPIC_ADJ

TABLE = {
    "movie": ["film", "picture"],
    "good": ["fine", "nice"],
    "plot": ["story"],
    "the": ["this"],
    "dull": ["boring"],
    "not": ["indeed"],
    "but": ["and"],
}


def table_synonyms(word: str) -> list[str]:
    return list(TABLE.get(word, []))


def no_synonyms(word: str) -> list[str]:
    return []


TEXT = "the movie was not good , but the plot was dull ."


def _positive_words() -> set[str]:
    return set(_GENERIC_ADJ[1]).union(*(by_sign[1] for by_sign in _TOPIC_ADJ.values()))


def _negative_words() -> set[str]:
    return set(_GENERIC_ADJ[-1]).union(*(by_sign[-1] for by_sign in _TOPIC_ADJ.values()))


# ------------------------------------------------------------------------------------------- synonyms
def test_synonym_replace_changes_only_eligible_words():
    words = TEXT.split()
    for seed in range(10):
        out = synonym_replace(TEXT, random.Random(seed), 0.5, table_synonyms).split()
        assert len(out) == len(words)
        for before, after in zip(words, out):
            if before in STOP_WORDS or before in NEGATIONS or before not in TABLE:  # "the" and "not" are in TABLE
                assert after == before
            else:
                assert after == before or after in TABLE[before]


def test_synonym_replace_takes_multi_word_synonyms():
    out = synonym_replace("a good plot", random.Random(0), 1.0, lambda w: {"good": ["a bit nice"]}.get(w, []))
    assert out == "a a bit nice plot"


def test_synonym_replace_keeps_punctuation_and_case():
    out = synonym_replace(
        "The Movie, however, wasn't good.",
        random.Random(0),
        1.0,
        lambda w: {"movie": ["film"], "good": ["not good"], "wasn't": ["was"]}.get(w, []),
    )
    assert out == "The Film, however, wasn't good."  # "not good" contains a negation: never inserted


def test_synonym_replace_p0_is_identity_and_p1_changes_every_eligible_word():
    rng = random.Random(1)
    assert synonym_replace(TEXT, rng, 0.0, table_synonyms) == TEXT
    changed = synonym_replace(TEXT, rng, 1.0, table_synonyms)
    for word in ("movie", "good", "plot", "dull"):
        assert word not in changed.split()


def test_synonym_replace_changes_at_least_one_word_even_at_a_small_p():
    """EDA replaces max(1, p·words): at p = 0.01 a sentence with eligible words still changes, in one word."""
    for seed in range(20):
        out = synonym_replace(TEXT, random.Random(seed), 0.01, table_synonyms).split()
        assert sum(a != b for a, b in zip(TEXT.split(), out)) >= 1
    plain = [synonym_replace(TEXT, random.Random(s), 0.01, table_synonyms, at_least_one=False) for s in range(20)]
    assert plain.count(TEXT) >= 15  # without the rule most copies would be the sentence itself
    assert synonym_replace("the of and", random.Random(0), 0.5, table_synonyms) == "the of and"  # nothing eligible


def test_synonym_replace_is_deterministic_per_seed():
    texts = [f"{TEXT} {TEXT} the movie was good" for _ in range(5)]
    a = [synonym_replace(t, random.Random(i), 0.5, table_synonyms) for i, t in enumerate(texts)]
    b = [synonym_replace(t, random.Random(i), 0.5, table_synonyms) for i, t in enumerate(texts)]
    c = [synonym_replace(t, random.Random(100 + i), 0.5, table_synonyms) for i, t in enumerate(texts)]
    assert a == b and a != c


# ------------------------------------------------------------------------------------------- perturb
def test_deletion_rate_within_tolerance():
    text = " ".join(f"w{i}" for i in range(2000))
    out = perturb(text, random.Random(0), insert=0.0, delete=0.3, swap=0.0, synonyms=no_synonyms)
    rate = 1 - len(out.split()) / 2000
    assert abs(rate - 0.3) < 0.05


def test_deletion_keeps_negations_punctuation_and_one_word():
    for seed in range(50):
        out = perturb(TEXT, random.Random(seed), insert=0.0, delete=1.0, swap=0.0, synonyms=no_synonyms).split()
        assert Counter(w for w in out if w in NEGATIONS) == Counter({"not": 1, "but": 1})
        assert out.count(",") == 1 and out[-1] == "."
        alone = perturb("good movie", random.Random(seed), 0.0, 1.0, 0.0, no_synonyms).split()
        assert len(alone) == 1 and alone[0] in ("good", "movie")


def test_swap_keeps_the_words_and_pins_negations():
    text = "i did n't think the film was slow ; however , the ending didn't work either ."
    for seed in range(30):
        out = perturb(text, random.Random(seed), insert=0.0, delete=0.0, swap=0.5, synonyms=no_synonyms)
        assert Counter(out.split()) == Counter(text.split())
        for i, word in enumerate(text.split()):
            if word in {"n't", "however", "didn't", ",", ";", "."}:
                assert out.split()[i] == word
    assert perturb(text, random.Random(0), 0.0, 0.0, 0.5, no_synonyms) != text


def test_insertion_adds_the_expected_count():
    words = TEXT.split()
    n_words = sum(1 for w in words if w not in {",", "."})  # 10
    for rate, expected in ((0.1, 1), (0.3, 3), (1.0, 10)):
        out = perturb(
            TEXT,
            random.Random(0),
            insert=rate,
            delete=0.0,
            swap=0.0,
            synonyms=lambda w: {"movie": ["film"], "plot": ["story"]}.get(w, []),
        ).split()
        assert len(out) == len(words) + expected == len(words) + round(rate * n_words)
        assert Counter(out) - Counter(words) <= Counter({"film": expected, "story": expected})


def test_insertion_without_synonyms_copies_a_word_that_is_no_negation():
    out = perturb("not good", random.Random(0), insert=1.0, delete=0.0, swap=0.0, synonyms=no_synonyms)
    assert sorted(out.split()) == ["good", "good", "good", "not"]  # round(1.0 * 2) copies


def test_perturb_is_deterministic_per_seed():
    args = dict(insert=0.2, delete=0.2, swap=0.2, synonyms=table_synonyms)
    assert perturb(TEXT, random.Random(3), **args) == perturb(TEXT, random.Random(3), **args)
    outs = {perturb(TEXT, random.Random(seed), **args) for seed in range(20)}
    assert len(outs) > 5


# ------------------------------------------------------------------------------------------- sentences
def test_split_sentences():
    assert split_sentences("a b . c d .") == ["a b .", "c d ."]
    assert split_sentences("Great food! Was it cheap? No. ") == ["Great food!", "Was it cheap?", "No."]
    assert split_sentences("one sentence without end") == ["one sentence without end"]


def test_shuffle_sentences_reorders_three_and_refuses_one():
    text = "the pasta was good . the staff was rude . the price was fair ."
    for seed in range(20):
        out = shuffle_sentences(text, random.Random(seed))
        assert out is not None and out != text
        assert sorted(split_sentences(out)) == sorted(split_sentences(text))
    assert shuffle_sentences("the pasta was good .", random.Random(0)) is None
    assert shuffle_sentences("same . same .", random.Random(0)) is None
    assert shuffle_sentences("a . b .", random.Random(0)) == "b . a ."


# ------------------------------------------------------------------------------------------- lexicon
def test_lexicon_table_never_crosses_sentiment_or_topic():
    table = lexicon_table()
    positive, negative = _positive_words(), _negative_words()
    assert len(table) > 150
    for key, options in table.items():
        assert key not in options and len(set(options)) == len(options)
        if key in positive:
            assert set(options) <= positive, key
        if key in negative:
            assert set(options) <= negative, key
        for group in list(_NOUNS.values()) + list(_GENERIC_NOUNS.values()):
            if key in group:
                assert set(options) <= set(group), key


def test_lexicon_table_has_no_negator_and_respects_extreme_adjectives():
    table = lexicon_table()
    negator_words = {w for phrase in _NEGATORS for w in phrase.split()} | NEGATIONS
    for key, options in table.items():
        assert key not in negator_words and " " not in key
        assert not negator_words & {w for o in options for w in o.split()}, key
    assert "superb" not in table["good"] and "good" not in table["superb"]
    assert set(table["really"]) <= {"truly", "absolutely", "utterly"}  # also precede extreme adjectives
    assert "service" not in table  # also in a movies context: "on the streaming service"


def test_lexicon_synonyms_keep_the_label_on_generated_texts():
    positive, negative = _positive_words(), _negative_words()
    synonyms = lexicon_synonyms()
    texts = [row["text"] for row in generate(seed=0, n_train=300, n_eval=10, label_noise=0.0).train]
    changed = 0
    for i, text in enumerate(texts):
        out = synonym_replace(text, random.Random(i), 1.0, synonyms)
        changed += out != text
        before, after = text.split(), out.split()
        if len(before) != len(after):  # a multi-word noun came in: compare the adjectives only
            before = [w for w in before if w in positive | negative]
            after = [w for w in after if w in positive | negative]
        for a, b in zip(before, after):
            assert not (a in positive and b in negative) and not (a in negative and b in positive), (text, out)
    assert changed > 250


# ------------------------------------------------------------------------------------------- wordnet
def _wordnet_available() -> bool:
    from distillkit.augment.wordnet import check_wordnet

    try:
        check_wordnet("augmentation.synonym.source")
    except ConfigError:
        return False
    return True


needs_wordnet = pytest.mark.skipif(not _wordnet_available(), reason="nltk or its WordNet corpus is not installed")


def test_check_wordnet_without_nltk(monkeypatch):
    from distillkit.augment.wordnet import check_wordnet

    monkeypatch.setitem(sys.modules, "nltk", None)
    with pytest.raises(ConfigError) as info:
        check_wordnet("augmentation.synonym.source")
    assert info.value.key == "augmentation.synonym.source" and info.value.value == "wordnet"
    assert "pip install nltk" in str(info.value) and "nltk.downloader wordnet" in str(info.value)


@pytest.mark.parametrize("missing", ["corpora/wordnet", "corpora/wordnet/lexnames"])
def test_check_wordnet_without_the_corpus(monkeypatch, missing):
    from distillkit.augment.wordnet import check_wordnet

    def find(resource):
        if resource == missing:
            raise LookupError(resource)

    fake = types.ModuleType("nltk")
    fake.data = types.SimpleNamespace(find=find)
    monkeypatch.setitem(sys.modules, "nltk", fake)
    with pytest.raises(ConfigError) as info:
        check_wordnet("augmentation.token_perturbation.source")
    assert info.value.key == "augmentation.token_perturbation.source"
    assert "python -m nltk.downloader wordnet" in str(info.value) and "NLTK_DATA" in str(info.value)


@needs_wordnet
def test_wordnet_synonyms_of_movie():
    from distillkit.augment.wordnet import wordnet_synonyms

    synonyms = wordnet_synonyms()
    options = synonyms("movie")
    assert "film" in options and "motion picture" in options and "movie" not in options
    assert options == sorted(set(options)) and synonyms("movie") == options
