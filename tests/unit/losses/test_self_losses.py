"""Self-distillation losses and helpers against hand-computed values and the properties they rely on."""

import math

import pytest
import torch

from distillkit.losses import IGNORE_INDEX
from distillkit.losses.logits import kl_per_example, soft_target_kl
from distillkit.losses.self_distill import (
    batch_center,
    centered_kl,
    confident_unlabeled,
    cosine_momentum,
    ema_update_,
    mean_probability_logits,
    ps_kd_alpha,
    ps_kd_loss,
    ps_kd_targets,
    pseudo_label_loss,
    reverse_soft_kl,
    update_center,
)


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def kl2(p: list[float], q: list[float]) -> float:
    """KL(p ‖ q) by hand for explicit probability lists."""
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q))


# --------------------------------------------------------------------------------------------------------
# reverse_soft_kl
# --------------------------------------------------------------------------------------------------------

# Student uniform over 3 classes (q = 1/3), teacher logits (log 2, 0, 0) → p = (1/2, 1/4, 1/4).
Q3 = [1 / 3, 1 / 3, 1 / 3]
P3 = [0.5, 0.25, 0.25]


@pytest.mark.parametrize("temperature", [1.0, 2.0, 0.5])
def test_reverse_kl_hand_computed(temperature):
    # The logits are scaled by T, so softmax(z/T) is the same q and p at every T; the loss is T²·KL(q ‖ p).
    z_s = torch.zeros(1, 3) * temperature
    z_t = torch.tensor([[math.log(2.0), 0.0, 0.0]]) * temperature
    expected = temperature**2 * kl2(Q3, P3)  # = T²·(log(1/3) − (log(1/2) + 2 log(1/4))/3) ≈ 0.0566·T²
    assert reverse_soft_kl(z_s, z_t, temperature).item() == pytest.approx(expected, rel=1e-5)
    # ...which is not the forward KL(p ‖ q) ≈ 0.0589·T².
    forward = soft_target_kl(z_s, z_t, temperature).item()
    assert forward == pytest.approx(temperature**2 * kl2(P3, Q3), rel=1e-5)
    assert abs(forward - expected) > 1e-3 * temperature**2


def test_reverse_kl_properties():
    torch.manual_seed(0)
    z_s, z_t = torch.randn(6, 5) * 3, torch.randn(6, 5) * 3
    assert reverse_soft_kl(z_s, z_s.clone(), 2.0).item() == pytest.approx(0.0, abs=1e-6)
    assert reverse_soft_kl(z_s, z_t, 2.0).item() > 0
    assert reverse_soft_kl(z_s, z_t, 2.0).item() == pytest.approx(soft_target_kl(z_t, z_s, 2.0).item(), rel=1e-6)
    assert reverse_soft_kl(z_s, z_t, 2.0).item() != pytest.approx(soft_target_kl(z_s, z_t, 2.0).item(), rel=1e-3)


def test_reverse_kl_gradient_flows_through_both_student_terms():
    # d/dz_j KL(q ‖ p) = q_j·(log q_j − log p_j − KL): the q_j·(...) weight comes from differentiating q
    # itself. Detaching q (keeping only log q) would give q_j − q_j = 0 at the uniform student instead.
    z_s = torch.zeros(1, 3, requires_grad=True)
    z_t = torch.tensor([[math.log(2.0), 0.0, 0.0]])
    reverse_soft_kl(z_s, z_t, 1.0).backward()
    kl = kl2(Q3, P3)
    expected = [q * (math.log(q) - math.log(p) - kl) for q, p in zip(Q3, P3)]
    assert z_s.grad[0].tolist() == pytest.approx(expected, abs=1e-6)
    assert any(abs(g) > 1e-3 for g in expected)


def test_reverse_kl_errors_like_soft_target_kl():
    with pytest.raises(ValueError, match=r"differ in shape: \(2, 3\) vs \(2, 4\)"):
        reverse_soft_kl(torch.zeros(2, 3), torch.zeros(2, 4), 1.0)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        reverse_soft_kl(torch.zeros(2, 3), torch.zeros(2, 3), 0.0)


# --------------------------------------------------------------------------------------------------------
# centered_kl / batch_center / update_center
# --------------------------------------------------------------------------------------------------------


