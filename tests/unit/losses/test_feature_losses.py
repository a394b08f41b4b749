"""Feature losses against hand-computed values and the properties the papers rely on."""

import math

import pytest
import torch

from distillkit.losses.features import (
    attention_map,
    attention_mse,
    attention_score_mse,
    attention_scores,
    attention_transfer,
    cosine_hidden,
    hidden_mse,
    normalized_mse,
)

# ---------------------------------------------------------------------------------------------- hand-computed values


def test_hidden_mse_hand_computed():
    # B=1, S=2, H=3. Differences s − t: token 0 (0, 2, 0), token 1 (0, 0, −3).
    # Squares sum to 4 + 9 = 13 over n_valid·H = 2·3 elements → 13/6.
    # With token 1 masked out: 4 / (1·3) = 4/3.
    s = torch.tensor([[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]])
    t = torch.tensor([[[1.0, 0.0, 3.0], [4.0, 5.0, 9.0]]])
    assert hidden_mse(s, t).item() == pytest.approx(13 / 6)
    assert hidden_mse(s, t, torch.tensor([[1, 0]])).item() == pytest.approx(4 / 3)
    assert hidden_mse(s, t, torch.tensor([[True, False]])).item() == pytest.approx(4 / 3)


def test_hidden_mse_two_dimensional_hand_computed():
    # (B, H) = (2, 2). Differences (1, 0), (0, −2): squares 1 + 4 = 5 over 4 elements → 5/4.
    s = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    t = torch.tensor([[0.0, 2.0], [3.0, 6.0]])
    assert hidden_mse(s, t).item() == pytest.approx(5 / 4)
    with pytest.raises(ValueError, match="mask"):
        hidden_mse(s, t, torch.ones(2, 2))


def test_cosine_hidden_hand_computed():
    # Three tokens: cos((1,0),(0,1)) = 0 → 1;  cos((1,1),(2,2)) = 1 → 0;  cos((3,4),(4,3)) = 24/25 → 0.04.
    # Mean over 3 tokens: 1.04/3. With token 0 masked out: (0 + 0.04)/2 = 0.02.
    s = torch.tensor([[[1.0, 0.0], [1.0, 1.0], [3.0, 4.0]]])
    t = torch.tensor([[[0.0, 1.0], [2.0, 2.0], [4.0, 3.0]]])
    assert cosine_hidden(s, t).item() == pytest.approx(1.04 / 3, rel=1e-6)
    assert cosine_hidden(s, t, torch.tensor([[0, 1, 1]])).item() == pytest.approx(0.02, rel=1e-5)
    # Opposite vectors: 1 − (−1) = 2.
    assert cosine_hidden(torch.tensor([[1.0, 2.0]]), torch.tensor([[-2.0, -4.0]])).item() == pytest.approx(2.0)


def test_attention_map_hand_computed():
    # (B, S, H) = (1, 2, 3): token 0 (1, −2, 2), token 1 (0, 3, −4).
    # p=2: 1+4+4 = 9, 0+9+16 = 25.  p=1: 1+2+2 = 5, 0+3+4 = 7.  Mask [1, 0] zeroes token 1.
    f = torch.tensor([[[1.0, -2.0, 2.0], [0.0, 3.0, -4.0]]])
    assert torch.equal(attention_map(f), torch.tensor([[9.0, 25.0]]))
    assert torch.equal(attention_map(f, p=1), torch.tensor([[5.0, 7.0]]))
    assert torch.equal(attention_map(f, torch.tensor([[1, 0]])), torch.tensor([[9.0, 0.0]]))


def test_attention_map_four_dimensional_hand_computed():
    # (B, C, H, W) = (1, 2, 2, 2). Channel 0 [[1, 0], [2, −1]], channel 1 [[3, 1], [0, 2]].
    # p=2, summed over channels per position, row-major: [1+9, 0+1, 4+0, 1+4] = [10, 1, 4, 5].
    f = torch.tensor([[[[1.0, 0.0], [2.0, -1.0]], [[3.0, 1.0], [0.0, 2.0]]]])
    assert torch.equal(attention_map(f), torch.tensor([[10.0, 1.0, 4.0, 5.0]]))
    with pytest.raises(ValueError, match="4-D"):
        attention_map(f, torch.ones(1, 2))


