"""Tests for distillkit.losses.contrastive (CRD: head, memory bank, NCE loss)."""

from __future__ import annotations

import copy
import io
import math

import pytest
import torch

from distillkit.losses.contrastive import (
    CRDHead,
    CRDMemory,
    _bank_scores,
    crd_loss,
    default_negatives,
    nce_loss,
)


def _axis_memory(momentum: float = 0.5) -> CRDMemory:
    """N=4, D=2, K=2, τ=1; both banks hold the four axis directions ±e1, ±e2."""
    mem = CRDMemory(num_examples=4, feat_dim=2, num_negatives=2, temperature=1.0, momentum=momentum, seed=0)
    axes = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
    mem.student_bank.copy_(axes)
    mem.teacher_bank.copy_(axes)
    return mem


# --------------------------------------------------------------------------------------------- head


def test_head_unit_norm_and_shape():
    torch.manual_seed(0)
    head = CRDHead(in_dim=7, feat_dim=5)
    out = head(torch.randn(3, 7) * 10)
    assert out.shape == (3, 5)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out.norm(dim=1), torch.ones(3))
    assert CRDHead(7).feat_dim == 128  # the paper's default


def test_head_rejects_wrong_input_dim():
    with pytest.raises(ValueError, match="in_dim|7"):
        CRDHead(in_dim=7, feat_dim=5)(torch.randn(3, 6))


# ------------------------------------------------------------------------------------------- memory


def test_memory_construction_is_deterministic_per_seed():
    a = CRDMemory(num_examples=10, feat_dim=4, num_negatives=3, seed=0)
    b = CRDMemory(num_examples=10, feat_dim=4, num_negatives=3, seed=0)
    c = CRDMemory(num_examples=10, feat_dim=4, num_negatives=3, seed=1)
    assert torch.equal(a.student_bank, b.student_bank) and torch.equal(a.teacher_bank, b.teacher_bank)
    assert not torch.allclose(a.student_bank, c.student_bank)
    assert not torch.allclose(a.teacher_bank, c.teacher_bank)
    assert not torch.allclose(a.student_bank, a.teacher_bank)  # the two banks are independent draws
    torch.testing.assert_close(a.student_bank.norm(dim=1), torch.ones(10))
    torch.testing.assert_close(a.teacher_bank.norm(dim=1), torch.ones(10))
    assert a.z.tolist() == [-1.0, -1.0]


def test_memory_defaults_to_scaled_paper_negatives():
    assert CRDMemory(num_examples=8000, feat_dim=2).num_negatives == 2621


def test_sample_positive_first_in_range_and_excluded_from_negatives():
    mem = CRDMemory(num_examples=6, feat_dim=2, num_negatives=50, seed=0)
    indices = torch.tensor([0, 5, 3, 3])
    out = mem.sample(indices, generator=torch.Generator().manual_seed(0))
    assert out.shape == (4, 51) and out.dtype == torch.int64
    assert torch.equal(out[:, 0], indices)
    assert int(out.min()) >= 0 and int(out.max()) < 6
    assert not (out[:, 1:] == indices.unsqueeze(1)).any()
    assert set(out[:, 1:].flatten().tolist()) == set(range(6))  # 200 draws reach every index (incl. 0 and 5)
    again = mem.sample(indices, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, again)
    # N = 2: the only negative of each example is the other one
    two = CRDMemory(num_examples=2, feat_dim=2, num_negatives=3, seed=0).sample(torch.tensor([0, 1]))
    assert two.tolist() == [[0, 1, 1, 1], [1, 0, 0, 0]]


def test_sample_rejects_out_of_range_indices():
    mem = CRDMemory(num_examples=6, feat_dim=2, num_negatives=2)
    with pytest.raises(ValueError, match="0, 6"):
        mem.sample(torch.tensor([6]))


def test_update_is_the_momentum_formula_and_keeps_unit_norm():
    mem = _axis_memory(momentum=0.75)
    before = mem.student_bank.clone()
    mem.update(torch.tensor([1]), student_emb=torch.tensor([[1.0, 0.0]]), teacher_emb=torch.tensor([[0.0, -1.0]]))
    # student row 1 was e2 = [0, 1]: 0.75·[0, 1] + 0.25·[1, 0] = [0.25, 0.75], norm √0.625 = 0.790569
    torch.testing.assert_close(mem.student_bank[1], torch.tensor([0.25, 0.75]) / math.sqrt(0.625))
    torch.testing.assert_close(mem.student_bank[1], torch.tensor([0.316228, 0.948683]), atol=1e-6, rtol=0)
    # teacher row 1 was [0, 1]: 0.75·[0, 1] + 0.25·[0, −1] = [0, 0.5] → normalised [0, 1]
    torch.testing.assert_close(mem.teacher_bank[1], torch.tensor([0.0, 1.0]))
    # other rows untouched, all rows unit norm
    torch.testing.assert_close(mem.student_bank[[0, 2, 3]], before[[0, 2, 3]])
    torch.testing.assert_close(mem.student_bank.norm(dim=1), torch.ones(4))
    torch.testing.assert_close(mem.teacher_bank.norm(dim=1), torch.ones(4))