def test_centered_kl_hand_computed():
    # Teacher (1, 3) − center (1, 1) = (0, 2), / T_t = 0.5 → (0, 4): p = (σ(−4), σ(4)).
    # Student (2, 0) / T_s = 2 → (1, 0): q = (σ(1), σ(−1)). No T² factor.
    p = [sigmoid(-4), sigmoid(4)]
    q = [sigmoid(1), sigmoid(-1)]
    loss = centered_kl(torch.tensor([[2.0, 0.0]]), torch.tensor([[1.0, 3.0]]), torch.tensor([1.0, 1.0]), 0.5, 2.0)
    assert loss.item() == pytest.approx(kl2(p, q), rel=1e-5)


def test_centered_kl_without_center_at_t1_is_mean_kl_per_example():
    torch.manual_seed(1)
    z_s, z_t = torch.randn(7, 4) * 2, torch.randn(7, 4) * 2
    expected = kl_per_example(z_s, z_t).mean().item()
    assert centered_kl(z_s, z_t, None, 1.0, 1.0).item() == pytest.approx(expected, rel=1e-6)
    assert centered_kl(z_s, z_t, torch.zeros(4), 1.0, 1.0).item() == pytest.approx(expected, rel=1e-6)


def test_centered_kl_constant_center_changes_nothing_and_others_do():
    torch.manual_seed(2)
    z_s, z_t = torch.randn(5, 4), torch.randn(5, 4)
    base = centered_kl(z_s, z_t, None, 0.1, 0.5).item()
    assert centered_kl(z_s, z_t, torch.full((4,), 7.5), 0.1, 0.5).item() == pytest.approx(base, rel=1e-5)
    assert centered_kl(z_s, z_t, torch.tensor([0.0, 1.0, 0.0, -1.0]), 0.1, 0.5).item() != pytest.approx(base, rel=1e-3)


def test_centered_kl_zero_when_distributions_agree():
    # (z_t − 0)/0.5 = (2, 4, 6) = z_s/2.
    z_t, z_s = torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([[4.0, 8.0, 12.0]])
    assert centered_kl(z_s, z_t, None, 0.5, 2.0).item() == pytest.approx(0.0, abs=1e-6)


def test_centered_kl_gradient_student_only_and_equals_dino_cross_entropy_gradient():
    torch.manual_seed(3)
    z_s = torch.randn(4, 5, requires_grad=True)
    z_t = torch.randn(4, 5, requires_grad=True)
    center = torch.randn(5, requires_grad=True)
    centered_kl(z_s, z_t, center, 0.04, 0.1).backward()
    assert z_t.grad is None and center.grad is None  # stop-gradient on the teacher side
    assert z_s.grad is not None and z_s.grad.abs().sum() > 0
    # DINO's H(p_t, p_s) = −Σ p_t log p_s has the same student gradient (KL = H − H(p_t), constant in z_s).
    z_s2 = z_s.detach().clone().requires_grad_(True)
    p_t = torch.softmax((z_t.detach() - center.detach()) / 0.04, dim=-1)
    (-(p_t * torch.log_softmax(z_s2 / 0.1, dim=-1)).sum(-1).mean()).backward()
    torch.testing.assert_close(z_s.grad, z_s2.grad, rtol=1e-4, atol=1e-6)


def test_centered_kl_errors():
    with pytest.raises(ValueError, match="differ in shape"):
        centered_kl(torch.zeros(2, 3), torch.zeros(2, 4), None, 1.0, 1.0)
    with pytest.raises(ValueError, match="center must have shape"):
        centered_kl(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(4), 1.0, 1.0)
    with pytest.raises(ValueError, match="teacher_temperature must be > 0"):
        centered_kl(torch.zeros(2, 3), torch.zeros(2, 3), None, 0.0, 1.0)
    with pytest.raises(ValueError, match="student_temperature must be > 0"):
        centered_kl(torch.zeros(2, 3), torch.zeros(2, 3), None, 1.0, -1.0)