def test_attention_transfer_hand_computed_with_different_widths():
    # Student width 3, teacher width 4, B=2, S=2, p=2.
    # Example 0: student tokens (1,1,1), (2,0,0) → A_s = (3, 4) → /5 = (0.6, 0.8);
    #            teacher tokens (1,1,1,1), (1,1,1,0) → A_t = (4, 3) → /5 = (0.8, 0.6);
    #            ‖(−0.2, 0.2)‖₂ = 0.2·√2.
    # Example 1: student (1,0,0), (0,0,0) → (1, 0); teacher (0,0,0,5), (0,0,0,0) → (25, 0) → (1, 0); distance 0.
    # Mean over the batch (not the sum): 0.1·√2. Not squared: the squared version would give 0.04.
    s = torch.tensor([[[1.0, 1.0, 1.0], [2.0, 0.0, 0.0]], [[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]])
    t = torch.tensor([[[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 0.0]], [[0.0, 0.0, 0.0, 5.0], [0.0, 0.0, 0.0, 0.0]]])
    assert attention_transfer(s, t).item() == pytest.approx(0.1 * math.sqrt(2), rel=1e-6)


def test_normalized_mse_hand_computed():
    # Example 0: (3,4)/5 = (0.6, 0.8), (4,3)/5 = (0.8, 0.6): 0.04 + 0.04 = 0.08.
    # Example 1: (1,0)/1 = (1, 0), (0,2)/2 = (0, 1): 1 + 1 = 2.   Mean over the batch: 2.08/2 = 1.04.
    s = torch.tensor([[3.0, 4.0], [1.0, 0.0]])
    t = torch.tensor([[4.0, 3.0], [0.0, 2.0]])
    assert normalized_mse(s, t).item() == pytest.approx(1.04, rel=1e-6)


def test_attention_mse_hand_computed():
    # B=1, heads=2, S=2. Head 0: student [[1, 0], [.5, .5]], teacher all .5 → diffs (.5, −.5, 0, 0), squares sum .5.
    # Head 1: identical → 0. Without a mask: 0.5 / (2 heads · 4 pairs) = 0.0625.
    # Mask [1, 0] keeps only the pair (q=0, k=0): head 0 gives .25, head 1 gives 0 → 0.25 / (2 · 1) = 0.125.
    s = torch.tensor([[[[1.0, 0.0], [0.5, 0.5]], [[1.0, 0.0], [0.0, 1.0]]]])
    t = torch.tensor([[[[0.5, 0.5], [0.5, 0.5]], [[1.0, 0.0], [0.0, 1.0]]]])
    assert attention_mse(s, t).item() == pytest.approx(0.0625)
    assert attention_mse(s, t, torch.tensor([[1, 0]])).item() == pytest.approx(0.125)


def test_attention_scores_hand_computed_per_head():
    # One token, H=2. Q = (1, 2), K = (3, 4). Two heads of d=1: (1·3)/1 = 3 and (2·4)/1 = 8.
    # One head of d=2: (1·3 + 2·4)/√2 = 11/√2.
    q, k = torch.tensor([[[1.0, 2.0]]]), torch.tensor([[[3.0, 4.0]]])
    assert torch.equal(attention_scores(q, k, heads=2), torch.tensor([[[[3.0]], [[8.0]]]]))
    assert attention_scores(q, k, heads=1).item() == pytest.approx(11 / math.sqrt(2))
    with pytest.raises(ValueError, match="does not split into 3 heads"):
        attention_scores(q, k, heads=3)


def test_attention_score_mse_hand_computed():
    # One head, S=2, student H=2 (d=2): Q = [[1, 0], [0, 1]], K = [[1, 1], [2, 0]] → QKᵀ = [[1, 2], [1, 0]],
    # scores QKᵀ/√2. Teacher (H=4) Q = K = 0 → scores 0. Squares: (1 + 4 + 1 + 0)/2 = 3 over 4 pairs → 0.75.
    # Mask [1, 0] keeps the pair (q=0, k=0) only: 1/2 → 0.5.
    s_q, s_k = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]]), torch.tensor([[[1.0, 1.0], [2.0, 0.0]]])
    t = torch.zeros(1, 2, 4)
    assert attention_score_mse(s_q, s_k, t, t, heads=1).item() == pytest.approx(0.75)
    assert attention_score_mse(s_q, s_k, t, t, 1, torch.tensor([[1, 0]])).item() == pytest.approx(0.5)
    # Two heads of d=1 on the one-token example above: (3² + 8²)/2 = 36.5.
    q, k = torch.tensor([[[1.0, 2.0]]]), torch.tensor([[[3.0, 4.0]]])
    assert attention_score_mse(q, k, torch.zeros(1, 1, 2), torch.zeros(1, 1, 2), 2).item() == pytest.approx(36.5)


