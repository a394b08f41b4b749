"""Evaluation metrics for generated text (causal-LM distillation): exact match, ROUGE-L, teacher-student
top-1 token agreement and perplexity. Pure Python + torch, no scoring package.

Conventions:
  * `normalize`: strip the ends and collapse every run of whitespace to one space. Case is KEPT for exact
    match (the embedded task's responses are canonical and lower-case, so a case error is an error);
    ROUGE-L lower-cases its tokens, as the `rouge-score` package does.
  * ROUGE-L: tokens are the whitespace-separated words of the lower-cased text (unlike `rouge-score`, no
    punctuation is stripped and no stemming is done). LCS is the longest common subsequence, found by
    dynamic programming; precision = LCS / len(prediction), recall = LCS / len(reference), and the score is
    their F-measure with beta = 1 (F1 = 2PR / (P + R)), which is what `rouge-score` reports as `fmeasure`.
    If the prediction or the reference has no tokens the pair scores 0.0 (also when both are empty), as in
    `rouge-score`; an LCS of 0 scores 0.0.
  * Corpus scores are means over pairs. Lists of different lengths, or empty lists (a mean over nothing is
    undefined, and a silent 0 or 1 would corrupt a report), raise ValueError.
  * `perplexity` = exp(mean NLL in nats), with the NLL capped at `MAX_NLL` = 50 (perplexity <= e^50, about
    5.2e21) so that a diverged model reports a large finite number instead of overflowing to inf; NaN stays NaN.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import NamedTuple

import torch

from distillkit.config.llm import FINAL_ANSWER

__all__ = [
    "MAX_NLL",
    "RougeLScore",
    "exact_match",
    "final_answer",
    "lcs_length",
    "normalize",
    "perplexity",
    "rouge_l",
    "rouge_l_score",
    "token_agreement",
    "token_agreement_counts",
]

MAX_NLL = 50.0


class RougeLScore(NamedTuple):
    precision: float
    recall: float
    fmeasure: float


def normalize(text: str) -> str:
    """Strip and collapse whitespace runs to one space (case is kept)."""
    return " ".join(text.split())


def _check_pairs(predictions: Sequence[str], references: Sequence[str]) -> None:
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    if len(predictions) == 0:
        raise ValueError("no predictions to score (empty lists)")
    for x in (*predictions, *references):
        if not isinstance(x, str):
            raise ValueError(f"predictions and references must be strings, got {type(x).__name__}")


def final_answer(text: str) -> str:
    """What follows the last ``Final answer:`` line of ``text`` (an explanation trace, ``method.pipeline=
    explanations``), or ``text`` itself when it has none: generations are scored on their final answer, so a student
    that explains before it answers is judged on the answer (a plain answer, the embedded task's, is unchanged)."""
    at = text.rfind(FINAL_ANSWER)
    return text if at < 0 else text[at + len(FINAL_ANSWER) :].strip()


def exact_match(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Fraction of pairs equal after `normalize` (case-sensitive)."""
    _check_pairs(predictions, references)
    hits = sum(normalize(p) == normalize(r) for p, r in zip(predictions, references))
    return hits / len(predictions)


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence of two token sequences (O(len(a) * len(b)) time,
    O(len(b)) memory)."""
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def rouge_l_score(prediction: str, reference: str) -> RougeLScore:
    """ROUGE-L precision, recall and F1 of one pair (lower-cased whitespace tokens; see the module docstring)."""
    pred, ref = prediction.lower().split(), reference.lower().split()
    if not pred or not ref:
        return RougeLScore(0.0, 0.0, 0.0)
    lcs = lcs_length(pred, ref)
    if lcs == 0:
        return RougeLScore(0.0, 0.0, 0.0)
    p, r = lcs / len(pred), lcs / len(ref)
    return RougeLScore(p, r, 2 * p * r / (p + r))


def rouge_l(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Mean ROUGE-L F1 (beta = 1) over the pairs."""
    _check_pairs(predictions, references)
    return sum(rouge_l_score(p, r).fmeasure for p, r in zip(predictions, references)) / len(predictions)


def token_agreement_counts(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, mask: torch.Tensor
) -> tuple[int, int]:
    """(positions where the student's and the teacher's top-1 tokens agree, positions counted), over the
    positions where `mask` (B, S; bool or 0/1) is set; logits are (B, S, V). For summing over batches."""
    if student_logits.dim() != 3 or student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"logits must both be (B, S, V), got {tuple(student_logits.shape)} and {tuple(teacher_logits.shape)}"
        )
    if tuple(mask.shape) != tuple(student_logits.shape[:2]):
        raise ValueError(f"mask must be (B, S) = {tuple(student_logits.shape[:2])}, got {tuple(mask.shape)}")
    keep = mask.bool()
    # torch.argmax returns the first maximal index, so ties resolve identically for both models.
    same = student_logits.argmax(dim=-1) == teacher_logits.argmax(dim=-1)
    return int((same & keep).sum().item()), int(keep.sum().item())


def token_agreement(student_logits: torch.Tensor, teacher_logits: torch.Tensor, mask: torch.Tensor) -> float:
    """Top-1 agreement of student and teacher over the masked positions, in [0, 1]; ValueError if the mask
    selects no position."""
    agree, total = token_agreement_counts(student_logits, teacher_logits, mask)
    if total == 0:
        raise ValueError("token_agreement: the mask selects no position")
    return agree / total


def perplexity(mean_nll: float) -> float:
    """exp(mean_nll) with mean_nll (nats per token) capped at MAX_NLL; inf gives exp(MAX_NLL), NaN gives NaN,
    a negative NLL (impossible for a distribution over discrete tokens) raises ValueError."""
    if isinstance(mean_nll, bool) or not isinstance(mean_nll, (numbers.Real, torch.Tensor)):
        raise ValueError(f"mean_nll must be a number, got {mean_nll!r}")
    x = float(mean_nll)
    if math.isnan(x):
        return math.nan
    if x < 0:
        raise ValueError(f"mean_nll must be >= 0, got {x}")
    return math.exp(min(x, MAX_NLL))
