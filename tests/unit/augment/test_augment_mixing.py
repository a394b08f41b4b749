"""Batch mixing and noising (distillkit/augment/mixing.py) against hand-computed values and invariants."""

import math

import pytest
import torch
import torch.nn.functional as F

from distillkit.augment.mixing import (
    MixPlan,
    consistency_kl,
    cutmix_images,
    cutmix_tokens,
    mix_embeddings,
    mix_logits,
    mixed_cross_entropy,
    sample_beta,
    sample_mix,
    token_noise,
)

CLS, SEP, PAD, MASK = 101, 102, 0, 103
SPECIAL = {CLS, SEP, PAD, MASK}


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def plan(lam, perm) -> MixPlan:
    return MixPlan(torch.tensor(lam, dtype=torch.float32), torch.tensor(perm))


def token_batch():
    """Rows of distinct ids (row r: 1000·(r+1) + k), padded; row 2 is a pair [CLS a SEP b SEP]."""
    rows = [
        [CLS, *range(1000, 1008), SEP, PAD, PAD],  # n = 8
        [CLS, *range(2000, 2010), SEP],  # n = 10
        [CLS, *range(3000, 3003), SEP, *range(3003, 3007), SEP, PAD, PAD],  # n = 7, a pair
        [CLS, 4000, 4001, SEP, *[PAD] * 8],  # n = 2
    ]
    ids = torch.tensor(rows)
    return ids, (ids != PAD).long()


# sample_beta / sample_mix


@pytest.mark.parametrize("alpha", [0.2, 0.4, 1.0, 4.0])
def test_sample_beta_moments(alpha):
    # Beta(α, α): mean 1/2, variance 1/(4(2α+1)). With n = 40 000 the standard error of the mean is
    # ≤ √(1/4/n) = 0.0025 and that of the variance ≤ √(1/16/n) ≈ 0.0013; the tolerances are ~4σ.
    x = sample_beta(40_000, alpha, gen(1)).double()
    assert x.min() >= 0 and x.max() <= 1
    assert x.mean().item() == pytest.approx(0.5, abs=0.01)
    assert x.var().item() == pytest.approx(1 / (4 * (2 * alpha + 1)), abs=0.005)


def test_sample_beta_is_seeded_by_the_generator():
    assert torch.equal(sample_beta(100, 0.4, gen(3)), sample_beta(100, 0.4, gen(3)))
    assert not torch.equal(sample_beta(100, 0.4, gen(3)), sample_beta(100, 0.4, gen(4)))


def test_sample_beta_rejects_bad_alpha():
    with pytest.raises(ValueError, match="alpha"):
        sample_beta(4, 0.0, gen())


def test_sample_mix_deterministic_for_a_seed():
    a, b = sample_mix(32, 0.4, 0.5, gen(7)), sample_mix(32, 0.4, 0.5, gen(7))
    assert torch.equal(a.lam, b.lam) and torch.equal(a.perm, b.perm)
    c = sample_mix(32, 0.4, 0.5, gen(8))
    assert not torch.equal(a.perm, c.perm)


@pytest.mark.parametrize("size,share", [(32, 0.5), (10, 0.25), (8, 1.0), (16, 0.0), (1, 1.0)])
def test_sample_mix_mixes_round_share_rows(size, share):
    for seed in range(20):
        p = sample_mix(size, 1.0, share, gen(seed))
        assert p.lam.dtype == torch.float32 and p.perm.dtype == torch.long
        assert sorted(p.perm.tolist()) == list(range(size))
        assert ((p.lam >= 0.5) & (p.lam <= 1)).all()
        fixed = p.perm == torch.arange(size)
        assert (p.lam[fixed] == 1).all()
        mixed = int((p.lam < 1).sum())
        assert round(share * size) - int(fixed.sum()) <= mixed <= round(share * size)


def test_sample_mix_rejects_bad_share():
    with pytest.raises(ValueError, match="share"):
        sample_mix(4, 0.4, 1.5, gen())


# mix_embeddings


def test_mix_embeddings_clean_rows_returned_exactly():
    e = torch.randn(3, 4, 5, generator=gen())
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]])
    out, out_mask = mix_embeddings(e, mask, plan([1.0, 1.0, 1.0], [2, 0, 1]))
    assert torch.equal(out, e) and torch.equal(out_mask, mask)


