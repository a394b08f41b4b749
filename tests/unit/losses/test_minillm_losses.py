"""MiniLLM's policy-gradient losses (distillkit/losses/minillm.py) against hand-computed cases (V = 3, three response
tokens after one prompt position), the REINFORCE formula for the surrogate's gradient, and the exact gradient of the
sequence-level reverse KL on a tabular two-token policy (the single-step decomposition is exact in expectation)."""

import itertools
import math

import pytest
import torch

from distillkit.losses import minillm
from distillkit.losses.token import reverse_kl

LN2 = math.log(2.0)
Q = [0.5, 0.25, 0.25]  # the student's next-token distribution at every response position
P = [0.25, 0.5, 0.25]  # the teacher's
# p̃ = 0.2·P + 0.8·Q = [0.45, 0.30, 0.25]; w = Q/p̃ = [10/9, 5/6, 1]; r = log P − log Q = [−ln 2, ln 2, 0]
MIX = [0.45, 0.30, 0.25]
W = [10 / 9, 5 / 6, 1.0]
R = [-LN2, LN2, 0.0]


def _case(prompt_garbage=float("nan")):
    """B=1, S=4: position 0 is the prompt (its logits NaN: never read), positions 1..3 the response tokens 0, 1, 2,
    every response position with the distributions Q (student) and P (teacher); logits = log-probabilities."""
    student = torch.tensor([[Q, Q, Q, Q]]).log()
    teacher = torch.tensor([[P, P, P, P]]).log()
    student[0, 0], teacher[0, 0] = prompt_garbage, prompt_garbage
    tokens = torch.tensor([[-100, 0, 1, 2]])
    mask = tokens != -100
    return student.requires_grad_(), teacher, tokens, mask


# ---------------------------------------------------------------------------------- mixture and importance weights


def test_mixture_log_probs_and_importance_weights_by_hand():
    log_q, log_p = torch.tensor(Q).log(), torch.tensor(P).log()
    assert minillm.mixture_logprobs(log_q, log_p, 0.2).exp().tolist() == pytest.approx(MIX)
    assert minillm.importance_weights(log_q, log_p, 0.2).tolist() == pytest.approx(W)
    # the endpoints are exact: α = 0 is the student, α = 1 the teacher; w ≡ 1 at α = 0
    assert torch.equal(minillm.mixture_logprobs(log_q, log_p, 0.0), log_q)
    assert torch.equal(minillm.mixture_logprobs(log_q, log_p, 1.0), log_p)
    assert minillm.importance_weights(log_q, log_p, 0.0).tolist() == [1.0, 1.0, 1.0]
    # bounded by 1/(1 − α) however small the teacher's probability (here 0: a −inf log-prob)
    w = minillm.importance_weights(torch.tensor([0.0]), torch.tensor([float("-inf")]), 0.2)
    assert w.item() == pytest.approx(1.25)
    with pytest.raises(ValueError, match="alpha"):
        minillm.mixture_logprobs(log_q, log_p, 1.5)


def test_importance_weights_are_detached():
    log_q = torch.tensor(Q).log().requires_grad_()
    assert not minillm.importance_weights(log_q, torch.tensor(P).log(), 0.2).requires_grad


def test_token_log_probs_read_only_the_masked_positions():
    student, _, tokens, mask = _case()
    out = minillm.token_logprobs(student, tokens, mask)
    assert out[0].tolist() == pytest.approx([0.0, math.log(0.5), math.log(0.25), math.log(0.25)])
    out.sum().backward()
    assert torch.isfinite(student.grad).all() and student.grad[0, 0].abs().sum() == 0


# ------------------------------------------------------------------------------------------------ future returns


def test_future_returns_with_and_without_length_normalisation():
    # row 0: prompt, then rewards 2, 3, 4; row 1: prompt, rewards 1, 2, then padding whose 7 must not count
    rewards = torch.tensor([[1.0, 2.0, 3.0, 4.0], [9.0, 1.0, 2.0, 7.0]])
    mask = torch.tensor([[0, 1, 1, 1], [0, 1, 1, 0]]).bool()
    plain = minillm.future_returns(rewards, mask, length_norm=False)
    assert plain.tolist() == [[0.0, 7.0, 4.0, 0.0], [0.0, 2.0, 0.0, 0.0]]  # R_{t+1} = Σ_{t'>t} r_t'; 0 off the mask
    normed = minillm.future_returns(rewards, mask, length_norm=True)
    assert normed.tolist() == [[0.0, 3.5, 4.0, 0.0], [0.0, 2.0, 0.0, 0.0]]  # divided by T − t future tokens
    discounted = minillm.future_returns(rewards, mask, length_norm=False, discount=0.5)
    assert discounted.tolist() == [[0.0, 5.0, 4.0, 0.0], [0.0, 2.0, 0.0, 0.0]]  # 3 + 0.5·4
    assert minillm.future_returns(rewards, mask, length_norm=True, discount=0.5)[0, 1].item() == 2.5