def test_attention_score_mse_ignores_padding_and_stays_finite():
    # Padded positions hold garbage (large values) on both sides: the loss equals the loss on the real
    # tokens alone, is finite, and sends no gradient to the padded positions.
    g = torch.Generator().manual_seed(5)
    s_q, s_k, t_q, t_k = (torch.randn(2, 5, 8, generator=g) for _ in range(4))
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    pad = ~mask.bool()
    for x in (s_q, s_k, t_q, t_k):
        x[pad] = 1e4
    s_q.requires_grad_()
    loss = attention_score_mse(s_q, s_k, t_q, t_k, 2, mask)
    loss.backward()
    # by hand: pool the squared differences of the real (q, k) pairs of each example: 25 + 9 pairs, 2 heads
    sq0 = (attention_scores(s_q[:1], s_k[:1], 2) - attention_scores(t_q[:1], t_k[:1], 2)).pow(2)
    sq1 = (attention_scores(s_q[1:, :3], s_k[1:, :3], 2) - attention_scores(t_q[1:, :3], t_k[1:, :3], 2)).pow(2)
    expected = (sq0.sum() + sq1.sum()) / (2 * (25 + 9))
    assert torch.isfinite(loss) and loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert torch.isfinite(s_q.grad).all() and s_q.grad[pad].abs().sum() == 0
    assert attention_score_mse(s_q, s_k, s_q.detach().clone(), s_k.clone(), 2, mask).item() == 0.0
    no_tokens = attention_score_mse(s_q, s_k, t_q, t_k, 2, torch.zeros(2, 5))
    assert no_tokens.item() == 0.0 and no_tokens.requires_grad


# ---------------------------------------------------------------------------------------------------- properties


def _hidden(seed, shape=(2, 5, 4)):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g)


def _attention(seed, shape=(2, 3, 5, 5)):
    g = torch.Generator().manual_seed(seed)
    return torch.softmax(torch.randn(*shape, generator=g) * 2, dim=-1)


def test_zero_for_identical_inputs_and_positive_otherwise():
    s, t = _hidden(0), _hidden(1)
    a_s, a_t = _attention(2), _attention(3)
    cases = [
        (hidden_mse, s, t),
        (cosine_hidden, s, t),
        (attention_transfer, s, t),
        (normalized_mse, s[:, 0], t[:, 0]),
        (attention_mse, a_s, a_t),
    ]
    for fn, x, y in cases:
        assert fn(x, x.clone()).item() == pytest.approx(0.0, abs=1e-6), fn.__name__
        assert fn(x, y).item() > 1e-3, fn.__name__


def test_cosine_is_zero_for_positively_scaled_inputs():
    s = _hidden(4)
    assert cosine_hidden(s * 2.5, s).item() == pytest.approx(0.0, abs=1e-6)
    # unlike the MSE: (2.5s − s)² = 2.25·s², so the MSE is 2.25 times the mean square of s
    assert hidden_mse(s * 2.5, s).item() == pytest.approx(2.25 * s.pow(2).mean().item(), rel=1e-6)


