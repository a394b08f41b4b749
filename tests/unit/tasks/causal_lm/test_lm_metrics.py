"""Tests for distillkit.tasks.causal_lm.metrics: hand-computed values and properties of the generated-text metrics."""

from __future__ import annotations

import math
import random

import pytest
import torch

from distillkit.tasks.causal_lm.metrics import (
    MAX_NLL,
    exact_match,
    lcs_length,
    normalize,
    perplexity,
    rouge_l,
    rouge_l_score,
    token_agreement,
    token_agreement_counts,
)

# --- exact match --------------------------------------------------------------------------------


def test_normalize():
    assert normalize("  3  5\t7\n9 ") == "3 5 7 9"
    assert normalize("") == "" and normalize(" \n ") == ""


def test_exact_match_values():
    assert exact_match(["3 5 7", " 3  5 7 ", "food"], ["3 5 7", "3 5 7", "music"]) == pytest.approx(2 / 3)
    assert exact_match(["Food"], ["food"]) == 0.0  # case-sensitive, as documented
    assert exact_match(["357"], ["3 5 7"]) == 0.0  # whitespace is collapsed, not removed
    assert exact_match(["", "a"], ["  ", "b"]) == 0.5  # empty vs blank both normalise to ""


@pytest.mark.parametrize("metric", [exact_match, rouge_l])
def test_list_errors(metric):
    with pytest.raises(ValueError):
        metric(["a", "b"], ["a"])
    with pytest.raises(ValueError):
        metric([], [])
    with pytest.raises(ValueError):
        metric([None], ["a"])


# --- ROUGE-L ------------------------------------------------------------------------------------


def test_lcs_hand_computed():
    # "police killed the gunman" vs "the gunman police killed": common subsequences of length 2 are
    # "police killed" and "the gunman"; no order-preserving triple exists, so LCS = 2.
    assert lcs_length("police killed the gunman".split(), "the gunman police killed".split()) == 2
    # a b c b d a b vs b d c a b a (the CLRS example): LCS = 4 ("b c b a").
    assert lcs_length(list("abcbdab"), list("bdcaba")) == 4
    assert lcs_length([], ["a"]) == 0 and lcs_length(["a"], []) == 0
    assert lcs_length(["x", "y"], ["y", "x"]) == 1


def test_rouge_l_hand_computed():
    # prediction "the cat sat on the mat" (6 tokens), reference "the cat on the mat" (5 tokens):
    # dropping "sat" from the prediction gives the whole reference, so LCS = 5.
    # P = 5/6, R = 5/5 = 1, F1 = 2PR/(P+R) = (10/6)/(11/6) = 10/11 = 0.90909...
    s = rouge_l_score("the cat sat on the mat", "the cat on the mat")
    assert s.precision == pytest.approx(5 / 6)
    assert s.recall == pytest.approx(1.0)
    assert s.fmeasure == pytest.approx(10 / 11)
    # "police killed the gunman" vs "the gunman police killed": LCS = 2, P = R = 2/4, F1 = 0.5.
    assert rouge_l_score("police killed the gunman", "the gunman police killed").fmeasure == pytest.approx(0.5)
    # prediction "a b" vs reference "a x b y z": LCS = 2, P = 1, R = 2/5, F1 = 2*0.4/1.4 = 4/7.
    s = rouge_l_score("a b", "a x b y z")
    assert (s.precision, s.recall) == pytest.approx((1.0, 0.4))
    assert s.fmeasure == pytest.approx(4 / 7)


def test_rouge_l_corpus_mean_and_case():
    preds = ["the cat sat on the mat", "The Gunman", "x"]
    refs = ["the cat on the mat", "the gunman", "y"]
    assert rouge_l(preds, refs) == pytest.approx((10 / 11 + 1.0 + 0.0) / 3)