def test_rewards_are_teacher_minus_student_log_probs_clipped_and_masked():
    log_q = torch.tensor([[5.0, -1.0, -2.0, -3.0]])
    log_p = torch.tensor([[0.0, -3.0, -1.0, -30.0]])
    mask = torch.tensor([[False, True, True, True]])
    assert minillm.rewards(log_q, log_p, mask).tolist() == [[0.0, -2.0, 1.0, -27.0]]
    assert minillm.rewards(log_q, log_p, mask, clip=10.0).tolist() == [[0.0, -2.0, 1.0, -10.0]]


# ------------------------------------------------------------------------------------------- the two loss terms


def test_single_step_term_by_hand():
    # KL(Q ‖ P) = 0.5·ln 2 + 0.25·ln 0.5 + 0 = 0.25·ln 2 at every position; weighted by w of the sampled token
    student, teacher, tokens, mask = _case()
    kl = 0.25 * LN2
    value = minillm.single_step_loss(student, teacher, tokens, mask, alpha=0.2)
    assert value.item() == pytest.approx(sum(W) / 3 * kl)  # (10/9 + 5/6 + 1)/3 · 0.25 ln 2
    assert minillm.single_step_loss(student, teacher, tokens, mask, alpha=0.0).item() == pytest.approx(kl)
    value.backward()
    assert torch.isfinite(student.grad).all() and student.grad[0, 0].abs().sum() == 0  # the prompt's NaN unread


def test_single_step_term_is_the_weighted_token_level_reverse_kl():
    g = torch.Generator().manual_seed(0)
    student, teacher = torch.randn(2, 5, 7, generator=g), torch.randn(2, 5, 7, generator=g)
    tokens = torch.randint(0, 7, (2, 5), generator=g)
    mask = torch.rand(2, 5, generator=g) > 0.3
    assert minillm.single_step_loss(student, teacher, tokens, mask, alpha=0.0).item() == pytest.approx(
        reverse_kl(student, teacher, mask).item()
    )
    chunked = minillm.single_step_loss(student, teacher, tokens, mask, alpha=0.2, chunk_size=2)
    assert chunked.item() == pytest.approx(minillm.single_step_loss(student, teacher, tokens, mask, alpha=0.2).item())


def test_long_term_term_by_hand():
    # r = [−ln 2, ln 2, 0]: R^Norm_{t+1} = [(ln 2 + 0)/2, 0/1, 0] and R_{t+1} = [ln 2, 0, 0]; value −(1/N)·Σ w·R
    student, teacher, tokens, mask = _case()
    normed = minillm.long_term_loss(student, teacher, tokens, mask, alpha=0.2, length_norm=True)
    assert normed.item() == pytest.approx(-W[0] * LN2 / 2 / 3)
    plain = minillm.long_term_loss(student, teacher, tokens, mask, alpha=0.2, length_norm=False)
    assert plain.item() == pytest.approx(-W[0] * LN2 / 3)
    # ε = 0.2 leaves w = 10/9 inside [0.8, 1.2]: the same value
    clipped = minillm.long_term_loss(student, teacher, tokens, mask, alpha=0.2, length_norm=False, ratio_clip=0.2)
    assert clipped.item() == pytest.approx(plain.item())
    normed.backward()
    assert torch.isfinite(student.grad).all() and student.grad[0, 0].abs().sum() == 0


def test_padding_and_prompt_positions_change_nothing():
    student, teacher, tokens, mask = _case(prompt_garbage=1e4)
    pad = torch.full((1, 2, 3), float("nan"))  # two padded positions after the response, NaN logits
    padded = [torch.cat([student.detach(), pad], 1), torch.cat([teacher, pad], 1)]
    padded_tokens = torch.cat([tokens, torch.tensor([[-100, -100]])], 1)
    padded_mask = padded_tokens != -100
    for loss in (minillm.single_step_loss, minillm.long_term_loss):
        assert loss(*padded, padded_tokens, padded_mask).item() == pytest.approx(
            loss(student, teacher, tokens, mask).item()
        )
    nothing = torch.zeros_like(mask)
    for loss in (minillm.single_step_loss, minillm.long_term_loss):
        value = loss(student, teacher, tokens, nothing)
        assert value.item() == 0.0
        value.backward()


# ------------------------------------------------------------------------------------------------------ gradients


def _random_case(seed=0, b=2, s=5, v=4):
    g = torch.Generator().manual_seed(seed)
    student = (torch.randn(b, s, v, generator=g) * 2).requires_grad_()
    teacher = torch.randn(b, s, v, generator=g) * 2
    tokens = torch.randint(0, v, (b, s), generator=g)
    mask = torch.tensor([[0, 1, 1, 1, 1], [0, 0, 1, 1, 0]]).bool()[:b, :s]
    return student, teacher, tokens, mask