def test_attention_transfer_and_normalized_mse_are_scale_invariant():
    s, t = _hidden(5), _hidden(6, (2, 5, 7))
    base = attention_transfer(s, t).item()
    assert base > 0.01
    assert attention_transfer(s * 3.7, t).item() == pytest.approx(base, rel=1e-5)
    assert attention_transfer(s, t * 3.7).item() == pytest.approx(base, rel=1e-5)
    cls_s, cls_t = _hidden(7, (3, 6)), _hidden(8, (3, 6))
    base = normalized_mse(cls_s, cls_t).item()
    assert base > 0.01
    assert normalized_mse(cls_s * 3.7, cls_t).item() == pytest.approx(base, rel=1e-5)
    assert normalized_mse(cls_s, cls_t * 3.7).item() == pytest.approx(base, rel=1e-5)


def test_attention_transfer_matches_a_loop_reference_for_4d_maps_and_different_widths():
    # CNN maps: student 2 channels, teacher 5, same 3×4 spatial grid; p=2 and p=1.
    s, t = _hidden(9, (3, 2, 3, 4)), _hidden(10, (3, 5, 3, 4))
    for p in (2, 1):
        expected = 0.0
        for b in range(3):
            a_s = s[b].abs().pow(p).sum(0).flatten()
            a_t = t[b].abs().pow(p).sum(0).flatten()
            expected += (a_s / a_s.norm() - a_t / a_t.norm()).norm().item() / 3
        assert attention_transfer(s, t, p=p).item() == pytest.approx(expected, rel=1e-5)
    # The same maps laid out as (B, positions, channels) give the same loss.
    as_tokens = attention_transfer(s.flatten(2).transpose(1, 2), t.flatten(2).transpose(1, 2))
    assert as_tokens.item() == pytest.approx(attention_transfer(s, t).item(), rel=1e-6)


def _pad_cases():
    """(name, loss(x, y, mask), student, teacher) for every loss taking a (B, S) mask."""
    return [
        ("hidden_mse", hidden_mse, _hidden(11), _hidden(12)),
        ("cosine_hidden", cosine_hidden, _hidden(11), _hidden(12)),
        ("attention_transfer", attention_transfer, _hidden(11), _hidden(12, (2, 5, 6))),
        ("attention_map", lambda x, y, m: attention_map(x, m).sum(), _hidden(11), _hidden(12)),
        ("attention_mse", attention_mse, _attention(13), _attention(14)),
    ]


@pytest.mark.parametrize("name,fn,s,t", _pad_cases(), ids=[c[0] for c in _pad_cases()])
def test_padding_does_not_change_the_loss(name, fn, s, t):
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 0]])
    pad = ~mask.bool()

    def scramble(x, seed):
        x = x.clone()
        noise = _hidden(seed, x.shape) * 10
        if x.dim() == 4:  # attention (B, h, S, S): every row and column of a padded position
            rows = pad[:, None, :, None].expand_as(x)
            cols = pad[:, None, None, :].expand_as(x)
            keep = ~(rows | cols)
        else:
            keep = ~pad[:, :, None].expand_as(x)
        return torch.where(keep, x, noise)

    s2, t2 = scramble(s, 15), scramble(t, 16)
    assert not torch.equal(s, s2) and not torch.equal(t, t2)
    masked = fn(s, t, mask).item()
    assert fn(s2, t2, mask).item() == pytest.approx(masked, rel=1e-6)
    assert fn(s2, t2, mask.bool()).item() == pytest.approx(masked, rel=1e-6)
    assert fn(s2, t2, None).item() != pytest.approx(masked, rel=1e-3)  # without the mask, padding counts