def test_batch_center_and_update_center_hand_computed():
    center = torch.tensor([1.0, 2.0])
    z_t = torch.tensor([[3.0, 0.0], [1.0, 4.0]])  # batch mean (2, 2)
    assert batch_center(z_t).tolist() == pytest.approx([2.0, 2.0])
    # 0.9·(1, 2) + 0.1·(2, 2) = (1.1, 2.0)
    assert update_center(center, z_t, 0.9).tolist() == pytest.approx([1.1, 2.0])
    assert update_center(center, z_t, 1.0).tolist() == pytest.approx([1.0, 2.0])
    assert update_center(center, z_t, 0.0).tolist() == pytest.approx([2.0, 2.0])
    # A precomputed (e.g. all-reduced) batch mean (10, 0) wins: 0.9·(1, 2) + 0.1·(10, 0) = (1.9, 1.8)
    mean = torch.tensor([10.0, 0.0])
    assert update_center(center, z_t, 0.9, batch_mean=mean).tolist() == pytest.approx([1.9, 1.8])
    assert update_center(center, None, 0.9, batch_mean=mean).tolist() == pytest.approx([1.9, 1.8])
    assert center.tolist() == [1.0, 2.0]  # a new tensor; the old center is untouched


def test_batch_center_over_sequence_positions_and_update_center_errors():
    z_t = torch.tensor([[[1.0, 0.0], [3.0, 2.0]], [[5.0, 4.0], [7.0, 6.0]]])  # (B=2, S=2, C=2)
    assert batch_center(z_t).tolist() == pytest.approx([4.0, 3.0])
    with pytest.raises(ValueError, match="momentum"):
        update_center(torch.zeros(2), z_t, 1.5)
    with pytest.raises(ValueError, match="shape"):
        update_center(torch.zeros(3), z_t, 0.9)
    with pytest.raises(ValueError, match="teacher_logits or batch_mean"):
        update_center(torch.zeros(2), None, 0.9)


# --------------------------------------------------------------------------------------------------------
# confident_unlabeled / pseudo_label_loss
# --------------------------------------------------------------------------------------------------------

# Row 0: unlabeled, teacher p = (0.9, 0.1) → kept.      Row 1: unlabeled, teacher p = (0.5, 0.5) → too unsure.
# Row 2: labeled (teacher confident, but it has a label). Row 3: unlabeled, teacher p = (0.2, 0.8) → kept.
TEACHER = [[math.log(9.0), 0.0], [0.0, 0.0], [math.log(9.0), 0.0], [0.0, math.log(4.0)]]
STUDENT = [[0.0, 0.0], [3.0, -1.0], [-2.0, 2.0], [1.0, 0.0]]
LABELS = [-100, -100, 1, -100]
THRESHOLD = 0.75


def _pl(hard, temperature=1.0, student=STUDENT, teacher=TEACHER, labels=LABELS, threshold=THRESHOLD):
    return pseudo_label_loss(
        torch.tensor(student), torch.tensor(teacher), torch.tensor(labels), threshold, hard, temperature
    )


def test_confident_unlabeled_hand_computed():
    keep = confident_unlabeled(torch.tensor(TEACHER), torch.tensor(LABELS), THRESHOLD)
    assert keep.dtype == torch.bool and keep.tolist() == [True, False, False, True]


def test_pseudo_label_hard_hand_computed():
    # Row 0: pseudo-label 0, q = (1/2, 1/2) → −log(1/2) = log 2.
    # Row 3: pseudo-label 1, q_1 = σ(−1) → −log σ(−1) = log(1 + e).
    expected = (math.log(2.0) + math.log(1.0 + math.e)) / 2
    assert _pl(hard=True).item() == pytest.approx(expected, rel=1e-6)


def test_pseudo_label_soft_hand_computed_t1():
    row0 = kl2([0.9, 0.1], [0.5, 0.5])
    row3 = kl2([0.2, 0.8], [sigmoid(1.0), sigmoid(-1.0)])
    assert _pl(hard=False).item() == pytest.approx((row0 + row3) / 2, rel=1e-5)


def test_pseudo_label_soft_hand_computed_t2_threshold_at_t1():
    # At T = 2: teacher row 0 (log 3, 0) → (3/4, 1/4), row 3 (0, log 2) → (1/3, 2/3); student row 0 → (1/2, 1/2),
    # row 3 (1/2, 0) → (σ(1/2), σ(−1/2)). Row 3's T = 2 max probability 2/3 is below 0.75, but the
    # confidence filter uses T = 1 (0.8), so it is still kept. The loss is T² = 4 times the mean KL.
    row0 = kl2([0.75, 0.25], [0.5, 0.5])
    row3 = kl2([1 / 3, 2 / 3], [sigmoid(0.5), sigmoid(-0.5)])
    assert _pl(hard=False, temperature=2.0).item() == pytest.approx(4.0 * (row0 + row3) / 2, rel=1e-5)