@pytest.mark.parametrize("length_norm", [True, False])
def test_the_surrogate_gradient_is_the_reinforce_formula(length_norm):
    """∇_z L_long = −(1/N)·Σ_t w_t·R_{t+1}·∇_z log q(y_t) with ∇_z log softmax(z)[y] = onehot(y) − softmax(z),
    computed by hand from the formula (w and R from probabilities, in float64)."""
    student, teacher, tokens, mask = _random_case()
    alpha = 0.3
    loss = minillm.long_term_loss(student, teacher, tokens, mask, alpha=alpha, length_norm=length_norm)
    (grad,) = torch.autograd.grad(loss, student)

    q, p = student.detach().double().softmax(-1), teacher.double().softmax(-1)
    expected = torch.zeros_like(q)
    n = int(mask.sum())
    for b, t in mask.nonzero().tolist():
        y = tokens[b, t]
        w = q[b, t, y] / (alpha * p[b, t, y] + (1 - alpha) * q[b, t, y])
        future = [u for u in range(t + 1, mask.shape[1]) if mask[b, u]]
        ret = sum(math.log(p[b, u, tokens[b, u]] / q[b, u, tokens[b, u]]) for u in future)
        if length_norm and future:
            ret /= len(future)
        expected[b, t] = -w * ret * (torch.nn.functional.one_hot(y, q.shape[-1]).double() - q[b, t]) / n
    torch.testing.assert_close(grad.double(), expected, rtol=1e-5, atol=1e-7)


def test_the_ppo_clip_drops_the_gradient_of_a_weight_outside_the_range():
    # one future token gives the first token a positive return; its weight q/p̃ = 0.9/(0.2·0.01 + 0.8·0.9) ≈ 1.2465
    student = torch.tensor([[[0.9, 0.05, 0.05], [0.5, 0.25, 0.25]]]).log().requires_grad_()
    teacher = torch.tensor([[[0.01, 0.01, 0.98], [0.25, 0.5, 0.25]]]).log()
    tokens, mask = torch.tensor([[0, 1]]), torch.tensor([[True, True]])
    ret = LN2  # r of the second token: ln(0.5/0.25)
    w = 0.9 / (0.2 * 0.01 + 0.8 * 0.9)
    free = minillm.long_term_loss(student, teacher, tokens, mask, alpha=0.2, length_norm=False)
    assert free.item() == pytest.approx(-w * ret / 2)
    clipped = minillm.long_term_loss(student, teacher, tokens, mask, alpha=0.2, length_norm=False, ratio_clip=0.2)
    assert clipped.item() == pytest.approx(-1.2 * ret / 2)  # max(−R·ρ, −R·clip(ρ)) with ρ = w > 1.2, R > 0
    (grad,) = torch.autograd.grad(clipped, student)
    assert grad.abs().sum() == 0  # the first token's gradient is clipped, the second has no future reward


def test_in_expectation_the_decomposition_is_the_gradient_of_the_sequence_reverse_kl():
    """A tabular policy over two tokens (V = 2): q(y1) from z1, q(y2|y1) from z2[y1]. Summing the two terms over all
    four sequences, each weighted by q(y) (exact expectation, α = 0, no length normalisation, no clip), gives
    ∇_z KL(q(y1, y2) ‖ p(y1, y2)) exactly: the single-step decomposition loses nothing."""
    g = torch.Generator().manual_seed(3)
    z1, z2 = torch.randn(2, generator=g, dtype=torch.float64), torch.randn(2, 2, generator=g, dtype=torch.float64)
    t1, t2 = torch.randn(2, generator=g, dtype=torch.float64), torch.randn(2, 2, generator=g, dtype=torch.float64)
    z1.requires_grad_(), z2.requires_grad_()

    def seq_logprob(a, b, y1, y2):
        return a.log_softmax(-1)[y1] + b[y1].log_softmax(-1)[y2]

    pairs = list(itertools.product(range(2), repeat=2))
    exact = sum(seq_logprob(z1, z2, *y).exp() * (seq_logprob(z1, z2, *y) - seq_logprob(t1, t2, *y)) for y in pairs)
    want = torch.autograd.grad(exact, (z1, z2))

    surrogate = 0.0
    for y1, y2 in pairs:
        student = torch.stack([z1, z2[y1]])[None]  # (1, 2, V): the logits at the two positions of this sequence
        teacher = torch.stack([t1, t2[y1]])[None]
        tokens, mask = torch.tensor([[y1, y2]]), torch.ones(1, 2, dtype=torch.bool)
        terms = minillm.single_step_loss(student, teacher, tokens, mask, alpha=0.0) + minillm.long_term_loss(
            student, teacher, tokens, mask, alpha=0.0, length_norm=False
        )
        # the terms are means over the N = 2 tokens: × 2 for the sum over t, × q(y) for the expectation
        surrogate = surrogate + 2 * seq_logprob(z1, z2, y1, y2).exp().detach() * terms
    got = torch.autograd.grad(surrogate, (z1, z2))
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)


def test_bad_arguments_are_refused():
    student, teacher, tokens, mask = _case()
    with pytest.raises(ValueError, match="discount"):
        minillm.future_returns(torch.zeros(1, 4), mask, discount=0.0)
    with pytest.raises(ValueError, match="ratio_clip"):
        minillm.long_term_loss(student, teacher, tokens, mask, ratio_clip=1.5)
    with pytest.raises(ValueError, match="mask"):
        minillm.token_logprobs(student, tokens, mask[:, :2])
