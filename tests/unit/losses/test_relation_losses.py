"""Relation losses: RKD (Park et al. 2019) by hand on a triangle, MiniLM (Wang et al. 2020) against slow loops."""

import math

import pytest
import torch

from distillkit.losses.relations import minilm_attention_kl, minilm_value_kl, relation_logits, rkd_angle, rkd_distance

# Teacher: the right isosceles triangle (0,0), (1,0), (0,1). Student: (0,0), (2,0), (0,1).
TRIANGLE_T = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
TRIANGLE_S = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 1.0]])


def _huber(x):
    return 0.5 * x * x if abs(x) < 1 else abs(x) - 0.5


def _rotation(dim, seed):
    q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=torch.Generator().manual_seed(seed)))
    return q


# ---------------------------------------------------------------------------------------------- RKD


def test_rkd_distance_hand_computed_on_a_triangle():
    # Teacher distances d01 = 1, d02 = 1, d12 = √2; μ_t = (2 + √2)/3 = 1.13807
    #   ψ_t = (0.87868, 0.87868, 1.24264)
    # Student distances d01 = 2, d02 = 1, d12 = √5; μ_s = (3 + √5)/3 = 1.74536
    #   ψ_s = (1.14590, 0.57295, 1.28115)
    # ψ_s − ψ_t = (0.26722, −0.30573, 0.03851), all |x| < 1 so Huber = x²/2:
    #   (0.035703 + 0.046736 + 0.000742) / 3 = 0.027727 (the 6 ordered pairs repeat the 3 unordered ones)
    mu_t, mu_s = (2 + math.sqrt(2)) / 3, (3 + math.sqrt(5)) / 3
    psi_t = [1 / mu_t, 1 / mu_t, math.sqrt(2) / mu_t]
    psi_s = [2 / mu_s, 1 / mu_s, math.sqrt(5) / mu_s]
    expected = sum(_huber(s - t) for s, t in zip(psi_s, psi_t)) / 3
    assert expected == pytest.approx(0.0277267, abs=1e-6)
    assert rkd_distance(TRIANGLE_S, TRIANGLE_T).item() == pytest.approx(expected, rel=1e-5)


def test_rkd_distance_huber_is_linear_beyond_one():
    # Teacher (0,0), (0,0), (1,0): d01 = 0, d02 = 1, d12 = 1; μ = 2/3; ψ_t = (0, 1.5, 1.5).
    # Student (0,0), (1,0), (0,0): d01 = 1, d02 = 0, d12 = 1; μ = 2/3; ψ_s = (1.5, 0, 1.5).
    # Gaps (1.5, −1.5, 0): |x| ≥ 1, so Huber is |x| − 1/2 = 1 (not x²/2 = 1.125): (1 + 1 + 0)/3 = 2/3.
    # (The zero distances are sqrt(1e-12) = 1e-6 after the clamp, far below the tolerance.)
    teacher = torch.tensor([[0.0, 0.0], [0.0, 0.0], [1.0, 0.0]])
    student = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 0.0]])
    assert rkd_distance(student, teacher).item() == pytest.approx(2 / 3, rel=1e-5)


def test_rkd_angle_hand_computed_on_a_triangle():
    # Angles A[j, i, k] = cos∠(x_i, x_j, x_k), vertex j; 27 entries in all:
    #   i = j or k = j (15 entries): 0 on both sides (F.normalize of a zero vector)
    #   i = k ≠ j (6 entries): cos 0 = 1 on both sides
    #   i ≠ k, both ≠ j (6 entries, 2 per vertex):
    #     teacher: vertex (0,0) 90° → 0; vertices (1,0) and (0,1) 45° → √2/2
    #     student: vertex (0,0) 90° → 0;
    #              vertex (2,0): ⟨(−2,0), (−2,1)⟩/(2·√5) = 2/√5;  vertex (0,1): ⟨(0,−1), (2,−1)⟩/(1·√5) = 1/√5
    # gaps 2/√5 − √2/2 = 0.187320 (×2), 1/√5 − √2/2 = −0.259893 (×2), all Huber x²/2:
    #   (0.187320² + 0.259893²) / 27 = 0.0038012
    a = 2 / math.sqrt(5) - math.sqrt(2) / 2
    b = 1 / math.sqrt(5) - math.sqrt(2) / 2
    expected = (2 * _huber(a) + 2 * _huber(b)) / 27
    assert expected == pytest.approx(0.0038012, abs=1e-7)
    assert rkd_angle(TRIANGLE_S, TRIANGLE_T).item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("loss", [rkd_distance, rkd_angle])
def test_rkd_is_zero_when_student_equals_teacher_and_positive_otherwise(loss):
    torch.manual_seed(0)
    t = torch.randn(8, 5)
    assert loss(t.clone(), t).item() == pytest.approx(0.0, abs=1e-7)
    assert loss(torch.randn(8, 5), t).item() > 1e-4


