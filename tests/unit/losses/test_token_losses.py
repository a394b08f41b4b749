"""Token-level LM distillation losses against hand-computed values, float64 references and their properties."""

import math

import pytest
import torch
import torch.nn.functional as F

from distillkit.losses.token import forward_kl, forward_kl_topk, generalized_jsd, reverse_kl, topk_targets

LOSSES = {
    "forward_kl": forward_kl,
    "reverse_kl": reverse_kl,
    "jsd_0.3": lambda s, t, m, **kw: generalized_jsd(s, t, m, beta=0.3, **kw),
}


def _random_case(b=3, s=5, v=11, seed=0, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    student = torch.randn(b, s, v, generator=g) * scale
    teacher = torch.randn(b, s, v, generator=g) * scale
    mask = torch.rand(b, s, generator=g) > 0.3
    mask[0, 0] = True  # at least one response token
    return student, teacher, mask


def _kl(p, q):
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q) if pi > 0)


def _jsd64(student, teacher, mask, beta):
    """Reference generalized JSD in float64 from probabilities (no log-space tricks), m = β p_t + (1 − β) p_s."""
    p_s, p_t = F.softmax(student.double(), -1)[mask], F.softmax(teacher.double(), -1)[mask]
    m = beta * p_t + (1 - beta) * p_s
    kl_t = (p_t * (p_t / m).log()).sum(-1)
    kl_s = (p_s * (p_s / m).log()).sum(-1)
    return (beta * kl_t + (1 - beta) * kl_s).mean().item()


# ---------------------------------------------------------------------------------------------- hand-computed values


def test_hand_computed_values_and_mean_over_unmasked_positions():
    # B=1, S=2, V=3; logits = log-probabilities, so softmax gives back exactly these distributions.
    p0, q0 = [0.5, 0.3, 0.2], [0.2, 0.5, 0.3]  # position 0: teacher p, student q
    p1, q1 = [0.1, 0.1, 0.8], [1 / 3, 1 / 3, 1 / 3]  # position 1
    teacher = torch.tensor([[p0, p1]]).log()
    student = torch.tensor([[q0, q1]]).log()
    m0 = [(a + b) / 2 for a, b in zip(p0, q0)]
    m1 = [(a + b) / 2 for a, b in zip(p1, q1)]
    expected = {
        forward_kl: (_kl(p0, q0), _kl(p1, q1)),
        reverse_kl: (_kl(q0, p0), _kl(q1, p1)),
        generalized_jsd: ((_kl(p0, m0) + _kl(q0, m0)) / 2, (_kl(p1, m1) + _kl(q1, m1)) / 2),
    }
    first_only, both = torch.tensor([[True, False]]), torch.tensor([[1, 1]])
    garbage_teacher, garbage_student = teacher.clone(), student.clone()
    garbage_teacher[0, 1] = torch.tensor([1e4, -1e4, 0.0])
    garbage_student[0, 1] = torch.tensor([-1e4, 3e3, 1e4])
    for loss, (e0, e1) in expected.items():
        assert loss(student, teacher, first_only).item() == pytest.approx(e0, rel=1e-5)
        assert loss(garbage_student, garbage_teacher, first_only).item() == pytest.approx(e0, rel=1e-5)
        assert loss(student, teacher, both).item() == pytest.approx((e0 + e1) / 2, rel=1e-5)
        assert loss(student, teacher, torch.tensor([[False, True]])).item() == pytest.approx(e1, rel=1e-5)


def test_forward_kl_gradient_matches_closed_form():
    # d/dz_s of T² · mean KL(p_t ‖ p_s) = T · (p_s − p_t) / n at the n masked rows, 0 elsewhere.
    student, teacher, mask = _random_case(seed=1)
    student.requires_grad_(True)
    t = 2.0
    forward_kl(student, teacher, mask, temperature=t).backward()
    expected = t * (F.softmax(student.detach() / t, -1) - F.softmax(teacher / t, -1)) / mask.sum()
    expected[~mask] = 0
    torch.testing.assert_close(student.grad, expected, atol=1e-6, rtol=1e-5)


# ------------------------------------------------------------------------------------------------------- properties


