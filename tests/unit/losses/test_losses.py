"""Logit losses against hand-computed values and the properties Hinton et al. (2015) rely on."""

import math

import pytest
import torch

from distillkit.config.schema import KDMethodConfig, NoneMethodConfig
from distillkit.losses.logits import cross_entropy, kl_per_example, soft_target_kl
from distillkit.methods import build_objective
from distillkit.models.features import Features
from distillkit.recipe.objective import LossInputs


def test_cross_entropy_hand_computed():
    # -log(e^2 / (e^2 + 1 + 1)) = log(1 + 2e^-2)
    logits = torch.tensor([[2.0, 0.0, 0.0]])
    assert cross_entropy(logits, torch.tensor([0])).item() == pytest.approx(math.log(1 + 2 * math.exp(-2)), rel=1e-6)


def test_cross_entropy_ignores_padding_labels():
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 5.0, 0.0]])
    assert cross_entropy(logits, torch.tensor([0, -100])).item() == pytest.approx(math.log(1 + 2 * math.exp(-2)))


@pytest.mark.parametrize("d,temperature", [(1.0, 1.0), (1.0, 2.0), (3.0, 0.5), (2.0, 4.0)])
def test_soft_target_kl_two_classes_hand_computed(d, temperature):
    # Student logits (d, 0), teacher (0, d). At temperature T the scaled gap is g = d/T and
    # KL(p ‖ q) = (σ(g) − σ(−g))·g = tanh(g/2)·g; the loss multiplies it by T².
    g = d / temperature
    expected = math.tanh(g / 2) * g * temperature**2
    loss = soft_target_kl(torch.tensor([[d, 0.0]]), torch.tensor([[0.0, d]]), temperature)
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_soft_target_kl_zero_for_identical_logits_and_positive_otherwise():
    torch.manual_seed(0)
    z = torch.randn(8, 5) * 3
    assert soft_target_kl(z, z.clone(), 4.0).item() == pytest.approx(0.0, abs=1e-6)
    assert soft_target_kl(z, torch.randn(8, 5), 4.0).item() > 0  # Gibbs' inequality
    # by hand: teacher logits (ln 3, 0) → p = (3/4, 1/4); student (0, 0) → q = (1/2, 1/2); T = 1:
    # KL = 3/4·ln(3/2) + 1/4·ln(1/2) = 0.304099 − 0.173287 = 0.130812
    kl = soft_target_kl(torch.zeros(1, 2), torch.tensor([[math.log(3.0), 0.0]]), 1.0)
    assert kl.item() == pytest.approx(0.75 * math.log(1.5) + 0.25 * math.log(0.5), rel=1e-6)
    assert kl.item() == pytest.approx(0.130812, abs=1e-6)


def test_soft_target_kl_is_invariant_to_adding_a_constant_per_example():
    torch.manual_seed(1)
    s, t = torch.randn(4, 6), torch.randn(4, 6)
    shifted = soft_target_kl(s + 7.0, t - torch.arange(4.0).unsqueeze(1), 3.0)
    assert shifted.item() == pytest.approx(soft_target_kl(s, t, 3.0).item(), rel=1e-5)


def test_soft_target_kl_scales_by_temperature_squared():
    torch.manual_seed(2)
    s, t = torch.randn(5, 4), torch.randn(5, 4)
    for temperature in (0.5, 2.0, 8.0):
        unscaled = kl_per_example(s / temperature, t / temperature).mean()
        assert soft_target_kl(s, t, temperature).item() == pytest.approx(temperature**2 * unscaled.item(), rel=1e-5)


def test_t_squared_keeps_gradients_on_the_hard_scale_at_high_temperature():
    # Hinton et al. eq. 4: for zero-mean logits and large T, ∂(T²·KL)/∂z_s → (z_s − z_t)/C per example.
    torch.manual_seed(3)
    s, t = torch.randn(1, 4), torch.randn(1, 4)
    s, t = (s - s.mean()).requires_grad_(), t - t.mean()
    soft_target_kl(s, t, 200.0).backward()
    assert torch.allclose(s.grad, (s.detach() - t) / 4, atol=1e-3)