def test_update_rejects_wrong_embedding_shape():
    mem = _axis_memory()
    with pytest.raises(ValueError, match="shape"):
        mem.update(torch.tensor([0]), torch.zeros(1, 3), torch.zeros(1, 2))


def test_state_dict_round_trip_restores_banks_and_z():
    mem = CRDMemory(num_examples=8, feat_dim=3, num_negatives=2, seed=0)
    emb = torch.nn.functional.normalize(torch.randn(2, 3), dim=1)
    crd_loss(emb, emb.flip(0), mem, torch.tensor([1, 4]))  # estimates z and updates rows 1, 4
    assert set(mem.state_dict()) == {"student_bank", "teacher_bank", "z"}
    assert (mem.z > 0).all()

    buf = io.BytesIO()
    torch.save(mem.state_dict(), buf)
    buf.seek(0)
    restored = CRDMemory(num_examples=8, feat_dim=3, num_negatives=2, seed=123)
    assert not torch.equal(restored.student_bank, mem.student_bank)
    restored.load_state_dict(torch.load(buf))
    for name in ("student_bank", "teacher_bank", "z"):
        assert torch.equal(getattr(restored, name), getattr(mem, name)), name


# --------------------------------------------------------------------------------------------- loss


def test_crd_loss_matches_hand_computation_and_scores_before_update():
    mem = _axis_memory(momentum=0.5)
    # fixed Z_s = e, Z_t = 1 (different, so swapping them changes the value; not re-estimated since not −1)
    mem.z.copy_(torch.tensor([math.e, 1.0]))
    student = torch.tensor([[1.0, 0.0]])
    teacher = torch.tensor([[0.0, 1.0]])
    sample_idx = torch.tensor([[0, 1, 2]])  # positive 0, negatives 1 and 2
    loss = crd_loss(student, teacher, mem, torch.tensor([0]), sample_idx)

    # τ = 1, N = 4, K = 2 → K·P_n = 2/4 = 0.5.
    # Student anchor [1,0] vs teacher rows 0,1,2 = [1,0],[0,1],[−1,0]: s = 1, 0, −1 → P = exp(s)/e = 1, e⁻¹, e⁻²
    #   L_s = −[log(1/(1+0.5)) + log(0.5/(e⁻¹+0.5)) + log(0.5/(e⁻²+0.5))]
    #       = log 1.5 + log(1 + 2e⁻¹) + log(1 + 2e⁻²) = 0.405465 + 0.551445 + 0.239545 = 1.196455
    # Teacher anchor [0,1] vs student rows 0,1,2: s = 0, 1, 0 → P = exp(s)/1 = 1, e, 1
    #   L_t = −[log(1/(1+0.5)) + log(0.5/(e+0.5)) + log(0.5/(1+0.5))]
    #       = log 1.5 + log(1 + 2e) + log 3 = 0.405465 + 1.861995 + 1.098612 = 3.366072
    # total = 1.196455 + 3.366072 = 4.562527
    e = math.e
    l_s = math.log(1.5) + math.log(1 + 2 / e) + math.log(1 + 2 / e**2)
    l_t = math.log(1.5) + math.log(1 + 2 * e) + math.log(3)
    assert abs(l_s + l_t - 4.562527) < 1e-6
    assert loss.shape == () and loss.dtype == torch.float32
    assert abs(loss.item() - (l_s + l_t)) < 1e-5

    # Z stayed fixed; the banks were updated AFTER scoring (had the teacher row 0 already moved to
    # normalise(0.5·[1,0] + 0.5·[0,1]), the positive score would be 0.707, not 1, and the value above would differ)
    assert mem.z.tolist() == pytest.approx([e, 1.0])
    torch.testing.assert_close(mem.student_bank[0], torch.tensor([1.0, 0.0]))
    torch.testing.assert_close(mem.teacher_bank[0], torch.tensor([1.0, 1.0]) / math.sqrt(2))
    torch.testing.assert_close(mem.teacher_bank[1:], torch.tensor([[0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]]))


def test_z_estimated_on_first_batch_then_fixed():
    mem = _axis_memory()
    sample_idx = torch.tensor([[0, 1, 2]])
    crd_loss(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]]), mem, torch.tensor([0]), sample_idx)
    # Z = mean(exp(s/τ)) · N with the scores of the hand-computed case: s_s = 1, 0, −1; s_t = 0, 1, 0
    e = math.e
    assert mem.z.tolist() == pytest.approx([(e + 1 + 1 / e) / 3 * 4, (1 + e + 1) / 3 * 4], rel=1e-6)
    first = mem.z.clone()
    crd_loss(
        torch.tensor([[0.0, -1.0]]), torch.tensor([[-1.0, 0.0]]), mem, torch.tensor([3]), torch.tensor([[3, 0, 1]])
    )
    assert torch.equal(mem.z, first)