@pytest.mark.parametrize("name", list(LOSSES))
def test_nonnegative_and_zero_for_equal_logits(name):
    loss = LOSSES[name]
    for seed in range(4):
        student, teacher, mask = _random_case(seed=seed)
        assert loss(student, teacher, mask).item() > 1e-3
        assert loss(teacher, teacher, mask).item() == pytest.approx(0.0, abs=1e-6)
        # Equal distributions from shifted logits (softmax is shift invariant): still zero.
        assert loss(teacher + 7.0, teacher, mask).item() == pytest.approx(0.0, abs=1e-5)


@pytest.mark.parametrize("temperature", [1.0, 2.5])
def test_jsd_endpoints_are_forward_and_reverse_kl(temperature):
    student, teacher, mask = _random_case(seed=2)
    for scale in (True, False):
        kw = dict(temperature=temperature, scale_by_t2=scale)
        fkl, rkl = forward_kl(student, teacher, mask, **kw), reverse_kl(student, teacher, mask, **kw)
        assert abs(fkl.item() - rkl.item()) > 1e-2  # the two endpoints are really different
        assert generalized_jsd(student, teacher, mask, beta=0.0, **kw).item() == pytest.approx(fkl.item(), abs=1e-6)
        assert generalized_jsd(student, teacher, mask, beta=1.0, **kw).item() == pytest.approx(rkl.item(), abs=1e-6)


def test_jsd_convention_teacher_is_p():
    # m = β p_t + (1 − β) p_s: near β = 0, JSD(β)/β → KL(p_t ‖ p_s); near β = 1, JSD(β)/(1 − β) → KL(p_s ‖ p_t).
    # (The swapped convention would give the opposite limits.)
    student, teacher, mask = _random_case(seed=3, scale=1.0)
    fkl, rkl = forward_kl(student, teacher, mask).item(), reverse_kl(student, teacher, mask).item()
    assert abs(fkl - rkl) / fkl > 0.05
    eps = 1e-3
    assert generalized_jsd(student, teacher, mask, beta=eps).item() / eps == pytest.approx(fkl, rel=2e-2)
    assert generalized_jsd(student, teacher, mask, beta=1 - eps).item() / eps == pytest.approx(rkl, rel=2e-2)


@pytest.mark.parametrize("beta", [0.1, 0.5, 0.73])
def test_jsd_matches_float64_reference_and_bounds(beta):
    student, teacher, mask = _random_case(seed=4)
    value = generalized_jsd(student, teacher, mask, beta=beta).item()
    assert value == pytest.approx(_jsd64(student, teacher, mask, beta), rel=1e-5, abs=1e-7)
    entropy = -beta * math.log(beta) - (1 - beta) * math.log(1 - beta)
    assert 0 < value <= entropy
    # Disjoint supports reach the bound H(β) (log 2 at β = 0.5); logits of ±1e4 stay finite.
    far_t = torch.tensor([[[1e4, -1e4, -1e4]]])
    far_s = torch.tensor([[[-1e4, 1e4, -1e4]]])
    one = torch.ones(1, 1, dtype=torch.bool)
    assert generalized_jsd(far_s, far_t, one, beta=beta).item() == pytest.approx(entropy, rel=1e-5)


def test_jsd_half_is_at_most_log_two():
    for seed in range(5):
        student, teacher, mask = _random_case(seed=seed, scale=10.0)
        assert generalized_jsd(student, teacher, mask, beta=0.5, scale_by_t2=False).item() <= math.log(2) + 1e-6


@pytest.mark.parametrize("name", list(LOSSES))
def test_temperature_squared_scaling(name):
    loss = LOSSES[name]
    student, teacher, mask = _random_case(seed=5)
    t = 3.0
    tempered = loss(student / t, teacher / t, mask).item()  # unscaled divergence of the tempered distributions
    assert abs(tempered - loss(student, teacher, mask).item()) > 1e-3  # temperature matters here
    assert loss(student, teacher, mask, temperature=t).item() == pytest.approx(t**2 * tempered, rel=1e-5)
    assert loss(student, teacher, mask, temperature=t, scale_by_t2=False).item() == pytest.approx(tempered, rel=1e-5)


def test_fp32_zero_dim_output_from_half_inputs():
    student, teacher, mask = _random_case(seed=6)
    s16, t16 = student.bfloat16(), teacher.bfloat16()
    out = forward_kl(s16, t16, mask)
    assert out.dtype == torch.float32 and out.dim() == 0
    assert out.item() == pytest.approx(forward_kl(s16.float(), t16.float(), mask).item(), rel=1e-6)