@pytest.mark.parametrize("hard", [True, False])
def test_pseudo_label_ignores_labeled_and_unsure_rows(hard):
    base = _pl(hard).item()
    student = [STUDENT[0], [-9.0, 9.0], [9.0, -9.0], STUDENT[3]]
    teacher = [TEACHER[0], [0.3, 0.0], [-5.0, 5.0], TEACHER[3]]  # row 1 still unsure (max p ≈ 0.57)
    labels = [-100, -100, 0, -100]
    assert _pl(hard, student=student, teacher=teacher, labels=labels).item() == pytest.approx(base, rel=1e-6)
    # ...while changing a kept row does change it.
    assert _pl(hard, student=[[2.0, -1.0]] + STUDENT[1:]).item() != pytest.approx(base, rel=1e-3)


@pytest.mark.parametrize("hard", [True, False])
def test_pseudo_label_gradient_only_on_kept_student_rows(hard):
    student = torch.tensor(STUDENT, requires_grad=True)
    teacher = torch.tensor(TEACHER, requires_grad=True)
    pseudo_label_loss(student, teacher, torch.tensor(LABELS), THRESHOLD, hard).backward()
    assert student.grad[[1, 2]].abs().sum() == 0
    assert (student.grad[[0, 3]].abs().sum(-1) > 0).all()
    if hard:
        assert teacher.grad is None  # the argmax pseudo-label carries no gradient


@pytest.mark.parametrize("hard", [True, False])
@pytest.mark.parametrize("labels,threshold", [([0, 1, 1, 0], THRESHOLD), (LABELS, 1.01)])
def test_pseudo_label_nothing_kept_is_zero_with_graph(hard, labels, threshold):
    student = torch.tensor(STUDENT, requires_grad=True)
    loss = pseudo_label_loss(student, torch.tensor(TEACHER), torch.tensor(labels), threshold, hard)
    assert loss.item() == 0.0 and loss.requires_grad and loss.dtype == torch.float32
    loss.backward()
    assert student.grad is not None and student.grad.abs().sum() == 0


def test_pseudo_label_errors():
    with pytest.raises(ValueError, match="differ in shape"):
        pseudo_label_loss(torch.zeros(2, 3), torch.zeros(2, 4), torch.full((2,), -100), 0.5, True)
    with pytest.raises(ValueError, match="labels have shape"):
        pseudo_label_loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.full((3,), -100), 0.5, True)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        pseudo_label_loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.full((2,), -100), 0.5, False, 0.0)


# --------------------------------------------------------------------------------------------------------
# mean_probability_logits
# --------------------------------------------------------------------------------------------------------


def test_mean_probability_logits_identical_and_single_members():
    torch.manual_seed(4)
    z = torch.randn(3, 5) * 4
    torch.testing.assert_close(mean_probability_logits([z]), torch.log_softmax(z, dim=-1))
    torch.testing.assert_close(mean_probability_logits([z, z.clone(), z.clone()]), torch.log_softmax(z, dim=-1))


def test_mean_probability_logits_two_members_hand_computed():
    # softmax(0, 0) = (1/2, 1/2), softmax(log 3, 0) = (3/4, 1/4) → mean (5/8, 3/8).
    out = mean_probability_logits([torch.tensor([[0.0, 0.0]]), torch.tensor([[math.log(3.0), 0.0]])])
    assert out[0].tolist() == pytest.approx([math.log(5 / 8), math.log(3 / 8)], rel=1e-6)
    # Extreme logits stay finite: (1, 0) and (0, 1) average to (1/2, 1/2).
    out = mean_probability_logits([torch.tensor([[1000.0, 0.0]]), torch.tensor([[0.0, 1000.0]])])
    assert out[0].tolist() == pytest.approx([math.log(0.5), math.log(0.5)], rel=1e-6)


def test_mean_probability_logits_is_a_distribution_and_checks_inputs():
    torch.manual_seed(5)
    members = [torch.randn(4, 6, 7, dtype=torch.bfloat16) * 10 for _ in range(3)]
    out = mean_probability_logits(members)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    torch.testing.assert_close(out.exp().sum(-1), torch.ones(4, 6))
    with pytest.raises(ValueError, match="at least one"):
        mean_probability_logits([])
    with pytest.raises(ValueError, match="differ in shape"):
        mean_probability_logits([torch.zeros(2, 3), torch.zeros(2, 4)])