def test_rkd_distance_is_invariant_to_scaling_rotating_and_translating_the_student():
    torch.manual_seed(1)
    s, t = torch.randn(10, 6), torch.randn(10, 4)
    base = rkd_distance(s, t).item()
    assert base > 1e-3
    moved = 3.7 * s @ _rotation(6, seed=1) + torch.randn(6) * 2
    assert rkd_distance(moved, t).item() == pytest.approx(base, rel=1e-4)
    assert rkd_distance(0.01 * s, t).item() == pytest.approx(base, rel=1e-4)
    # A large common offset (features far from the origin) must not cost precision in fp32: the naive
    # ‖a‖² + ‖b‖² − 2⟨a, b⟩ loses ~1e-7·‖a‖² ≈ 0.06 here on squared distances of order 10.
    assert rkd_distance(s + 100.0, t + 100.0).item() == pytest.approx(base, rel=1e-4)


def test_rkd_angle_is_invariant_to_scaling_rotating_and_translating_the_student():
    torch.manual_seed(2)
    s, t = torch.randn(7, 6), torch.randn(7, 3)
    base = rkd_angle(s, t).item()
    assert base > 1e-3
    assert rkd_angle(25.0 * s, t).item() == pytest.approx(base, rel=1e-4)
    assert rkd_angle(0.05 * s @ _rotation(6, seed=2) - 1.5, t).item() == pytest.approx(base, rel=1e-4)


@pytest.mark.parametrize("loss", [rkd_distance, rkd_angle])
def test_rkd_widths_may_differ_but_batch_sizes_must_match(loss):
    # A teacher 30 dimensions wider only by zero columns has the same distances and angles as the narrow one,
    # so the loss is the narrow one's (hand-computed on the triangle above for the distance loss).
    wide_t = torch.cat([TRIANGLE_T, torch.zeros(3, 30)], dim=1)
    assert loss(TRIANGLE_S, wide_t).item() == pytest.approx(loss(TRIANGLE_S, TRIANGLE_T).item(), rel=1e-6)
    if loss is rkd_distance:
        assert loss(TRIANGLE_S, wide_t).item() == pytest.approx(0.0277267, abs=1e-6)
    with pytest.raises(ValueError, match="batch sizes differ: 6 vs 5"):
        loss(torch.randn(6, 3), torch.randn(5, 3))
    with pytest.raises(ValueError, match="batch, width"):
        loss(torch.randn(6, 3, 2), torch.randn(6, 3))


@pytest.mark.parametrize("loss", [rkd_distance, rkd_angle])
def test_rkd_identical_rows_give_finite_loss_and_gradients(loss):
    torch.manual_seed(4)
    s = torch.randn(5, 4)
    s[1] = s[0]  # two identical student embeddings
    t = torch.randn(5, 3)
    t[3] = t[2]  # and two identical teacher embeddings elsewhere
    for student, teacher in [(s, t), (torch.ones(4, 4), torch.ones(4, 3)), (s, t[:1].expand(5, 3))]:
        student = student.clone().requires_grad_()
        teacher = teacher.clone().requires_grad_()
        value = loss(student, teacher)
        value.backward()
        assert torch.isfinite(value)
        assert torch.isfinite(student.grad).all() and torch.isfinite(teacher.grad).all()
    # The gradient with duplicates is not merely finite but useful: it still moves the student.
    student = s.clone().requires_grad_()
    loss(student, t).backward()
    assert student.grad.abs().sum() > 0


@pytest.mark.parametrize("loss", [rkd_distance, rkd_angle])
def test_rkd_low_precision_is_reduced_in_fp32(loss):
    torch.manual_seed(5)
    s, t = torch.randn(6, 8).bfloat16(), torch.randn(6, 4).bfloat16()
    value = loss(s, t)
    assert value.dtype == torch.float32
    assert value.item() == pytest.approx(loss(s.float(), t.float()).item(), rel=1e-6)


def test_rkd_distance_of_a_single_example_is_zero_with_a_graph():
    s = torch.randn(1, 4, requires_grad=True)
    value = rkd_distance(s, torch.randn(1, 3))
    value.backward()
    assert value.item() == 0.0 and torch.equal(s.grad, torch.zeros(1, 4))


# ------------------------------------------------------------------------------------------- MiniLM