def test_soft_target_kl_mask_and_low_precision():
    torch.manual_seed(4)
    s, t = torch.randn(6, 3), torch.randn(6, 3)
    mask = torch.tensor([True, False, True, True, False, True])
    assert soft_target_kl(s, t, 2.0, mask).item() == pytest.approx(soft_target_kl(s[mask], t[mask], 2.0).item())
    half = soft_target_kl(s.bfloat16(), t.bfloat16(), 2.0)
    assert half.dtype == torch.float32
    assert half.item() == pytest.approx(soft_target_kl(s.bfloat16().float(), t.bfloat16().float(), 2.0).item())
    assert torch.isfinite(soft_target_kl(s * 1e4, t * -1e4, 1.0))


def test_soft_target_kl_rejects_mismatched_shapes_and_bad_temperature():
    with pytest.raises(ValueError, match="same label space"):
        soft_target_kl(torch.zeros(2, 3), torch.zeros(2, 4), 1.0)
    with pytest.raises(ValueError, match="temperature"):
        soft_target_kl(torch.zeros(2, 3), torch.zeros(2, 3), 0.0)


def _inputs(s, t, labels):
    mask = torch.ones(len(labels), 3, dtype=torch.long)
    return LossInputs(Features(s), Features(t), labels, mask, torch.nn.ModuleDict())


@pytest.mark.parametrize("alpha", [0.0, 0.3, 1.0])
def test_kd_method_weights_hard_term_by_alpha_and_soft_term_by_one_minus_alpha(alpha):
    torch.manual_seed(5)
    s, t, y = torch.randn(4, 3), torch.randn(4, 3), torch.tensor([0, 2, 1, 1])
    method = build_objective(KDMethodConfig(temperature=2.0, ce_weight=alpha))
    total, terms = method(_inputs(s, t, y))
    ce, kd = cross_entropy(s, y), soft_target_kl(s, t, 2.0)
    assert total.item() == pytest.approx(alpha * ce.item() + (1 - alpha) * kd.item(), rel=1e-5)
    if alpha == 1.0:
        assert set(terms) == {"ce"}  # a zero-weight term is not even computed
    if alpha == 0.0:
        assert set(terms) == {"kd"}


def test_none_method_is_plain_cross_entropy_and_needs_no_teacher():
    s, y = torch.tensor([[2.0, 0.0, 0.0]]), torch.tensor([0])
    method = build_objective(NoneMethodConfig())
    assert not method.needs_teacher
    total, _ = method(LossInputs(Features(s), None, y, torch.ones(1, 3), torch.nn.ModuleDict()))
    assert total.item() == pytest.approx(math.log(1 + 2 * math.exp(-2)))


def test_formula_names_which_term_each_weight_scales():
    text = build_objective(KDMethodConfig(temperature=3.0, ce_weight=0.2)).formula()
    assert text.startswith("L = 0.2·CE(y, softmax(z_s)) + 0.8·T²·KL(softmax(z_t/T) ‖ softmax(z_s/T))")
    assert "T=3" in text and "hard-label" in text


def test_soft_label_kl_is_kl_from_the_teachers_probabilities_hand_computed():
    import math

    from distillkit.losses.logits import soft_label_kl

    p = torch.tensor([[0.7, 0.2, 0.1]])
    zeros = torch.zeros(1, 3)  # the student's distribution is uniform at any T
    # T = 1: KL(p ‖ uniform) = Σ p log p + log 3
    expected = sum(x * math.log(x) for x in (0.7, 0.2, 0.1)) + math.log(3)
    assert soft_label_kl(zeros, p, 1.0).item() == pytest.approx(expected, rel=1e-5)
    # T = 2: the teacher's p^(1/2)/Z against uniform, times T² = 4
    r = [math.sqrt(x) for x in (0.7, 0.2, 0.1)]
    pt = [x / sum(r) for x in r]
    assert soft_label_kl(zeros, p, 2.0).item() == pytest.approx(4 * (sum(x * math.log(x) for x in pt) + math.log(3)))
    # a one-hot row (a label without a soft one) is cross-entropy on that class; zeros are safe
    z = torch.tensor([[1.0, 2.0, 3.0]])
    one_hot = torch.tensor([[1.0, 0.0, 0.0]])
    assert soft_label_kl(z, one_hot, 1.0).item() == pytest.approx(-torch.log_softmax(z, -1)[0, 0].item(), rel=1e-5)
    assert torch.isfinite(soft_label_kl(z, one_hot, 4.0))
    # the student matching the teacher: 0
    assert soft_label_kl(p.log(), p, 1.0).item() == pytest.approx(0.0, abs=1e-6)
