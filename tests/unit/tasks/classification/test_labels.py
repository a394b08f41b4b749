"""method=blackbox_label's classification side: the verbaliser's matching rules, soft labels from top log-probs
(hand-computed: renormalisation, the floor, classes absent, ambiguous tokens), prompts, rows and the data view."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest

from distillkit.errors import ConfigError
from distillkit.tasks.classification.labels import Labeller, Verbaliser, prompts, soft_label, view
from distillkit.teachers.generating import Completion

NAMES = ["positive", "negative", "neutral"]


def top(*pairs):
    """A completion's logprobs as the endpoint teacher stores them: the first position's top alternatives."""
    alts = [{"token": t, "logprob": math.log(p)} for t, p in pairs]
    return [{"token": alts[0]["token"], "logprob": alts[0]["logprob"], "top_logprobs": alts}]


@pytest.mark.parametrize(
    "answer,expected",
    [
        ("positive", 0),
        ("  Negative.", 1),  # case and punctuation
        ("I would say NEUTRAL, maybe positive", 2),  # first: the earliest word wins
        ("The sentiment is negative; not positive.", 1),
        ("positively glowing", None),  # words match at word boundaries only
        ("no idea", None),  # names no class: rejected
        ("", None),
    ],
)
def test_first_match_takes_the_earliest_word_case_insensitively(answer, expected):
    assert Verbaliser(NAMES).classify(answer) == expected


def test_first_match_prefers_the_longest_word_at_one_position_and_maps_every_word_of_a_class():
    v = Verbaliser(NAMES, {"positive": ["good", "great"], "negative": ["not good", "bad"], "neutral": ["okay"]})
    assert v.classify("not good at all") == 1  # "not good" (negative), not "good" inside it
    assert v.classify("Great!") == 0 and v.classify("it was bad, then good") == 1 and v.classify("OK") is None


@pytest.mark.parametrize(
    "answer,expected",
    [("Positive", 0), (' "negative." ', 1), ("neutral!", 2), ("positive, I think", None), ("not positive", None)],
)
def test_exact_match_needs_the_whole_trimmed_answer_to_be_a_word(answer, expected):
    assert Verbaliser(NAMES, match="exact").classify(answer) == expected


def test_label_names_with_a_slash_are_words_too():
    v = Verbaliser(["food/positive", "food/negative"])
    assert v.classify("Class: food/negative") == 1 and v.classify("food") is None


def test_soft_label_renormalises_over_the_classes_with_a_floor_for_the_absent_ones():
    # positive 0.6, negative 0.2, an unrelated token 0.1 (ignored), neutral absent → floor 0.01
    p = soft_label(top(("positive", 0.6), (" Negative", 0.2), ("maybe", 0.1)), Verbaliser(NAMES), floor=0.01)
    assert p == pytest.approx([0.6 / 0.81, 0.2 / 0.81, 0.01 / 0.81])
    assert sum(p) == pytest.approx(1.0)


def test_soft_label_sums_the_tokens_of_one_class_and_reads_unique_prefixes():
    v = Verbaliser(NAMES)
    # "pos" and "Positive" both count for positive; "neu" is a prefix of neutral only; "ne" of two classes: ignored
    p = soft_label(top(("pos", 0.5), ("Positive", 0.2), ("neu", 0.1), ("ne", 0.15)), v, floor=1e-4)
    total = 0.7 + 1e-4 + 0.1
    assert p == pytest.approx([0.7 / total, 1e-4 / total, 0.1 / total])


def test_soft_label_is_none_without_log_probs_or_without_a_token_of_any_class():
    v = Verbaliser(NAMES)
    assert soft_label(None, v, 1e-4) is None and soft_label([], v, 1e-4) is None
    assert soft_label(top(("hmm", 0.9), ("well", 0.1)), v, 1e-4) is None
    # no alternatives returned (top_logprobs=0): the chosen token alone, one class sure up to the floor
    only = [{"token": "negative", "logprob": math.log(0.9), "top_logprobs": []}]
    assert soft_label(only, v, 0.01) == pytest.approx([0.01 / 0.92, 0.9 / 0.92, 0.01 / 0.92])


def test_checked_verbaliser_refuses_unknown_classes_missing_classes_and_shared_words():
    with pytest.raises(ConfigError) as err:
        mapping = {"positive": ["good"], "negative": ["bad"], "neutral": ["meh"], "mixed": ["both"]}
        Verbaliser.checked(NAMES, mapping, "first")
    assert err.value.key == "method.verbaliser.mixed" and "does not have" in err.value.problem
    assert "positive, negative, neutral" in err.value.problem
    with pytest.raises(ConfigError) as err:
        Verbaliser.checked(NAMES, {"positive": ["good"]}, "first")
    assert err.value.key == "method.verbaliser" and "negative, neutral" in err.value.problem
    with pytest.raises(ConfigError) as err:
        Verbaliser.checked(NAMES, {"positive": ["good"], "negative": ["Good"], "neutral": ["meh"]}, "first")
    assert err.value.key == "method.verbaliser.negative" and "positive" in err.value.problem


def test_prompts_fill_the_template_and_the_labeller_reads_answers_and_soft_labels():
    split = _Split({"text": ["great food", "awful {trip}"], "label": [0, 1]})
    convs = prompts(split, "Pick one of {labels}. Text: {text}", "Be brief.", NAMES)
    assert convs[0] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Pick one of positive, negative, neutral. Text: great food"},
    ]
    assert convs[1][1]["content"].endswith("Text: awful {trip}")  # braces in a text are left alone
    spec = SimpleNamespace(template="{text}", verbaliser=None, match="first", soft=True, floor=0.01, label_eval=True)
    lab = Labeller(NAMES, spec)
    label, p = lab.read(Completion("negative", "stop", top(("negative", 0.8), ("positive", 0.19))))
    assert label == 1 and p == pytest.approx([0.19 / 1.0, 0.8 / 1.0, 0.01 / 1.0])
    assert lab.read(Completion("no idea", "stop", top(("no", 0.9)))) == (None, None)
    hard = Labeller(NAMES, SimpleNamespace(**{**vars(spec), "soft": False}))
    assert hard.read(Completion("negative", "stop", top(("negative", 0.8)))) == (1, None)
    row = lab.row({"text": "x", "label": 0}, 1, [0.2, 0.8, 0.0], "negative")
    assert row == {"text": "x", "label": 1, "soft": [0.2, 0.8, 0.0], "answer": "negative"}


def test_several_answers_vote_for_the_label_and_their_shares_are_its_soft_label():
    spec = SimpleNamespace(template="{text}", verbaliser=None, match="first", soft=True, floor=0.01, label_eval=True)
    lab = Labeller(NAMES, spec)
    answers = [Completion(t) for t in ("negative", "I cannot tell", "positive", "negative.")]
    label, soft, answer, votes = lab.vote(answers)  # 2 negative, 1 positive; the class-less answer does not vote
    assert (label, answer, votes) == (1, "negative", 3)
    assert soft == pytest.approx([x / 1.01 for x in (1 / 3, 2 / 3, 0.01)])  # neutral: the floor, renormalised
    # a tie goes to the class named first; no class at all: no label
    assert lab.vote([Completion("positive"), Completion("negative")])[0] == 0
    assert lab.vote([Completion("?"), Completion("no idea")])[:2] == (None, None)
    # with log-probs the soft label is the mean of the voters' distributions
    with_lp = [Completion("negative", "stop", top(("negative", 0.8), ("positive", 0.2))),
               Completion("negative", "stop", top(("negative", 0.6), ("neutral", 0.4)))]  # fmt: skip
    soft = lab.vote(with_lp)[1]
    first, second = lab.read(with_lp[0])[1], lab.read(with_lp[1])[1]
    assert soft == pytest.approx([(a + b) / 2 for a, b in zip(first, second)])
    hard = Labeller(NAMES, SimpleNamespace(**{**vars(spec), "soft": False}))
    assert hard.vote(answers)[:2] == (1, None)
    assert lab.vote([Completion("negative")])[1] is None  # one answer, no log-probs: a hard label


class _Split(dict):
    """A datasets.Dataset stand-in: columns by name, column_names, len."""

    @property
    def column_names(self):
        return list(self)

    def __len__(self):
        return len(next(iter(self.values())))


def test_view_tokenises_the_rows_with_a_soft_column_one_hot_where_the_teacher_gave_none(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel({"[PAD]": 0, "[UNK]": 1, "good": 2, "bad": 3}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]")
    path = tmp_path / "train.jsonl"
    rows = [{"text": "good", "label": 0, "soft": [0.7, 0.2, 0.1]}, {"text": "bad bad", "label": 1}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    data = view(path, fast, SimpleNamespace(data=SimpleNamespace(max_length=8)), num_labels=3)
    assert data["labels"] == [0, 1] and data["idx"] == [0, 1] and data["input_ids"] == [[2], [3, 3]]
    assert data["soft"][0] == pytest.approx([0.7, 0.2, 0.1]) and data["soft"][1] == [0.0, 1.0, 0.0]