def _reference_relation_kl(s_x, s_y, t_x, t_y, heads, mask):
    """KL(softmax(R_t) ‖ softmax(R_s)) averaged over heads and valid query rows, one number at a time."""
    s_x, s_y, t_x, t_y = (a.double().tolist() for a in (s_x, s_y, t_x, t_y))
    mask = mask.tolist()

    def log_softmax_row(x, y, b, h, q, valid_keys):
        d = len(x[b][q]) // heads
        logits = [sum(x[b][q][h * d + c] * y[b][k][h * d + c] for c in range(d)) / math.sqrt(d) for k in valid_keys]
        top = max(logits)
        exps = [math.exp(v - top) for v in logits]
        total = sum(exps)
        return [math.log(e / total) for e in exps]

    kls = []
    for b in range(len(mask)):
        valid = [i for i, m in enumerate(mask[b]) if m]
        for h in range(heads):
            for q in valid:
                log_p = log_softmax_row(t_x, t_y, b, h, q, valid)
                log_q = log_softmax_row(s_x, s_y, b, h, q, valid)
                kls.append(sum(math.exp(lp) * (lp - lq) for lp, lq in zip(log_p, log_q)))
    return sum(kls) / len(kls)


def _minilm_inputs(seed, hidden_s=4, hidden_t=8, batch=2, seq=5):
    g = torch.Generator().manual_seed(seed)
    s = [torch.randn(batch, seq, hidden_s, generator=g) * 2 for _ in range(3)]
    t = [torch.randn(batch, seq, hidden_t, generator=g) * 2 for _ in range(3)]
    mask = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 0, 0]])[:batch, :seq]
    return s, t, mask


@pytest.mark.parametrize("heads", [1, 2, 4])
def test_minilm_attention_kl_matches_a_direct_loop(heads):
    (s_q, s_k, _), (t_q, t_k, _), mask = _minilm_inputs(seed=10)
    expected = _reference_relation_kl(s_q, s_k, t_q, t_k, heads, mask)
    assert expected > 1e-3
    got = minilm_attention_kl(s_q, s_k, t_q, t_k, heads, mask)
    assert got.item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("heads", [1, 2])
def test_minilm_value_kl_matches_a_direct_loop(heads):
    (_, _, s_v), (_, _, t_v), mask = _minilm_inputs(seed=11)
    expected = _reference_relation_kl(s_v, s_v, t_v, t_v, heads, mask)
    assert expected > 1e-3
    assert minilm_value_kl(s_v, t_v, heads, mask).item() == pytest.approx(expected, rel=1e-5)


def test_minilm_without_a_mask_uses_every_position():
    (s_q, s_k, s_v), (t_q, t_k, t_v), _ = _minilm_inputs(seed=12)
    ones = torch.ones(2, 5, dtype=torch.long)
    assert minilm_attention_kl(s_q, s_k, t_q, t_k, 2).item() == pytest.approx(
        _reference_relation_kl(s_q, s_k, t_q, t_k, 2, ones), rel=1e-5
    )
    assert minilm_value_kl(s_v, t_v, 2).item() == pytest.approx(
        _reference_relation_kl(s_v, s_v, t_v, t_v, 2, ones), rel=1e-5
    )


def test_minilm_is_zero_for_identical_inputs():
    (s_q, s_k, s_v), _, mask = _minilm_inputs(seed=13, hidden_s=8)
    assert minilm_attention_kl(s_q, s_k, s_q.clone(), s_k.clone(), 2, mask).item() == pytest.approx(0.0, abs=1e-7)
    assert minilm_value_kl(s_v, s_v.clone(), 2, mask).item() == pytest.approx(0.0, abs=1e-7)


def test_minilm_student_narrower_than_teacher():
    # 128-wide teacher, 64-wide student, 4 heads of 32 and 16: the S×S relations still compare.
    (s_q, s_k, s_v), (t_q, t_k, t_v), mask = _minilm_inputs(seed=14, hidden_s=64, hidden_t=128)
    at, vr = minilm_attention_kl(s_q, s_k, t_q, t_k, 4, mask), minilm_value_kl(s_v, t_v, 4, mask)
    assert torch.isfinite(at) and at.item() > 1e-4 and torch.isfinite(vr) and vr.item() > 1e-4
    assert at.item() == pytest.approx(_reference_relation_kl(s_q, s_k, t_q, t_k, 4, mask), rel=1e-4)
    assert vr.item() == pytest.approx(_reference_relation_kl(s_v, s_v, t_v, t_v, 4, mask), rel=1e-4)