def test_nce_loss_averages_over_the_batch():
    torch.manual_seed(0)
    log_p = torch.randn(3, 5)
    per_row = torch.stack([nce_loss(log_p[i : i + 1], 10) for i in range(3)])
    torch.testing.assert_close(nce_loss(log_p, 10), per_row.mean())


def test_loss_lower_when_student_matches_teacher_positive():
    torch.manual_seed(0)
    mem = CRDMemory(num_examples=16, feat_dim=8, num_negatives=5, temperature=0.07, seed=0)
    mem.z.fill_(50.0)
    indices = torch.tensor([2, 9])
    sample_idx = torch.tensor([[2, 0, 5, 7, 11, 13], [9, 1, 3, 4, 6, 15]])
    teacher = torch.nn.functional.normalize(torch.randn(2, 8), dim=1)
    matches_positive = mem.teacher_bank[sample_idx[:, 0]].clone()
    matches_negative = mem.teacher_bank[sample_idx[:, 1]].clone()
    good = crd_loss(matches_positive, teacher, copy.deepcopy(mem), indices, sample_idx)
    bad = crd_loss(matches_negative, teacher, copy.deepcopy(mem), indices, sample_idx)
    assert good.item() < bad.item() - 1.0


def test_gradients_reach_student_embedding_and_head():
    torch.manual_seed(0)
    # N·(D + B) = 8·8 < B·(K+1)·D = 4·5·4: the full-product scoring path, whose saved bank copy must survive
    # the in-place bank update that crd_loss does before backward()
    mem = CRDMemory(num_examples=8, feat_dim=4, num_negatives=4, seed=0)
    head_s, head_t = CRDHead(6, 4), CRDHead(5, 4)
    x_s = torch.randn(4, 6, requires_grad=True)
    student_emb = head_s(x_s)
    student_emb.retain_grad()
    loss = crd_loss(student_emb, head_t(torch.randn(4, 5)), mem, torch.tensor([0, 3, 5, 7]))
    loss.backward()
    for grad in (student_emb.grad, x_s.grad, head_s.linear.weight.grad, head_t.linear.weight.grad):
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0
    assert mem.student_bank.grad is None and not mem.student_bank.requires_grad


@pytest.mark.parametrize("full", [True, False])
def test_bank_score_paths_agree_and_survive_inplace_update(full):
    torch.manual_seed(0)
    bank = torch.nn.functional.normalize(torch.randn(10, 3), dim=1)
    before = bank.clone()
    anchor = torch.randn(2, 3, requires_grad=True)
    sample_idx = torch.tensor([[1, 0, 9], [4, 4, 2]])
    scores = _bank_scores(anchor, bank, sample_idx, full=full)
    torch.testing.assert_close(scores.detach(), torch.einsum("bd,bkd->bk", anchor.detach(), before[sample_idx]))
    bank.index_copy_(0, torch.tensor([1]), torch.zeros(1, 3))  # what CRDMemory.update does before backward()
    scores.sum().backward()
    torch.testing.assert_close(anchor.grad, before[sample_idx].sum(dim=1))  # d/da Σ_k ⟨a, w_k⟩, old rows


def test_loss_fp32_under_bf16_inputs():
    mem = _axis_memory()
    mem.z.fill_(math.e)
    ref = crd_loss(
        torch.tensor([[1.0, 0.0]]),
        torch.tensor([[0.0, 1.0]]),
        copy.deepcopy(mem),
        torch.tensor([0]),
        torch.tensor([[0, 1, 2]]),
    )
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = crd_loss(
            torch.tensor([[1.0, 0.0]], dtype=torch.bfloat16),
            torch.tensor([[0.0, 1.0]], dtype=torch.bfloat16),
            mem,
            torch.tensor([0]),
            torch.tensor([[0, 1, 2]]),
        )
    assert low.dtype == torch.float32
    torch.testing.assert_close(low, ref)


def test_crd_loss_rejects_bad_shapes():
    mem = _axis_memory()
    s, t = torch.zeros(1, 2), torch.zeros(1, 2)
    with pytest.raises(ValueError, match="shape"):
        crd_loss(s, torch.zeros(2, 2), mem, torch.tensor([0]))
    with pytest.raises(ValueError, match="dimension"):
        crd_loss(torch.zeros(1, 3), torch.zeros(1, 3), mem, torch.tensor([0]))
    with pytest.raises(ValueError, match="sample_idx"):
        crd_loss(s, t, mem, torch.tensor([0]), torch.tensor([[0, 1]]))
    with pytest.raises(ValueError, match="positives"):
        crd_loss(s, t, mem, torch.tensor([0]), torch.tensor([[1, 0, 2]]))


# ---------------------------------------------------------------------------------------------- K


def test_default_negatives_scales_the_paper_k():
    assert default_negatives(8000) == 2621  # round(16384 · 8000 / 50000) = round(2621.44)
    assert default_negatives(50_000) == 16384
    assert default_negatives(1_000_000) == 16384  # never above the paper's K
    assert default_negatives(2) == 1  # N − 1
    assert default_negatives(3) == 1  # round(0.98) = 1 ≤ N − 1
    with pytest.raises(ValueError):
        default_negatives(1)