def test_mix_embeddings_hand_computed():
    e = torch.tensor([[[4.0, 0.0], [8.0, 0.0]], [[0.0, 4.0], [0.0, 0.0]]])
    mask = torch.tensor([[1, 1], [1, 0]])
    out, out_mask = mix_embeddings(e, mask, plan([0.25, 1.0], [1, 0]))
    # Row 0: 0.25·e_0 + 0.75·e_1; row 1 stays clean (λ = 1) although it is paired with row 0.
    assert torch.allclose(out[0], torch.tensor([[1.0, 3.0], [2.0, 0.0]]))
    assert torch.equal(out[1], e[1])
    assert out_mask.tolist() == [[1, 1], [1, 0]]


def test_mix_embeddings_mask_is_the_union_for_mixed_rows():
    e = torch.zeros(2, 3, 1)
    mask = torch.tensor([[1, 0, 0], [1, 1, 1]])
    _, out_mask = mix_embeddings(e, mask, plan([0.6, 0.7], [1, 0]))
    assert out_mask.tolist() == [[1, 1, 1], [1, 1, 1]]


# mix_logits / mixed_cross_entropy


def test_mix_logits_zero_weight_is_log_softmax():
    z = torch.randn(4, 6, generator=gen())
    out = mix_logits(z, torch.zeros(4), torch.tensor([1, 2, 3, 0]))
    assert torch.equal(out, F.log_softmax(z, dim=-1))


def test_mix_logits_half_weight_hand_computed():
    # softmax([0, ln 3]) = [1/4, 3/4], softmax([ln 3, 0]) = [3/4, 1/4]: their average is [1/2, 1/2].
    z = torch.tensor([[0.0, math.log(3)], [math.log(3), 0.0]])
    out = mix_logits(z, torch.tensor([0.5, 0.25]), torch.tensor([1, 0]))
    assert torch.allclose(out[0].exp(), torch.tensor([0.5, 0.5]))
    # Row 1: 3/4·[3/4, 1/4] + 1/4·[1/4, 3/4] = [10/16, 6/16].
    assert torch.allclose(out[1].exp(), torch.tensor([10 / 16, 6 / 16]))


def test_mix_logits_is_a_distribution_and_stable():
    z = torch.randn(5, 7, generator=gen()) * 1000
    out = mix_logits(z, torch.rand(5, generator=gen(1)), torch.tensor([4, 0, 1, 2, 3]))
    assert torch.isfinite(out).all()
    assert torch.allclose(out.exp().sum(-1), torch.ones(5))


def test_mixed_cross_entropy_zero_weight_is_cross_entropy():
    z = torch.randn(6, 4, generator=gen())
    y = torch.tensor([0, 3, -100, 2, 1, -100])
    out = mixed_cross_entropy(z, y, torch.zeros(6), torch.tensor([5, 4, 3, 2, 1, 0]))
    assert out.item() == pytest.approx(F.cross_entropy(z, y, ignore_index=-100).item(), rel=1e-6)


def test_mixed_cross_entropy_full_weight_uses_permuted_labels():
    z = torch.randn(4, 3, generator=gen())
    y, perm = torch.tensor([0, 1, 2, 1]), torch.tensor([2, 3, 0, 1])
    out = mixed_cross_entropy(z, y, torch.ones(4), perm)
    assert out.item() == pytest.approx(F.cross_entropy(z, y[perm]).item(), rel=1e-6)


def test_mixed_cross_entropy_hand_computed():
    # Row 0: logits [0, ln 3] → p = [1/4, 3/4]; own label 1, other label 0, w = 0.25:
    # 0.75·(−ln 3/4) + 0.25·(−ln 1/4). Row 1 clean (w = 0), label 0, logits [0, 0]: ln 2. Total weight 2.
    z = torch.tensor([[0.0, math.log(3)], [0.0, 0.0]])
    out = mixed_cross_entropy(z, torch.tensor([1, 0]), torch.tensor([0.25, 0.0]), torch.tensor([1, 0]))
    expected = (0.75 * -math.log(0.75) + 0.25 * -math.log(0.25) + math.log(2)) / 2
    assert out.item() == pytest.approx(expected, rel=1e-6)