# --------------------------------------------------------------------------------------------------------
# ema_update_ / cosine_momentum
# --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("tau,expected", [(0.0, [3.0, -2.0]), (1.0, [1.0, 2.0]), (0.9, [1.2, 1.6])])
def test_ema_update_hand_computed(tau, expected):
    # τ = 0.9: 0.9·(1, 2) + 0.1·(3, −2) = (1.2, 1.6)
    ema = [torch.tensor([1.0, 2.0]), torch.tensor([5], dtype=torch.long)]
    params = [torch.tensor([3.0, -2.0]), torch.tensor([7], dtype=torch.long)]
    ema_update_(ema, params, tau)
    assert ema[0].tolist() == pytest.approx(expected, rel=1e-6)
    assert ema[1].tolist() == [7]  # non-floating tensors are copied whatever τ
    assert params[0].tolist() == [3.0, -2.0]


def test_ema_update_on_modules_without_grad_and_errors():
    torch.manual_seed(6)
    student, teacher = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    before = [t.detach().clone() for t in teacher.parameters()]
    ema_update_(teacher.parameters(), student.parameters(), 0.5)  # generators, leaves that require grad
    for t, b, s in zip(teacher.parameters(), before, student.parameters()):
        torch.testing.assert_close(t.detach(), 0.5 * b + 0.5 * s.detach())
        assert t.grad is None
    with pytest.raises(ValueError):
        ema_update_([torch.zeros(2)], [torch.zeros(2), torch.zeros(2)], 0.5)
    with pytest.raises(ValueError, match="shape"):
        ema_update_([torch.zeros(2)], [torch.zeros(3)], 0.5)
    with pytest.raises(ValueError, match="momentum"):
        ema_update_([torch.zeros(2)], [torch.zeros(2)], -0.1)


def test_cosine_momentum_schedule():
    base, total = 0.996, 100
    assert cosine_momentum(base, 0, total) == pytest.approx(0.996)
    assert cosine_momentum(base, 50, total) == pytest.approx(0.998)  # cos(π/2) = 0: halfway
    assert cosine_momentum(base, 100, total) == pytest.approx(1.0)
    # k = K/4: cos(π/4) = √2/2 → 1 − 0.004·(1 + √2/2)/2 ≈ 0.9965858
    assert cosine_momentum(base, 25, total) == pytest.approx(1 - 0.004 * (1 + math.sqrt(2) / 2) / 2, rel=1e-12)
    assert cosine_momentum(base, 25, total) == pytest.approx(0.99658579, abs=1e-8)
    assert cosine_momentum(base, -5, total) == pytest.approx(0.996)
    assert cosine_momentum(base, 250, total) == pytest.approx(1.0)
    assert cosine_momentum(base, 7, 0) == 0.996
    assert cosine_momentum(0.5, 10, 10, final=0.9) == pytest.approx(0.9)


# ------------------------------------------------------------------------------------------ PS-KD (Kim et al. 2021)
# Two examples, three classes: labels 0 and 2, the previous epoch's predictions P_prev, the student's q.
PS_LABELS = torch.tensor([0, 2])
PS_PREVIOUS = [[0.5, 0.3, 0.2], [0.1, 0.6, 0.3]]
PS_STUDENT = [[0.6, 0.3, 0.1], [0.2, 0.2, 0.6]]


def _log(rows):
    return torch.tensor(rows).log()  # logits whose softmax is exactly these rows


def test_ps_kd_targets_by_hand():
    # (1 − α)·y + α·P_prev at α = 0.25: 0.75·[1, 0, 0] + 0.25·[0.5, 0.3, 0.2] and 0.75·[0, 0, 1] + 0.25·[0.1, 0.6, 0.3]
    expected = torch.tensor([[0.875, 0.075, 0.05], [0.025, 0.15, 0.825]])
    targets = ps_kd_targets(PS_LABELS, _log(PS_PREVIOUS), 0.25)
    torch.testing.assert_close(targets, expected)
    one_hot = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    torch.testing.assert_close(ps_kd_targets(PS_LABELS, _log(PS_PREVIOUS), 0.0), one_hot)  # α = 0: y
    torch.testing.assert_close(ps_kd_targets(PS_LABELS, None, 0.7, classes=3), one_hot)  # no prediction yet: y
    torch.testing.assert_close(ps_kd_targets(PS_LABELS, _log(PS_PREVIOUS), 1.0), torch.tensor(PS_PREVIOUS))
    # the previous model's raw logits serve as well as its log-probabilities (softmax is shift invariant)
    torch.testing.assert_close(ps_kd_targets(PS_LABELS, _log(PS_PREVIOUS) + 3.0, 0.25), expected)
    # a label distribution (a mixup batch): 0.6·e_0 + 0.4·e_1 for the first row
    mixed = torch.tensor([[0.6, 0.4, 0.0], [0.0, 0.0, 1.0]])
    torch.testing.assert_close(
        ps_kd_targets(mixed, _log(PS_PREVIOUS), 0.25), torch.tensor([[0.575, 0.375, 0.05], [0.025, 0.15, 0.825]])
    )