# ---------------------------------------------------------------------------------------------------------- masking


@pytest.mark.parametrize("name", list(LOSSES))
def test_padding_garbage_changes_neither_loss_nor_gradients(name):
    loss = LOSSES[name]
    student, teacher, mask = _random_case(seed=7)
    reference = student.clone().requires_grad_(True)
    ref_value = loss(reference, teacher, mask)
    ref_value.backward()
    for fill in (1e4, float("inf"), float("nan")):
        s_bad, t_bad = student.clone(), teacher.clone()
        s_bad[~mask], t_bad[~mask] = -fill, fill
        s_bad.requires_grad_(True)
        value = loss(s_bad, t_bad, mask)
        value.backward()
        assert value.item() == pytest.approx(ref_value.item(), rel=1e-6)
        torch.testing.assert_close(s_bad.grad, reference.grad)
        assert torch.all(s_bad.grad[~mask] == 0)


def test_mask_dtypes_agree():
    student, teacher, mask = _random_case(seed=8)
    expected = forward_kl(student, teacher, mask).item()
    for m in (mask.long(), mask.float(), mask.to(torch.uint8)):
        assert forward_kl(student, teacher, m).item() == pytest.approx(expected, rel=1e-7)


@pytest.mark.parametrize("chunk_size", [None, 2])
def test_all_false_mask_gives_zero_with_graph(chunk_size):
    student, teacher, _ = _random_case(seed=9)
    student.requires_grad_(True)
    none = torch.zeros(student.shape[:2], dtype=torch.bool)
    targets = topk_targets(teacher, 3)
    for value in (
        forward_kl(student, teacher, none, chunk_size=chunk_size),
        reverse_kl(student, teacher, none, chunk_size=chunk_size),
        generalized_jsd(student, teacher, none, chunk_size=chunk_size),
        forward_kl_topk(student, *targets, none, chunk_size=chunk_size),
    ):
        assert value.item() == 0.0 and value.dim() == 0 and value.grad_fn is not None
        (grad,) = torch.autograd.grad(value, student)
        assert torch.all(grad == 0)


# --------------------------------------------------------------------------------------------------------- chunking


@pytest.mark.parametrize("name", [*LOSSES, "forward_kl_topk"])
def test_chunked_equals_unchunked_values_and_gradients(name):
    student, teacher, mask = _random_case(b=3, s=7, v=13, seed=10)
    n = int(mask.sum())
    assert n > 8
    if name == "forward_kl_topk":
        targets = topk_targets(teacher, 4, temperature=2.0)

        def loss(s, t, m, **kw):
            return forward_kl_topk(s, *targets, m, **kw)
    else:
        loss = LOSSES[name]
    leaf = student.clone().requires_grad_(True)
    ref = loss(leaf, teacher, mask, temperature=2.0)
    (ref_grad,) = torch.autograd.grad(ref, leaf)
    for chunk_size in (1, 2, 3, 5, n - 1, n, n + 10):
        leaf = student.clone().requires_grad_(True)
        value = loss(leaf, teacher, mask, temperature=2.0, chunk_size=chunk_size)
        (grad,) = torch.autograd.grad(value, leaf)
        assert value.item() == pytest.approx(ref.item(), rel=1e-6)
        torch.testing.assert_close(grad, ref_grad, rtol=1e-5, atol=1e-8)
        with torch.no_grad():
            assert loss(leaf, teacher, mask, temperature=2.0, chunk_size=chunk_size).item() == pytest.approx(
                ref.item(), rel=1e-6
            )


def test_chunked_gradient_also_reaches_teacher_logits_when_asked():
    student, teacher, mask = _random_case(seed=11)
    teacher.requires_grad_(True)
    (ref,) = torch.autograd.grad(reverse_kl(student, teacher, mask), teacher)
    (chunked,) = torch.autograd.grad(reverse_kl(student, teacher, mask, chunk_size=3), teacher)
    torch.testing.assert_close(chunked, ref)