def test_mixed_cross_entropy_ignored_targets_carry_no_weight():
    # Row 0 labeled (1), row 1 unlabeled, both mixed with w = 0.25 with each other: row 0's other target and
    # row 1's own target are ignored, so the loss is (0.75·CE(z_0, 1) + 0.25·CE(z_1, 1)) / (0.75 + 0.25).
    z = torch.tensor([[0.0, math.log(3)], [0.0, 0.0]])
    y = torch.tensor([1, -100])
    out = mixed_cross_entropy(z, y, torch.tensor([0.25, 0.25]), torch.tensor([1, 0]))
    assert out.item() == pytest.approx(0.75 * -math.log(0.75) + 0.25 * math.log(2), rel=1e-6)


def test_mixed_cross_entropy_no_labels_is_zero_with_grad():
    z = torch.randn(2, 3, requires_grad=True)
    out = mixed_cross_entropy(z, torch.tensor([-100, -100]), torch.tensor([0.3, 0.0]), torch.tensor([1, 0]))
    assert out.item() == 0.0
    out.backward()
    assert torch.equal(z.grad, torch.zeros(2, 3))


# cutmix_tokens


def test_cutmix_tokens_share_matches_replaced_positions():
    ids, mask = token_batch()
    real = mask.bool() & ~torch.isin(ids, torch.tensor(sorted(SPECIAL)))
    n = real.sum(1)
    for seed in range(30):
        p = sample_mix(4, 1.0, 1.0, gen(seed))
        out, out_mask, share = cutmix_tokens(ids, mask, p, gen(seed), SPECIAL)
        assert torch.equal(out_mask, mask)
        assert torch.equal(out[~real], ids[~real])  # [CLS], [SEP] and padding untouched
        changed = (out != ids).sum(1)
        assert torch.allclose(share, changed / n)
        for i in range(4):
            j = int(p.perm[i])
            if p.lam[i] == 1:
                assert torch.equal(out[i], ids[i]) and share[i] == 0
            else:
                pasted = out[i][out[i] != ids[i]]
                assert torch.isin(pasted, ids[j][real[j]]).all()  # taken from row perm[i]'s real tokens


def test_cutmix_tokens_span_length_formula():
    ids, mask = token_batch()
    # Row 0 (n=8) ← row 1 (n=10), λ=0.75: round(2.0) = 2. Row 1 (n=10) ← row 3 (n=2), λ=0.5: round(5) = 5,
    # clipped to n_j = 2. Row 2 (n=7) ← row 0, λ=0.99: round(0.07) = 0, clipped up to 1. Row 3 clean.
    p = plan([0.75, 0.5, 0.99, 1.0], [1, 3, 0, 2])
    out, _, share = cutmix_tokens(ids, mask, p, gen(), SPECIAL)
    assert torch.allclose(share, torch.tensor([2 / 8, 2 / 10, 1 / 7, 0.0]))
    assert (out != ids).sum(1).tolist() == [2, 2, 1, 0]


def test_cutmix_tokens_span_is_a_run_of_the_other_row():
    ids, mask = token_batch()
    out, _, _ = cutmix_tokens(ids, mask, plan([0.5, 1.0, 1.0, 1.0], [1, 0, 2, 3]), gen(5), SPECIAL)
    pasted = out[0][out[0] != ids[0]].tolist()  # 4 consecutive ids of row 1: 2000 + k, …, 2000 + k + 3
    assert len(pasted) == 4 and pasted == list(range(pasted[0], pasted[0] + 4))


def test_cutmix_tokens_deterministic_and_accepts_a_tensor_of_special_ids():
    ids, mask = token_batch()
    p = sample_mix(4, 0.4, 1.0, gen(2))
    a = cutmix_tokens(ids, mask, p, gen(9), SPECIAL)
    b = cutmix_tokens(ids, mask, p, gen(9), torch.tensor(sorted(SPECIAL)))
    assert all(torch.equal(x, y) for x, y in zip(a, b))


# cutmix_images


def test_cutmix_images_share_is_the_pasted_fraction():
    x = torch.stack([torch.zeros(3, 16, 16), torch.ones(3, 16, 16)])
    shares = []
    for seed in range(50):
        out, share = cutmix_images(x, plan([0.75, 1.0], [1, 0]), gen(seed))
        assert torch.equal(out[1], x[1]) and share[1] == 0  # clean row
        assert share[0].item() == pytest.approx(out[0].mean().item())  # fraction of pixels from image 1
        assert (out[0] == out[0, :1]).all()  # the same box in every channel
        shares.append(share[0].item())
    # The unclipped box is round(16·√0.25)² = 8² pixels = 1 − λ of the image; clipping only shrinks it.
    assert max(shares) == pytest.approx(0.25) and min(shares) > 0