def test_mismatched_shapes_raise_naming_both_shapes():
    h, a = torch.zeros(2, 3, 4), torch.zeros(2, 2, 3, 3)
    with pytest.raises(ValueError, match=r"\(2, 3, 4\) vs \(2, 3, 5\).*project"):
        hidden_mse(h, torch.zeros(2, 3, 5))
    with pytest.raises(ValueError, match=r"\(2, 3, 4\) vs \(2, 3, 5\).*equal hidden sizes"):
        cosine_hidden(h, torch.zeros(2, 3, 5))
    with pytest.raises(ValueError, match=r"\(2, 3, 4\) vs \(2, 4, 4\).*positions"):
        attention_transfer(h, torch.zeros(2, 4, 4))
    with pytest.raises(ValueError, match=r"\(2, 2, 3, 3\) vs \(2, 2, 4, 4\).*positions"):
        attention_transfer(a, torch.zeros(2, 2, 4, 4))
    with pytest.raises(ValueError, match=r"\(2, 3, 4\) vs \(2, 2, 3, 3\)"):
        attention_transfer(h, a)
    with pytest.raises(ValueError, match=r"\(2, 4\) vs \(2, 5\).*equal hidden sizes"):
        normalized_mse(torch.zeros(2, 4), torch.zeros(2, 5))
    with pytest.raises(ValueError, match=r"\(2, 2, 3, 3\) vs \(2, 4, 3, 3\).*head count"):
        attention_mse(a, torch.zeros(2, 4, 3, 3))
    with pytest.raises(ValueError, match=r"\(2, 2, 3, 3\) vs \(2, 2, 4, 4\).*sequence length"):
        attention_mse(a, torch.zeros(2, 2, 4, 4))
    with pytest.raises(ValueError, match=r"mask of shape \(2, 4\).*\(2, 3, 4\)"):
        hidden_mse(h, h, torch.ones(2, 4))
    with pytest.raises(ValueError, match=r"mask of shape \(2, 2\).*\(2, 2, 3, 3\)"):
        attention_mse(a, a, torch.ones(2, 2))


def test_wrong_ranks_raise():
    with pytest.raises(ValueError, match="B, H"):
        normalized_mse(torch.zeros(2, 3, 4), torch.zeros(2, 3, 4))
    with pytest.raises(ValueError, match="B, heads, S, S"):
        attention_mse(torch.zeros(2, 3, 4), torch.zeros(2, 3, 4))
    with pytest.raises(ValueError, match="B, S, H"):
        hidden_mse(torch.zeros(4), torch.zeros(4))
    with pytest.raises(ValueError, match="p must be > 0"):
        attention_map(torch.zeros(1, 2, 3), p=0)


def _all_losses():
    s, t = _hidden(17), _hidden(18)
    s_wide = _hidden(19, (2, 5, 8))
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    return [
        ("hidden_mse", hidden_mse, s, t, mask),
        ("cosine_hidden", cosine_hidden, s, t, mask),
        ("attention_transfer", attention_transfer, s, s_wide, mask),
        ("attention_transfer_4d", attention_transfer, _hidden(20, (2, 3, 2, 2)), _hidden(21, (2, 6, 2, 2)), None),
        ("normalized_mse", normalized_mse, s[:, 0], t[:, 0], None),
        ("attention_mse", attention_mse, _attention(22), _attention(23), mask),
    ]


def _call(fn, s, t, mask):
    return fn(s, t) if mask is None else fn(s, t, mask)


@pytest.mark.parametrize("name,fn,s,t,mask", _all_losses(), ids=[c[0] for c in _all_losses()])
def test_bf16_inputs_give_a_float32_result(name, fn, s, t, mask):
    s16, t16 = s.bfloat16(), t.bfloat16()
    loss = _call(fn, s16, t16, mask)
    assert loss.dtype == torch.float32 and loss.dim() == 0
    assert loss.item() == pytest.approx(_call(fn, s16.float(), t16.float(), mask).item(), rel=1e-6)


@pytest.mark.parametrize("name,fn,s,t,mask", _all_losses(), ids=[c[0] for c in _all_losses()])
def test_gradients_flow_to_the_student(name, fn, s, t, mask):
    s = s.clone().requires_grad_()
    _call(fn, s, t, mask).backward()
    assert s.grad is not None and torch.isfinite(s.grad).all()
    assert s.grad.abs().sum().item() > 0