def test_minilm_padding_values_do_not_change_the_result():
    (s_q, s_k, s_v), (t_q, t_k, t_v), mask = _minilm_inputs(seed=15)
    before_at = minilm_attention_kl(s_q, s_k, t_q, t_k, 2, mask).item()
    before_vr = minilm_value_kl(s_v, t_v, 2, mask).item()
    pad = ~mask.bool()
    noisy = [
        a.masked_fill(pad.unsqueeze(-1), 0.0) + pad.unsqueeze(-1) * torch.randn_like(a) * 50
        for a in (s_q, s_k, s_v, t_q, t_k, t_v)
    ]
    assert not torch.equal(noisy[0], s_q)  # the padding really changed
    assert minilm_attention_kl(*noisy[0:2], *noisy[3:5], 2, mask).item() == pytest.approx(before_at, rel=1e-6)
    assert minilm_value_kl(noisy[2], noisy[5], 2, mask).item() == pytest.approx(before_vr, rel=1e-6)
    # ...whereas without the mask the same noise does change it.
    assert minilm_attention_kl(*noisy[0:2], *noisy[3:5], 2).item() != pytest.approx(
        minilm_attention_kl(s_q, s_k, t_q, t_k, 2).item(), rel=1e-3
    )


def test_relation_logits_shape_scale_and_masked_keys():
    x = torch.arange(24.0).reshape(1, 3, 8) / 10
    y = torch.ones(1, 3, 8)
    r = relation_logits(x, y, heads=2, mask=torch.tensor([[1, 1, 0]]))
    assert r.shape == (1, 2, 3, 3) and r.dtype == torch.float32
    # Head 1, query 0 uses x[0, 0, 4:8] = (0.4, 0.5, 0.6, 0.7): sum 2.2, over √4 = 1.1.
    assert r[0, 1, 0, 0].item() == pytest.approx(1.1, rel=1e-6)
    assert (r[..., 2] == torch.finfo(torch.float32).min).all()
    assert torch.softmax(r, dim=-1)[..., 2].max().item() == 0.0


def test_minilm_heads_must_divide_the_hidden_size():
    (s_q, s_k, s_v), (t_q, t_k, t_v), mask = _minilm_inputs(seed=16, hidden_s=10, hidden_t=12)
    with pytest.raises(ValueError, match="hidden size 10 is not divisible into 3 relation heads"):
        minilm_attention_kl(s_q, s_k, t_q, t_k, 3, mask)
    with pytest.raises(ValueError, match="hidden size 12 is not divisible into 5 relation heads"):
        minilm_value_kl(s_v[..., :5], t_v, 5, mask)
    with pytest.raises(ValueError, match="same batch and sequence"):
        minilm_value_kl(s_v, t_v[:, :4], 2, mask[:, :4])
    with pytest.raises(ValueError, match="mask must be"):
        minilm_value_kl(s_v, t_v, 2, mask[:, :4])


def test_minilm_bf16_input_gives_a_float32_result():
    (s_q, s_k, s_v), (t_q, t_k, t_v), mask = _minilm_inputs(seed=17)
    half = [a.bfloat16() for a in (s_q, s_k, s_v, t_q, t_k, t_v)]
    at = minilm_attention_kl(*half[0:2], *half[3:5], 2, mask)
    vr = minilm_value_kl(half[2], half[5], 2, mask)
    assert at.dtype == torch.float32 and vr.dtype == torch.float32
    upcast = [a.float() for a in half]
    assert at.item() == pytest.approx(minilm_attention_kl(*upcast[0:2], *upcast[3:5], 2, mask).item(), rel=1e-6)
    assert vr.item() == pytest.approx(minilm_value_kl(upcast[2], upcast[5], 2, mask).item(), rel=1e-6)


def test_minilm_gradients_reach_the_student_inputs_only_at_valid_positions():
    (s_q, s_k, s_v), (t_q, t_k, t_v), mask = _minilm_inputs(seed=18)
    s_q, s_k, s_v = (a.clone().requires_grad_() for a in (s_q, s_k, s_v))
    (minilm_attention_kl(s_q, s_k, t_q, t_k, 2, mask) + minilm_value_kl(s_v, t_v, 2, mask)).backward()
    pad = ~mask.bool()
    for a in (s_q, s_k, s_v):
        assert a.grad is not None and torch.isfinite(a.grad).all()
        assert a.grad[~pad].abs().sum() > 0
        assert a.grad[pad].abs().sum() == 0


def test_minilm_fully_padded_rows_and_batches_are_safe():
    (s_q, s_k, s_v), (t_q, t_k, t_v), _ = _minilm_inputs(seed=19)
    one_empty = torch.tensor([[1, 1, 0, 0, 0], [0, 0, 0, 0, 0]])
    value = minilm_attention_kl(s_q, s_k, t_q, t_k, 2, one_empty)
    assert value.item() == pytest.approx(
        minilm_attention_kl(s_q[:1, :2], s_k[:1, :2], t_q[:1, :2], t_k[:1, :2], 2).item(), rel=1e-6
    )
    s_v = s_v.clone().requires_grad_()
    empty = minilm_value_kl(s_v, t_v, 2, torch.zeros(2, 5))
    empty.backward()
    assert empty.item() == 0.0 and torch.equal(s_v.grad, torch.zeros_like(s_v))