# token_noise


def test_token_noise_rate_and_untouched_specials():
    ids = torch.randint(1000, 2000, (64, 40), generator=gen())
    ids[:, 0], ids[:, 30], ids[:, 31:] = CLS, SEP, PAD
    mask = (ids != PAD).long()
    out = token_noise(ids, mask, 0.2, "mask", gen(1), SPECIAL, mask_id=MASK)
    real = mask.bool() & ~torch.isin(ids, torch.tensor(sorted(SPECIAL)))
    assert torch.equal(out[~real], ids[~real])
    changed = out != ids
    assert (out[changed] == MASK).all()
    # 64·29 = 1856 real tokens: the rate's standard error is √(0.2·0.8/1856) ≈ 0.0093; allow ~4σ.
    assert changed[real].float().mean().item() == pytest.approx(0.2, abs=0.04)


def test_token_noise_replace_draws_non_special_ids():
    ids = torch.full((8, 50), 7)
    ids[:, 0], ids[:, -1] = CLS, SEP
    mask = torch.ones_like(ids)
    out = token_noise(ids, mask, 1.0, "replace", gen(), SPECIAL, vocab_size=200)
    assert torch.equal(out[:, [0, -1]], ids[:, [0, -1]])
    inner = out[:, 1:-1]
    assert (inner < 200).all() and not torch.isin(inner, torch.tensor(sorted(SPECIAL))).any()
    assert inner.unique().numel() > 100  # spread over the vocabulary, not one id


def test_token_noise_zero_rate_is_identity_and_seeded():
    ids, mask = token_batch()
    assert torch.equal(token_noise(ids, mask, 0.0, "mask", gen(), SPECIAL, mask_id=MASK), ids)
    a = token_noise(ids, mask, 0.5, "replace", gen(4), SPECIAL, vocab_size=5000)
    assert torch.equal(a, token_noise(ids, mask, 0.5, "replace", gen(4), SPECIAL, vocab_size=5000))


@pytest.mark.parametrize(
    "mode,kwargs,match",
    [
        ("mask", {"vocab_size": 100}, "mask_id"),
        ("replace", {"mask_id": MASK}, "vocab_size"),
        ("swap", {"mask_id": MASK, "vocab_size": 100}, "mode"),
    ],
)
def test_token_noise_rejects_missing_arguments(mode, kwargs, match):
    ids, mask = token_batch()
    with pytest.raises(ValueError, match=match):
        token_noise(ids, mask, 0.1, mode, gen(), SPECIAL, **kwargs)


# consistency_kl


def test_consistency_kl_zero_for_equal_logits():
    z = torch.randn(4, 5, generator=gen())
    assert consistency_kl(z, z.clone(), 2.0).item() == 0.0


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_consistency_kl_two_classes_hand_computed(temperature):
    # Teacher [0, 2 ln 3], student [0, 0]. At T = 1: p = [1/10, 9/10], q = [1/2, 1/2],
    # KL = 0.1·ln 0.2 + 0.9·ln 1.8. At T = 2: p = softmax([0, ln 3]) = [1/4, 3/4],
    # KL = 0.25·ln 0.5 + 0.75·ln 1.5, times T² = 4.
    teacher = torch.tensor([[0.0, 2 * math.log(3)]])
    student = torch.zeros(1, 2)
    expected = {1.0: 0.1 * math.log(0.2) + 0.9 * math.log(1.8), 2.0: 4 * (0.25 * math.log(0.5) + 0.75 * math.log(1.5))}[
        temperature
    ]
    assert consistency_kl(teacher, student, temperature).item() == pytest.approx(expected, rel=1e-6)


def test_consistency_kl_gradient_only_to_student():
    teacher = torch.randn(3, 4, requires_grad=True)
    student = torch.randn(3, 4, requires_grad=True)
    consistency_kl(teacher, student, 2.0).backward()
    assert teacher.grad is None
    assert student.grad is not None and student.grad.abs().sum() > 0