def test_rouge_l_properties():
    assert rouge_l_score("3 5 7 9", "3 5 7 9").fmeasure == 1.0
    assert rouge_l_score("  3 5\n7 ", "3 5 7").fmeasure == 1.0  # whitespace tokens
    assert rouge_l_score("a b c", "d e f") == (0.0, 0.0, 0.0)
    rng = random.Random(0)
    for _ in range(200):
        a = " ".join(rng.choice("abcd") for _ in range(rng.randint(1, 7)))
        b = " ".join(rng.choice("abcd") for _ in range(rng.randint(1, 7)))
        ab, ba = rouge_l_score(a, b), rouge_l_score(b, a)
        assert ab.fmeasure == pytest.approx(ba.fmeasure)  # F1 is symmetric
        assert (ab.precision, ab.recall) == pytest.approx((ba.recall, ba.precision))
        assert 0.0 <= ab.fmeasure <= 1.0
        assert min(ab.precision, ab.recall) <= ab.fmeasure <= max(ab.precision, ab.recall) + 1e-12


def test_rouge_l_empty():
    # As rouge-score: an empty prediction or reference scores 0, even when both are empty.
    assert rouge_l_score("", "the cat") == (0.0, 0.0, 0.0)
    assert rouge_l_score("the cat", "   ") == (0.0, 0.0, 0.0)
    assert rouge_l_score("", "") == (0.0, 0.0, 0.0)
    assert rouge_l(["", "a"], ["a", "a"]) == 0.5


# --- token agreement ------------------------------------------------------------------------------


def one_hot_logits(tokens: list[list[int]], vocab: int = 5) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.tensor(tokens), vocab).float() * 3.0


def test_token_agreement_hand_computed():
    teacher = one_hot_logits([[1, 2, 3, 4], [0, 0, 1, 1]])
    student = one_hot_logits([[1, 2, 0, 4], [0, 3, 1, 2]])
    # agreements: row 0 -> T T F T, row 1 -> T F T F: 5 of 8.
    full = torch.ones(2, 4, dtype=torch.bool)
    assert token_agreement(student, teacher, full) == pytest.approx(5 / 8)
    # A mask that leaves out the three disagreeing positions (0,2), (1,1), (1,3) gives 1.0.
    mask = torch.tensor([[1, 1, 0, 1], [1, 0, 1, 0]])
    assert token_agreement(student, teacher, mask) == 1.0
    assert token_agreement_counts(student, teacher, mask) == (5, 5)
    # Only the disagreeing positions: 0.0.
    assert token_agreement(student, teacher, 1 - mask) == 0.0
    # Padding-style mask: first two positions of each row: T T, T F -> 3/4.
    pad = torch.tensor([[True, True, False, False], [True, True, False, False]])
    assert token_agreement(student, teacher, pad) == pytest.approx(3 / 4)


def test_token_agreement_uses_top1_not_values():
    teacher = torch.tensor([[[0.0, 5.0, 1.0], [2.0, 1.0, 0.0]]])
    student = torch.tensor([[[-9.0, -1.0, -2.0], [0.1, 0.9, 0.0]]])  # argmax 1 (agrees), 1 (teacher: 0)
    assert token_agreement(student, teacher, torch.ones(1, 2)) == 0.5


def test_token_agreement_errors():
    x = torch.zeros(2, 3, 4)
    with pytest.raises(ValueError):
        token_agreement(x, torch.zeros(2, 3, 5), torch.ones(2, 3))
    with pytest.raises(ValueError):
        token_agreement(x, x, torch.ones(2, 4))
    with pytest.raises(ValueError):
        token_agreement(torch.zeros(3, 4), torch.zeros(3, 4), torch.ones(3))
    with pytest.raises(ValueError, match="no position"):
        token_agreement(x, x, torch.zeros(2, 3))


# --- perplexity -----------------------------------------------------------------------------------


def test_perplexity():
    assert perplexity(math.log(10)) == pytest.approx(10.0)
    assert perplexity(0.0) == 1.0
    assert perplexity(torch.tensor(math.log(4.0))) == pytest.approx(4.0)
    assert perplexity(1e6) == pytest.approx(math.exp(50.0)) and MAX_NLL == 50.0  # capped, no OverflowError
    assert perplexity(float("inf")) == pytest.approx(math.exp(50.0))
    assert math.isfinite(perplexity(1e308))
    assert math.isnan(perplexity(float("nan")))
    with pytest.raises(ValueError):
        perplexity(-0.5)
    with pytest.raises(ValueError):
        perplexity("2.3")
