"""Grey-box targets (``method=blackbox_sft method.kd_weight>0``): an endpoint's top log-probs as per-position top-k
targets, checked on hand cases; the batch the collator makes of them; and the KD term read against them: one-hot
targets give exactly NTP, the teacher's alternatives give the hand-computed KL over k + 1 buckets."""

from __future__ import annotations

import math

import pytest
import torch

from distillkit.losses import token
from distillkit.tasks.causal_lm.data import LMCollator
from distillkit.tasks.causal_lm.greybox import row_targets, slots_of, teacher_token_ids

EOS = 2
TEXT = {5: "a", 6: "b", 7: "c", EOS: "</s>"}
VOCAB = {t: i for i, t in TEXT.items()}
INF = float("-inf")


def _content():
    """The endpoint's answer "ac": token a (p .6; b .3 and an unknown token .05 beside it), then c (p .9 alone)."""
    return [
        {
            "token": "a",
            "logprob": math.log(0.6),
            "top_logprobs": [
                {"token": "b", "logprob": math.log(0.3)},
                {"token": "a", "logprob": math.log(0.6)},
                {"token": "zz", "logprob": math.log(0.05)},
            ],
        },
        {"token": "c", "logprob": math.log(0.9), "top_logprobs": [{"token": "c", "logprob": math.log(0.9)}]},
    ]


def test_an_aligned_row_carries_the_teachers_alternatives_and_the_tail():
    ids, logps, tails, aligned = row_targets(_content(), [5, 7, EOS], TEXT.get, VOCAB, slots=3)
    assert aligned
    # position 0: the chosen a, then b; the unknown token's mass stays in the tail; the empty slot repeats a at -inf
    assert ids[0] == [5, 6, 5]
    assert logps[0][:2] == pytest.approx([math.log(0.6), math.log(0.3)]) and logps[0][2] == INF
    assert tails[0] == pytest.approx(math.log(0.1))
    assert ids[1] == [7, 7, 7] and logps[1][0] == pytest.approx(math.log(0.9)) and logps[1][1:] == [INF, INF]
    assert tails[1] == pytest.approx(math.log(0.1))
    # the eos position (the endpoint returns no token for it): one-hot on the label
    assert ids[2] == [EOS] * 3 and logps[2] == [0.0, INF, INF] and tails[2] == INF


def test_a_row_whose_tokens_are_not_the_students_is_one_hot_on_its_labels():
    ids, logps, tails, aligned = row_targets(_content(), [6, 7, EOS], TEXT.get, VOCAB, slots=2)  # "b", not "a"
    assert not aligned
    assert ids == [[6, 6], [7, 7], [EOS, EOS]] and all(lp == [0.0, INF] for lp in logps) and tails == [INF] * 3
    assert row_targets(None, [5, EOS], TEXT.get, VOCAB, slots=2)[3] is False  # no log-probs at all


def test_the_student_learns_the_teachers_own_tokens_when_they_spell_its_answer():
    assert teacher_token_ids(_content(), "ac", VOCAB) == [5, 7]
    assert teacher_token_ids(_content(), "a c", VOCAB) is None  # the row's text is not the tokens' (trimmed, ...)
    unknown = [{"token": "zz", "logprob": -0.1}]
    assert teacher_token_ids(unknown, "zz", VOCAB) is None  # a token the student does not have
    assert slots_of([{"logprobs": _content()}, {"prompt": "x"}]) == 4


def _batch(rows):
    """Collated rows of a 2-token prompt and the given response ids (eos last), with their targets."""
    features = []
    for response, content in rows:
        labels = [-100, -100, *response]
        ids, logps, tails, _ = row_targets(content, response, TEXT.get, VOCAB, slots=3)
        features.append(
            {
                "input_ids": [1, 1, *response],
                "labels": labels,
                "prompt_length": 2,
                "topk_ids": ids,
                "topk_logp": logps,
                "topk_tail": tails,
            }
        )
    return LMCollator(pad_token_id=0)(features)


def test_one_hot_targets_make_the_kd_term_exactly_ntp():
    batch = _batch([([6, 7, EOS], None), ([5, EOS], None)])
    assert batch["topk_ids"].shape == (2, 4, 3) and batch["topk_tail"].shape == (2, 4)
    logits = torch.randn(2, 5, 8, generator=torch.Generator().manual_seed(0), requires_grad=True)
    mask = batch["labels"][:, 1:] != -100
    kd = token.forward_kl_topk(logits[:, :-1], batch["topk_ids"], batch["topk_logp"], batch["topk_tail"], mask)
    assert kd.item() == pytest.approx(token.next_token_loss(logits, batch["labels"]).item(), rel=1e-5)
    kd.backward()
    assert torch.isfinite(logits.grad).all()


def test_the_kd_term_is_the_kl_over_the_teachers_buckets():
    batch = _batch([([5, 7, EOS], _content())])
    logits = torch.randn(1, 5, 8, generator=torch.Generator().manual_seed(1))
    mask = batch["labels"][:, 1:] != -100
    kd = token.forward_kl_topk(logits[:, :-1], batch["topk_ids"], batch["topk_logp"], batch["topk_tail"], mask)
    log_s = logits[0].log_softmax(-1)  # position t predicts the token at t + 1: a (at 2) is predicted at 1
    # buckets a .6, b .3, rest .1
    rest = torch.logsumexp(log_s[1][[i for i in range(8) if i not in (5, 6)]], 0)
    p0 = 0.6 * (math.log(0.6) - log_s[1, 5]) + 0.3 * (math.log(0.3) - log_s[1, 6]) + 0.1 * (math.log(0.1) - rest)
    rest = torch.logsumexp(log_s[2][[i for i in range(8) if i != 7]], 0)
    p1 = 0.9 * (math.log(0.9) - log_s[2, 7]) + 0.1 * (math.log(0.1) - rest)
    p2 = -log_s[3, EOS]  # one-hot on eos: CE
    assert kd.item() == pytest.approx(((p0 + p1 + p2) / 3).item(), rel=1e-5)