# ------------------------------------------------------------------------------------------------ masked vocabulary
def _masked_vocab_case(chunk_size):
    """Logits over V = 11 whose entries 3, 7 and 10 are −inf in both models (a masked vocabulary), and the same
    logits over the 8 entries left: both give the same distributions."""
    student, teacher, mask = _random_case(seed=21)
    banned = torch.tensor([3, 7, 10])
    keep = torch.ones(11, dtype=torch.bool).index_fill(0, banned, False)
    student[..., banned], teacher[..., banned] = float("-inf"), float("-inf")
    return student, teacher, mask, keep, dict(temperature=1.5, chunk_size=chunk_size)


def _value_and_grads(loss, student, teacher, mask, kw):
    s, t = student.clone().requires_grad_(True), teacher.clone().requires_grad_(True)
    value = loss(s, t, mask, **kw)
    return (value, *torch.autograd.grad(value, (s, t)))


@pytest.mark.parametrize("chunk_size", [None, 4])
@pytest.mark.parametrize("beta", [0.0, 0.1, 0.5, 0.9, 1.0])
def test_jsd_on_a_masked_vocabulary_equals_the_sub_vocabulary_with_finite_gradients(beta, chunk_size):
    # logaddexp(−inf, −inf) in the mixture had a NaN backward for 0 < β < 1, through log_softmax to the whole row.
    student, teacher, mask, keep, kw = _masked_vocab_case(chunk_size)
    loss = lambda s, t, m, **k: generalized_jsd(s, t, m, beta=beta, **k)  # noqa: E731 (a one-line local function)
    value, grad_s, grad_t = _value_and_grads(loss, student, teacher, mask, kw)
    sub, sub_grad_s, sub_grad_t = _value_and_grads(loss, student[..., keep], teacher[..., keep], mask, kw)
    assert torch.isfinite(grad_s).all() and torch.isfinite(grad_t).all()
    assert sub.item() > 1e-3 and value.item() == pytest.approx(sub.item(), rel=1e-5)
    torch.testing.assert_close(grad_s[..., keep], sub_grad_s, rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(grad_t[..., keep], sub_grad_t, rtol=1e-4, atol=1e-7)
    assert not grad_s[..., ~keep].any() and not grad_t[..., ~keep].any()  # the masked entries get no gradient


@pytest.mark.parametrize("name", ["forward_kl", "reverse_kl"])
def test_kl_on_a_masked_vocabulary_equals_the_sub_vocabulary_with_finite_gradients(name):
    student, teacher, mask, keep, kw = _masked_vocab_case(None)
    value, grad_s, grad_t = _value_and_grads(LOSSES[name], student, teacher, mask, kw)
    sub, sub_grad_s, _ = _value_and_grads(LOSSES[name], student[..., keep], teacher[..., keep], mask, kw)
    assert torch.isfinite(grad_s).all() and torch.isfinite(grad_t).all()
    assert value.item() == pytest.approx(sub.item(), rel=1e-5)
    torch.testing.assert_close(grad_s[..., keep], sub_grad_s, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("k", [3, 8, 9, 11])
def test_topk_on_a_masked_vocabulary_equals_the_sub_vocabulary_with_finite_gradients(k):
    # k = 8 keeps every entry the mask leaves (k = 9: and one −inf): the student's tail was logsumexp over only −inf,
    # whose backward is NaN. The teacher's tail is −inf there (mass 0), as with k = V.
    student, teacher, mask, keep, kw = _masked_vocab_case(None)
    leaf = student.clone().requires_grad_(True)
    targets = topk_targets(teacher, k, temperature=1.5)
    value = forward_kl_topk(leaf, *targets, mask, **kw)
    (grad,) = torch.autograd.grad(value, leaf)
    sub_leaf = student[..., keep].clone().requires_grad_(True)
    sub = forward_kl_topk(sub_leaf, *topk_targets(teacher[..., keep], min(k, 8), temperature=1.5), mask, **kw)
    (sub_grad,) = torch.autograd.grad(sub, sub_leaf)
    assert torch.isfinite(grad).all()
    assert (targets[2] == float("-inf")).all() == (k >= 8)
    assert value.item() == pytest.approx(sub.item(), rel=1e-5)
    torch.testing.assert_close(grad[..., keep], sub_grad, rtol=1e-4, atol=1e-7)
    assert not grad[..., ~keep].any()


# ------------------------------------------------------------------------------------------------------------ top-k


def test_topk_targets_round_trip():
    _, teacher, _ = _random_case(seed=12)
    t = 1.5
    indices, logprobs, tail = topk_targets(teacher, 4, temperature=t)
    values, expected_idx = F.log_softmax(teacher / t, -1).topk(4, dim=-1)
    assert indices.dtype == torch.int64 and logprobs.dtype == torch.float32 and tail.dtype == torch.float32
    assert indices.shape == (3, 5, 4) and tail.shape == (3, 5)
    assert torch.equal(indices, expected_idx)
    torch.testing.assert_close(logprobs, values)
    torch.testing.assert_close(logprobs.exp().sum(-1) + tail.exp(), torch.ones(3, 5), atol=1e-5, rtol=0)
    kept64 = F.softmax(teacher.double() / t, -1).gather(-1, indices).sum(-1)
    torch.testing.assert_close(tail.double(), (1 - kept64).log(), rtol=1e-5, atol=1e-6)


def test_topk_tail_is_accurate_for_a_peaked_teacher():
    # Tail mass ≈ 49·e^-30 ≈ 4.6e-12: 1 − Σ kept rounds to 0 in fp32, the tail must not.
    teacher = torch.zeros(1, 1, 50)
    teacher[..., 7] = 30.0
    _, _, tail = topk_targets(teacher, 1)
    expected = math.log(49) - 30 - math.log1p(49 * math.exp(-30))
    assert tail.item() == pytest.approx(expected, rel=1e-5)


def test_topk_with_k_equal_vocab_is_forward_kl():
    student, teacher, mask = _random_case(seed=13)
    v = teacher.shape[-1]
    indices, logprobs, tail = topk_targets(teacher, v, temperature=2.0)
    assert torch.all(tail == float("-inf")) and not torch.isnan(logprobs).any()
    leaf = student.clone().requires_grad_(True)
    value = forward_kl_topk(leaf, indices, logprobs, tail, mask, temperature=2.0)
    (grad,) = torch.autograd.grad(value, leaf)
    leaf_ref = student.clone().requires_grad_(True)
    ref = forward_kl(leaf_ref, teacher, mask, temperature=2.0)
    (ref_grad,) = torch.autograd.grad(ref, leaf_ref)
    assert torch.isfinite(value) and torch.isfinite(grad).all()
    assert value.item() == pytest.approx(ref.item(), rel=1e-5)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-4, atol=1e-7)


def test_topk_gap_is_the_tail_conditional_kl():
    # Chain rule of KL: KL − KL_k = mean over tokens of p_t,tail · KL(p_t(·|tail) ‖ p_s(·|tail)) ≥ 0.
    student, teacher, mask = _random_case(seed=14, scale=1.0)
    k = 3
    indices, logprobs, tail = topk_targets(teacher, k)
    full = forward_kl(student, teacher, mask).item()
    approx = forward_kl_topk(student, indices, logprobs, tail, mask).item()
    out = torch.ones_like(teacher, dtype=torch.bool).scatter(-1, indices, False)[mask]
    p_t, p_s = F.softmax(teacher.double(), -1)[mask], F.softmax(student.double(), -1)[mask]
    gap = 0.0
    for row_t, row_s, row_out in zip(p_t, p_s, out):
        mass_t = row_t[row_out].sum()
        cond_t, cond_s = row_t[row_out] / mass_t, row_s[row_out] / row_s[row_out].sum()
        gap += (mass_t * (cond_t * (cond_t / cond_s).log()).sum()).item()
    gap /= int(mask.sum())
    assert gap > 1e-3
    assert full - approx == pytest.approx(gap, rel=1e-3)


def test_topk_is_close_to_full_kl_for_a_peaked_teacher():
    # k = 8 of V = 50, teacher mass concentrated on 8 tokens (tail mass ≈ 42·e^-8 / (Σ) < 0.02 per token).
    # Stated bound: 0 ≤ KL − KL_k ≤ 0.05 · KL; here also KL − KL_k ≤ max tail mass · max log(ratio) ≈ 0.02 · few.
    g = torch.Generator().manual_seed(15)
    teacher = torch.randn(2, 6, 50, generator=g)
    hot = torch.randperm(50, generator=g)[:8]
    teacher[..., hot] += 8.0 + 2.0 * torch.rand(2, 6, 8, generator=g)
    student = torch.randn(2, 6, 50, generator=g)
    mask = torch.ones(2, 6, dtype=torch.bool)
    mask[1, 4:] = False
    indices, logprobs, tail = topk_targets(teacher, 8)
    assert tail.exp().max().item() < 0.02
    full = forward_kl(student, teacher, mask).item()
    approx = forward_kl_topk(student, indices, logprobs, tail, mask).item()
    assert 0.0 <= full - approx <= 0.05 * full


# ----------------------------------------------------------------------------------------------------------- errors


def test_shape_mismatch_errors_name_both_shapes():
    student, teacher, mask = _random_case(b=2, s=3, v=5)
    wider = torch.randn(2, 3, 6)
    for loss in (forward_kl, reverse_kl, generalized_jsd):
        with pytest.raises(ValueError, match=r"\(2, 3, 5\) vs \(2, 3, 6\)"):
            loss(student, wider, mask)
        with pytest.raises(ValueError, match=r"mask of shape \(3, 2\).*\(2, 3, 5\)"):
            loss(student, teacher, mask.T)
    indices, logprobs, tail = topk_targets(teacher, 2)
    with pytest.raises(ValueError, match=r"\(2, 3, 5\).*indices \(2, 3, 2\), logprobs \(2, 3, 1\)"):
        forward_kl_topk(student, indices, logprobs[..., :1], tail, mask)
    with pytest.raises(ValueError, match=r"mask of shape \(2, 2\).*\(2, 3, 5\)"):
        forward_kl_topk(student, indices, logprobs, tail, mask[:, :2])


def test_bad_arguments_raise():
    student, teacher, mask = _random_case(b=2, s=3, v=5)
    with pytest.raises(ValueError, match="beta"):
        generalized_jsd(student, teacher, mask, beta=1.5)
    with pytest.raises(ValueError, match="temperature"):
        forward_kl(student, teacher, mask, temperature=0.0)
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="chunk_size"):
            reverse_kl(student, teacher, mask, chunk_size=bad)
    for k in (0, 6):
        with pytest.raises(ValueError, match="k must be"):
            topk_targets(teacher, k)
    indices, logprobs, tail = topk_targets(teacher, 2)
    with pytest.raises(ValueError, match="indices must be in"):
        forward_kl_topk(student, indices + 4, logprobs, tail, mask)
    with pytest.raises(ValueError, match="integer"):
        forward_kl_topk(student, indices.float(), logprobs, tail, mask)


