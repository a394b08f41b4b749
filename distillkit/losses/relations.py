"""Losses on relations between representations: RKD (Park et al. 2019) and MiniLM (Wang et al. 2020, 2021).

Neither family compares student and teacher features directly, so their widths may differ: RKD compares
the structure of a batch of embeddings (pairwise distances, angles of triples), MiniLM compares S×S
self-attention / value-relation distributions per head.

All functions are pure: tensors in, a scalar tensor out, computed and reduced in fp32 whatever the input
dtype (bf16/fp16 features under autocast are upcast first). Nothing is detached here: running the
teacher under ``torch.no_grad()`` is the caller's business. No loss weights are applied here either: the
method scales each term.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from distillkit.losses.logits import kl_per_example

# Squared distances are clamped to this before the square root, so identical embeddings give a distance of
# sqrt(EPS) = 1e-6 with a zero (not NaN) gradient. The same value is F.normalize's default eps.
EPS = 1e-12


# --------------------------------------------------------------------------------------------------------
# RKD: Park, Kim, Lu, Cho, "Relational Knowledge Distillation", CVPR 2019.
# --------------------------------------------------------------------------------------------------------


def rkd_distance(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """RKD distance-wise loss (Park et al. 2019, §3.2.1, eq. 3-5).

        ψ_D(t_i, t_j) = ‖t_i − t_j‖₂ / μ,   μ = 1/(B(B−1)) Σ_{i≠j} ‖t_i − t_j‖₂
        L_RKD-D = 1/(B(B−1)) Σ_{i≠j} l_δ(ψ_D(t_i, t_j), ψ_D(s_i, s_j))

    with l_δ the Huber loss at δ = 1 (``F.smooth_l1_loss``, mean), and the student's μ computed from the
    student's own distances. The μ normalisation makes the loss invariant to scaling either side's
    embeddings, and distances make it invariant to rotating and translating them. The mean runs over the
    ordered pairs i≠j (the diagonal, 0 on both sides, is left out; the paper's code keeps it in the mean).
    The paper weights this term by 25 (λ_D); that weight is the method's, not applied here.

    Distances come from the Gram matrix of the batch-centred embeddings (O(B²) memory), with squared
    distances clamped to ``EPS`` before the square root: identical embeddings in a batch give a finite
    loss and finite (zero) gradients. A batch of fewer than 2 has no pairs and gives 0 (graph kept).

    student: (B, Ds) · teacher: (B, Dt); the widths may differ, the batch sizes must match.
    """
    _check_embeddings(student, teacher)
    if student.shape[0] < 2:
        return student.float().sum() * 0.0 + teacher.float().sum() * 0.0  # no pairs, no loss
    d_s = _normalised_distances(student)
    d_t = _normalised_distances(teacher)
    return F.smooth_l1_loss(d_s, d_t, reduction="mean", beta=1.0)


def rkd_angle(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """RKD angle-wise loss (Park et al. 2019, §3.2.2, eq. 6-7).

        ψ_A(t_i, t_j, t_k) = cos∠t_i t_j t_k = ⟨e_ij, e_kj⟩,   e_ij = (t_i − t_j) / ‖t_i − t_j‖₂
        L_RKD-A = 1/B³ Σ_{i,j,k} l_δ(ψ_A(t_i, t_j, t_k), ψ_A(s_i, s_j, s_k))

    with l_δ the Huber loss at δ = 1 (``F.smooth_l1_loss``, mean) over the full B×B×B angle tensors, as the
    paper's code does: e_ij comes from ``F.normalize`` (eps = 1e-12), so a degenerate triple (i = j, k = j,
    or two identical embeddings) has e = 0 and contributes an angle of 0 — on both sides for i = j or
    k = j, so those terms add 0 to the sum but still count in the 1/B³. Cosines are invariant to scaling,
    rotating and translating either side's embeddings. The paper weights this term by 50 (λ_A); that weight
    is the method's, not applied here.

    Memory is O(B²·D) for the unit difference vectors and O(B³) for the angles (as in the paper's code).

    student: (B, Ds) · teacher: (B, Dt); the widths may differ, the batch sizes must match.
    """
    _check_embeddings(student, teacher)
    return F.smooth_l1_loss(_angles(student), _angles(teacher), reduction="mean", beta=1.0)


def _check_embeddings(student: torch.Tensor, teacher: torch.Tensor) -> None:
    if student.dim() != 2 or teacher.dim() != 2:
        raise ValueError(
            f"RKD expects (batch, width) embeddings, got student {tuple(student.shape)} and teacher "
            f"{tuple(teacher.shape)}; pool or flatten the features first."
        )
    if student.shape[0] != teacher.shape[0]:
        raise ValueError(
            f"student and teacher batch sizes differ: {student.shape[0]} vs {teacher.shape[0]}; RKD compares "
            "the relations within one batch, so both must embed the same examples."
        )


def _normalised_distances(e: torch.Tensor) -> torch.Tensor:
    """ψ_D for the B(B−1) ordered pairs i≠j, flattened: ‖e_i − e_j‖₂ / (their mean), in fp32."""
    e = e.float()
    e = e - e.mean(dim=0, keepdim=True)  # translation-free; shrinks the cancellation in the Gram formula
    sq_norms = (e * e).sum(dim=1)
    sq_dist = sq_norms.unsqueeze(1) + sq_norms.unsqueeze(0) - 2.0 * (e @ e.t())
    dist = sq_dist.clamp(min=EPS).sqrt()
    off_diagonal = ~torch.eye(e.shape[0], dtype=torch.bool, device=e.device)
    dist = dist[off_diagonal]
    return dist / dist.mean().clamp(min=EPS)


def _angles(e: torch.Tensor) -> torch.Tensor:
    """ψ_A as a (B, B, B) tensor A[j, i, k] = ⟨e_ij, e_kj⟩ (vertex j first), in fp32."""
    e = e.float()
    unit = F.normalize(e.unsqueeze(0) - e.unsqueeze(1), p=2, dim=2, eps=EPS)  # unit[j, i] = e_ij
    return torch.bmm(unit, unit.transpose(1, 2))


# --------------------------------------------------------------------------------------------------------
# MiniLM: Wang et al., "MiniLM: Deep Self-Attention Distillation for Task-Agnostic Compression of
# Pre-Trained Transformers", NeurIPS 2020; relation heads from Wang et al., "MiniLMv2: Multi-Head
# Self-Attention Relation Distillation for Compressing Pretrained Transformers", Findings of ACL 2021.
# --------------------------------------------------------------------------------------------------------


def relation_logits(x: torch.Tensor, y: torch.Tensor, heads: int, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Scaled dot-product relation logits per relation head (MiniLMv2, §3.1), in fp32.

        x_h, y_h = the h-th of ``heads`` contiguous slices of width d = H / heads of the last dim
        R_h = x_h · y_hᵀ / √d                                     (B, heads, S, S)

    With x = Q, y = K and heads = the number of attention heads, softmax(R_h) is head h's attention
    distribution A = softmax(QKᵀ/√d_k) (MiniLM eq. 1); with x = y = V it is the value relation (MiniLM
    eq. 4). MiniLMv2 re-splits the concatenated heads into any number of relation heads the same way.
    Key positions where ``mask`` == 0 are set to the fp32 minimum, so they get zero probability under a
    softmax over the last dim (a query row always keeps its valid keys).

    x, y: (B, S, H) · mask: (B, S), 1/True for real tokens, 0/False for padding.
    """
    if x.dim() != 3 or x.shape != y.shape:
        raise ValueError(
            f"relation_logits expects two (batch, seq, hidden) tensors of the same shape, got "
            f"{tuple(x.shape)} and {tuple(y.shape)}."
        )
    batch, seq, hidden = x.shape
    if heads <= 0 or hidden % heads != 0:
        raise ValueError(
            f"hidden size {hidden} is not divisible into {heads} relation heads; choose a number of heads "
            f"that divides both the student's and the teacher's hidden size."
        )
    d = hidden // heads
    xh = x.float().reshape(batch, seq, heads, d).transpose(1, 2)  # (B, heads, S, d)
    yh = y.float().reshape(batch, seq, heads, d).transpose(1, 2)
    logits = xh @ yh.transpose(-1, -2) / math.sqrt(d)
    if mask is not None:
        keys = _check_mask(mask, batch, seq)
        logits = logits.masked_fill(~keys[:, None, None, :], torch.finfo(torch.float32).min)
    return logits


def minilm_attention_kl(
    s_q: torch.Tensor,
    s_k: torch.Tensor,
    t_q: torch.Tensor,
    t_k: torch.Tensor,
    heads: int,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """MiniLM self-attention distribution transfer (Wang et al. 2020, eq. 3).

        A_h = softmax(Q_h K_hᵀ / √d),  d = H / heads, each model with its own H (``relation_logits``)
        L_AT = 1/(heads·N) Σ_b Σ_h Σ_{valid t} KL(A^T_{h,t} ‖ A^S_{h,t}),   KL(p ‖ q) = Σ_k p_k (log p_k − log q_k)

    where t runs over the N valid query positions of the whole batch (all B·S without a mask) and the sum
    over k over the valid keys. Computed from log-softmax in fp32; exactly 0 when the inputs are equal.
    Both models are split into the same number of heads and the distributions are S×S, so the student's
    hidden size may differ from the teacher's (MiniLM needs equal head counts; MiniLMv2's relation heads
    lift that by re-splitting). No mask with valid tokens gives 0 (graph kept).

    s_q, s_k: (B, S, Hs) · t_q, t_k: (B, S, Ht) · mask: (B, S), 1 for real tokens, 0 for padding.
    """
    return _relation_kl(s_q, s_k, t_q, t_k, heads, mask)


def minilm_value_kl(s_v: torch.Tensor, t_v: torch.Tensor, heads: int, mask: torch.Tensor | None = None) -> torch.Tensor:
    """MiniLM self-attention value-relation transfer (Wang et al. 2020, eq. 4-5).

        VR_h = softmax(V_h V_hᵀ / √d),  d = H / heads, each model with its own H (``relation_logits``)
        L_VR = 1/(heads·N) Σ_b Σ_h Σ_{valid t} KL(VR^T_{h,t} ‖ VR^S_{h,t})

    averaged as in ``minilm_attention_kl`` (N valid query positions, sum over valid keys), in fp32 from
    log-softmax. The student's hidden size may differ from the teacher's. MiniLM's total loss is
    L_AT + L_VR; any weighting is the method's.

    s_v: (B, S, Hs) · t_v: (B, S, Ht) · mask: (B, S), 1 for real tokens, 0 for padding.
    """
    return _relation_kl(s_v, s_v, t_v, t_v, heads, mask)


def _relation_kl(
    s_x: torch.Tensor,
    s_y: torch.Tensor,
    t_x: torch.Tensor,
    t_y: torch.Tensor,
    heads: int,
    mask: torch.Tensor | None,
) -> torch.Tensor:
    if s_x.dim() != 3 or t_x.dim() != 3 or s_x.shape[:2] != t_x.shape[:2]:
        raise ValueError(
            f"student and teacher must be (batch, seq, hidden) over the same batch and sequence, got "
            f"{tuple(s_x.shape)} vs {tuple(t_x.shape)}; only the hidden sizes may differ."
        )
    r_s = relation_logits(s_x, s_y, heads, mask)
    r_t = relation_logits(t_x, t_y, heads, mask)
    per_row = kl_per_example(r_s, r_t)  # (B, heads, S): KL per head and query row; masked keys have p = 0
    if mask is not None:
        queries = _check_mask(mask, s_x.shape[0], s_x.shape[1])
        per_row = per_row.transpose(1, 2)[queries]  # (N, heads): the valid query rows only
    if per_row.numel() == 0:
        return s_x.float().sum() * 0.0 + s_y.float().sum() * 0.0  # no valid tokens, no loss
    return per_row.mean()


def _check_mask(mask: torch.Tensor, batch: int, seq: int) -> torch.Tensor:
    if mask.shape != (batch, seq):
        raise ValueError(f"mask must be (batch, seq) = {(batch, seq)}, got {tuple(mask.shape)}")
    return mask.bool()