def test_ps_kd_loss_is_the_cross_entropy_against_the_mixed_target_by_hand():
    student = _log(PS_STUDENT).requires_grad_(True)
    loss = ps_kd_loss(student, PS_LABELS, _log(PS_PREVIOUS), 0.25)
    # −½ [0.875 ln 0.6 + 0.075 ln 0.3 + 0.05 ln 0.1 + 0.025 ln 0.2 + 0.15 ln 0.2 + 0.825 ln 0.6] ≈ 0.677741
    ln = math.log
    expected = -0.5 * (
        0.875 * ln(0.6) + 0.075 * ln(0.3) + 0.05 * ln(0.1) + 0.025 * ln(0.2) + 0.15 * ln(0.2) + 0.825 * ln(0.6)
    )
    assert loss.item() == pytest.approx(expected, rel=1e-6) and expected == pytest.approx(0.677741, abs=1e-6)
    (grad,) = torch.autograd.grad(loss, student)
    # d/dz_s of the mean CE against a fixed target: (q − P̃)/N; nothing flows into the target
    target = torch.tensor([[0.875, 0.075, 0.05], [0.025, 0.15, 0.825]])
    torch.testing.assert_close(grad, (torch.tensor(PS_STUDENT) - target) / 2)
    plain = -0.5 * (ln(0.6) + ln(0.6))  # α = 0 or no previous prediction: CE(y, q) ≈ 0.510826
    assert ps_kd_loss(student, PS_LABELS, _log(PS_PREVIOUS), 0.0).item() == pytest.approx(plain, rel=1e-6)
    assert ps_kd_loss(student, PS_LABELS, None, 0.8).item() == pytest.approx(plain, rel=1e-6)


def test_ps_kd_loss_skips_unlabeled_rows_and_checks_inputs():
    student, previous = _log(PS_STUDENT), _log(PS_PREVIOUS)
    only_first = ps_kd_loss(student[:1], PS_LABELS[:1], previous[:1], 0.25)
    # −(0.875 ln 0.6 + 0.075 ln 0.3 + 0.05 ln 0.1) ≈ 0.652400
    assert only_first.item() == pytest.approx(0.652400, abs=1e-6)
    assert ps_kd_loss(student, torch.tensor([0, IGNORE_INDEX]), previous, 0.25).item() == pytest.approx(
        only_first.item(), rel=1e-6
    )
    leaf = student.clone().requires_grad_(True)
    none = ps_kd_loss(leaf, torch.tensor([IGNORE_INDEX, IGNORE_INDEX]), previous, 0.25)
    assert none.item() == 0.0 and torch.autograd.grad(none, leaf)[0].abs().sum() == 0
    with pytest.raises(ValueError, match="alpha"):
        ps_kd_loss(student, PS_LABELS, previous, 1.5)
    with pytest.raises(ValueError, match="shape"):
        ps_kd_loss(student, PS_LABELS, previous[:, :2], 0.25)
    with pytest.raises(ValueError, match="labels"):
        ps_kd_loss(student, PS_LABELS[:1], previous, 0.25)


@pytest.mark.parametrize(
    "progress, alpha",
    [(0.0, 0.0), (0.25, 0.2), (0.5, 0.4), (3 / 7, 0.8 * 3 / 7), (1.0, 0.8), (1.5, 0.8), (-0.1, 0.0)],
)
def test_ps_kd_alpha_grows_linearly_to_alpha_T_and_is_clamped(progress, alpha):
    assert ps_kd_alpha(0.8, progress) == pytest.approx(alpha, abs=1e-12)


def test_ps_kd_alpha_rejects_a_weight_outside_the_unit_interval():
    with pytest.raises(ValueError, match="final_alpha"):
        ps_kd_alpha(1.2, 0.5)