def test_next_token_loss_is_the_mean_nll_of_response_tokens_by_hand():
    """NTP reads logits[t-1] for label t, only where the label is not -100: checked against a hand computation."""
    from distillkit.losses.token import next_token_loss

    logits = torch.tensor([[[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 3.0], [9.0, 9.0, 9.0]]])  # (1, 4, 3)
    labels = torch.tensor([[-100, -100, 1, 2]])  # prompt of 2 tokens, response (1, 2)
    expected = -(math.log(math.exp(1.0) / (math.exp(1.0) + 2)) + math.log(math.exp(3.0) / (math.exp(3.0) + 2))) / 2
    assert next_token_loss(logits, labels).item() == pytest.approx(expected, rel=1e-6)
    garbage = logits.clone()
    garbage[0, 0] = float("nan")  # the position before the first response token's predictor: never read
    garbage[0, 3] = float("inf")  # the last position predicts nothing
    assert next_token_loss(garbage, labels).item() == pytest.approx(expected, rel=1e-6)


def test_next_token_loss_equals_cross_entropy_and_chunks_agree():
    from distillkit.losses.token import next_token_loss

    torch.manual_seed(0)
    logits = torch.randn(3, 7, 11, requires_grad=True)
    labels = torch.randint(0, 11, (3, 7))
    labels[:, :3] = -100
    labels[1, 5:] = -100
    reference = torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, 11), labels[:, 1:].reshape(-1), ignore_index=-100
    )
    value = next_token_loss(logits, labels)
    assert value.item() == pytest.approx(reference.item(), rel=1e-6)
    (grad,) = torch.autograd.grad(value, logits)
    (chunked_grad,) = torch.autograd.grad(next_token_loss(logits, labels, chunk_size=2), logits)
    assert torch.allclose(grad, chunked_grad, atol=1e-7)
    none = next_token_loss(logits, torch.full((3, 7), -100))
    assert none.item() == 0.0 and torch.autograd.grad(none, logits)[0].abs().sum() == 0
