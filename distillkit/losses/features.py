"""Losses on intermediate representations: hidden states, attention maps and attention matrices.

All functions are pure: tensors in, a scalar tensor out, reduced in fp32 whatever the input dtype
(bf16/fp16 activations under autocast are upcast first). Conventions:

* hidden states are (B, S, H) float tensors;
* ``mask`` is an optional (B, S) tensor of 1/0 or bool, 1 = real token; padding is left out of every mean;
* attention probabilities are (B, heads, S, S), as ``transformers`` returns them with ``output_attentions``.

Layer mapping and any width-matching projection W_s are the caller's job: these functions see one
(student, teacher) pair at a time.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def hidden_mse(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared error per element over the real tokens and the hidden dimension.

        L = Σ_{valid b,s} Σ_h (s_{b,s,h} − t_{b,s,h})² / (n_valid · H)

    FitNets' hint loss (Romero et al. 2015, eq. 2) is ½‖W_s·F_s − F_t‖², a sum; TinyBERT's hidden and
    embedding losses (Jiao et al. 2020, eq. 8-9) are MSE(H_S·W_h, H_T). We take the mean per element so
    the scale of the loss depends neither on the width H nor on the sequence length, and a weight tuned
    for one student carries over to another. The projection W_s (student width → teacher width) is applied
    by the caller, so ``student`` and ``teacher`` must have the same shape here.

    student, teacher: (B, S, H) with optional ``mask`` (B, S), or (B, H) (no mask).
    """
    _check_same_shape(student, teacher, "hidden states", "project the student to the teacher's width first")
    diff = student.float() - teacher.float()
    if diff.dim() == 2:
        if mask is not None:
            raise ValueError(f"a mask needs (B, S, H) hidden states, got 2-D inputs of shape {tuple(student.shape)}")
        return diff.pow(2).mean()
    if diff.dim() != 3:
        raise ValueError(f"hidden_mse expects (B, S, H) or (B, H) tensors, got shape {tuple(student.shape)}")
    per_element = _valid_tokens(diff, mask).pow(2)  # (n_valid, H)
    if per_element.numel() == 0:
        return student.float().sum() * 0.0  # keeps the graph; no real tokens, no loss
    return per_element.mean()


def cosine_hidden(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """DistilBERT's cosine embedding loss (Sanh et al. 2019, §3): mean over real tokens of 1 − cos(s_i, t_i).

        L = (1 / n_valid) Σ_{valid i} (1 − ⟨s_i, t_i⟩ / (‖s_i‖₂ ‖t_i‖₂))

    It aligns the directions of the student and teacher hidden states and ignores their norms: 0 for
    identical or positively scaled inputs, 1 for orthogonal ones, 2 for opposite ones. The hidden sizes
    must be equal (DistilBERT keeps the teacher's width).

    student, teacher: (B, S, H) with optional ``mask`` (B, S), or (B, H) (no mask).
    """
    _check_same_shape(student, teacher, "hidden states", "the cosine loss needs equal hidden sizes")
    if student.dim() == 2:
        if mask is not None:
            raise ValueError(f"a mask needs (B, S, H) hidden states, got 2-D inputs of shape {tuple(student.shape)}")
        s, t = student.float(), teacher.float()
    elif student.dim() == 3:
        s, t = _valid_tokens(student.float(), mask), _valid_tokens(teacher.float(), mask)
    else:
        raise ValueError(f"cosine_hidden expects (B, S, H) or (B, H) tensors, got shape {tuple(student.shape)}")
    if s.shape[0] == 0:
        return student.float().sum() * 0.0  # keeps the graph; no real tokens, no loss
    return (1.0 - F.cosine_similarity(s, t, dim=-1)).mean()


def attention_map(features: torch.Tensor, mask: torch.Tensor | None = None, p: float = 2) -> torch.Tensor:
    """Activation-based spatial attention map (Zagoruyko & Komodakis 2017, §3.1): A = Σ_c |F_c|^p.

    The channels are summed away, one value is left per position:

    * transformer hidden states (B, S, H): channels = H, positions = tokens → (B, S); padded tokens
      (``mask`` = 0) are set to 0;
    * CNN feature maps (B, C, H, W): channels = C, positions = spatial → (B, H·W) (no mask).

    Not normalised here (see ``attention_transfer``). Returned in fp32.
    """
    if p <= 0:
        raise ValueError(f"p must be > 0, got {p}")
    x = features.float().abs().pow(p)
    if x.dim() == 3:
        amap = x.sum(dim=-1)  # (B, S)
        if mask is not None:
            keep = _bool_mask(mask, features)
            amap = torch.where(keep, amap, torch.zeros_like(amap))
        return amap
    if x.dim() == 4:
        if mask is not None:
            raise ValueError(f"a token mask does not apply to 4-D feature maps of shape {tuple(features.shape)}")
        return x.sum(dim=1).flatten(1)  # (B, H·W)
    raise ValueError(f"attention_map expects (B, S, H) or (B, C, H, W) features, got shape {tuple(features.shape)}")


def attention_transfer(
    student: torch.Tensor,
    teacher: torch.Tensor,
    mask: torch.Tensor | None = None,
    p: float = 2,
) -> torch.Tensor:
    """Attention transfer for one mapped layer pair (Zagoruyko & Komodakis 2017, eq. 2), mean over the batch.

        L = (1/B) Σ_b ‖ A_s,b / ‖A_s,b‖₂ − A_t,b / ‖A_t,b‖₂ ‖₂,   A = attention_map(F, mask, p)

    with A the vectorised attention map of each example (one value per token or per spatial position).
    The paper sums this over the mapped layers, L = Σ_l ‖ A_s/‖A_s‖₂ − A_t/‖A_t‖₂ ‖₂ (with a weight β/2);
    the caller sums over layers. The norm is not squared, as in the paper; note that the authors' code
    (szagoruyko/attention-transfer, ``at_loss``) uses the squared mean ``(at(x) − at(y)).pow(2).mean()``
    instead, which is smaller by a factor that depends on the number of positions.

    Because each map is L2-normalised per example (eps-safe, via ``F.normalize``), the loss is scale
    invariant: multiplying either input by a positive constant does not change it. Widths may differ
    (the channel sum removes them); the positions (tokens, or H×W) and the batch size must match.

    student: (B, S, H_s), teacher: (B, S, H_t) with optional ``mask`` (B, S); or (B, C_s, H, W) and
    (B, C_t, H, W).
    """
    if student.dim() != teacher.dim() or student.dim() not in (3, 4):
        raise ValueError(
            f"attention transfer needs two (B, S, H) or two (B, C, H, W) tensors, got {tuple(student.shape)} "
            f"vs {tuple(teacher.shape)}"
        )
    same_positions = student.shape[0] == teacher.shape[0] and student.shape[2:] == teacher.shape[2:]
    if student.dim() == 3:
        same_positions = student.shape[:2] == teacher.shape[:2]
    if not same_positions:
        raise ValueError(
            f"student and teacher differ in batch size or positions: {tuple(student.shape)} vs "
            f"{tuple(teacher.shape)}; attention transfer needs the same positions (tokens, or H×W); "
            "only the widths may differ."
        )
    a_s = F.normalize(attention_map(student, mask, p), p=2.0, dim=1)
    a_t = F.normalize(attention_map(teacher, mask, p), p=2.0, dim=1)
    return torch.linalg.vector_norm(a_s - a_t, ord=2, dim=1).mean()


def normalized_mse(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Patient-KD loss on [CLS] vectors (Sun et al. 2019, eq. 3), mean over the batch.

        L = (1/B) Σ_b ‖ s_b / ‖s_b‖₂ − t_b / ‖t_b‖₂ ‖²₂

    The paper sums this over the training examples and the mapped layers; the caller sums over layers.
    Scale invariant (each vector is L2-normalised, eps-safe via ``F.normalize``); ranges over [0, 4].

    student, teacher: (B, H) with equal widths.
    """
    _check_same_shape(student, teacher, "[CLS] vectors", "PKD needs equal hidden sizes")
    if student.dim() != 2:
        raise ValueError(f"normalized_mse expects (B, H) [CLS] vectors, got shape {tuple(student.shape)}")
    s = F.normalize(student.float(), p=2.0, dim=1)
    t = F.normalize(teacher.float(), p=2.0, dim=1)
    return (s - t).pow(2).sum(dim=1).mean()


def attention_mse(
    student_attn: torch.Tensor,
    teacher_attn: torch.Tensor,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """TinyBERT's attention-based loss (Jiao et al. 2020, eq. 7): MSE of the attention matrices, mean over heads.

        L = (1/h) Σ_{i=1..h} MSE(A_i^S, A_i^T)
          = Σ_{b,i} Σ_{valid (q,k)} (a^S_{b,i,q,k} − a^T_{b,i,q,k})² / (h · Σ_b n_pairs,b)

    where a (query q, key k) pair is valid when both positions are real tokens (all pairs without a mask),
    pooled over the batch. This is the ``method.attention_target=probs`` variant, on attention probabilities
    as ``transformers`` returns them; the paper's own target, the pre-softmax scores, is
    ``attention_score_mse``.

    student_attn, teacher_attn: (B, heads, S, S) with equal head counts and sequence lengths;
    ``mask`` (B, S).
    """
    if student_attn.shape != teacher_attn.shape:
        raise ValueError(
            f"student and teacher attention differ in shape: {tuple(student_attn.shape)} vs "
            f"{tuple(teacher_attn.shape)}; the attention loss needs the same batch, head count and sequence length."
        )
    if student_attn.dim() != 4 or student_attn.shape[-1] != student_attn.shape[-2]:
        raise ValueError(f"attention_mse expects (B, heads, S, S) attention, got shape {tuple(student_attn.shape)}")
    sq = (student_attn.float() - teacher_attn.float()).pow(2)  # (B, h, S, S)
    if mask is None:
        return sq.mean()
    keep = _bool_mask(mask, student_attn, (student_attn.shape[0], student_attn.shape[2]))  # (B, S)
    pairs = (keep.unsqueeze(2) & keep.unsqueeze(1)).unsqueeze(1).expand_as(sq)  # (B, h, S, S)
    valid = sq[pairs]
    if valid.numel() == 0:
        return student_attn.float().sum() * 0.0  # keeps the graph; no real tokens, no loss
    return valid.mean()


def attention_scores(query: torch.Tensor, key: torch.Tensor, heads: int) -> torch.Tensor:
    """Unnormalised self-attention scores per head, the A of TinyBERT (Jiao et al. 2020, eq. 6-7):

        A_h = Q_h K_hᵀ / √d,   d = H / heads,   Q_h, K_h the h-th d-wide slice of the projections

    i.e. the attention logits before the padding mask is added and before the softmax. ``query`` and
    ``key`` are the outputs of the layer's query/key projections (captured by forward hooks), so no eager
    attention is needed. This holds for layouts that apply nothing between the projection and QKᵀ (BERT,
    RoBERTa, DistilBERT); rotary or relative-position models transform Q/K after the projection.

    query, key: (B, S, H) → (B, heads, S, S) in fp32.
    """
    if query.dim() != 3 or query.shape != key.shape:
        raise ValueError(
            f"attention_scores expects query and key of one (B, S, H) shape, got "
            f"{tuple(query.shape)} and {tuple(key.shape)}"
        )
    batch, seq, hidden = query.shape
    if heads <= 0 or hidden % heads:
        raise ValueError(f"hidden size {hidden} does not split into {heads} heads")
    d = hidden // heads
    q = query.float().reshape(batch, seq, heads, d).transpose(1, 2)  # (B, heads, S, d)
    k = key.float().reshape(batch, seq, heads, d).transpose(1, 2)
    return q @ k.transpose(-1, -2) / math.sqrt(d)


def attention_score_mse(
    s_query: torch.Tensor,
    s_key: torch.Tensor,
    t_query: torch.Tensor,
    t_key: torch.Tensor,
    heads: int,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """TinyBERT's attention-based loss on the unnormalised scores (Jiao et al. 2020, eq. 7):

        L = (1/h) Σ_{i=1..h} MSE(A_i^S, A_i^T),   A_i = Q_i K_iᵀ / √d  (``attention_scores``)
          = Σ_{b,i} Σ_{valid (q,k)} (a^S_{b,i,q,k} − a^T_{b,i,q,k})² / (h · Σ_b n_pairs,b)

    The paper fits the scores rather than the softmax output: it reports faster convergence and better
    results (§3.1). A (query q, key k) pair is valid when both are real tokens. The paper's code adds the
    padding mask (−10000) to the scores and then replaces entries ≤ −100 by 0, so padded keys count as 0
    on both sides while padded query rows still count; here every pair with a padded query or key is left
    out of the mean, and the mask is never added to the scores, so no −inf or −1e4 enters the square.

    Each model is split into the same ``heads`` with its own head width d, so the widths may differ
    (the head counts must not). s_query, s_key: (B, S, Hs) · t_query, t_key: (B, S, Ht) · mask (B, S).
    """
    if s_query.shape[:2] != t_query.shape[:2]:
        raise ValueError(
            f"student and teacher projections differ in batch or sequence: {tuple(s_query.shape)} "
            f"vs {tuple(t_query.shape)}"
        )
    sq = (attention_scores(s_query, s_key, heads) - attention_scores(t_query, t_key, heads)).pow(2)
    if mask is None:
        return sq.mean()
    keep = _bool_mask(mask, s_query).float()  # (B, S)
    pairs = keep.unsqueeze(2) * keep.unsqueeze(1)  # (B, S, S): 1 where query and key are both real
    # a product with the 0/1 pair mask, not a gather: padded entries are finite scores times 0. No real
    # tokens at all gives 0 (the clamp), with the graph kept.
    return (sq * pairs.unsqueeze(1)).sum() / (pairs.sum().clamp_min(1.0) * sq.shape[1])


def _check_same_shape(student: torch.Tensor, teacher: torch.Tensor, what: str, hint: str) -> None:
    if student.shape != teacher.shape:
        raise ValueError(
            f"student and teacher {what} differ in shape: {tuple(student.shape)} vs {tuple(teacher.shape)}; {hint}."
        )


def _bool_mask(mask: torch.Tensor, like: torch.Tensor, batch_seq: tuple[int, int] | None = None) -> torch.Tensor:
    """The (B, S) token mask as bool, checked against the tensor it masks ((B, S, ...) unless ``batch_seq``)."""
    expected = tuple(like.shape[:2]) if batch_seq is None else batch_seq
    if tuple(mask.shape) != expected:
        raise ValueError(
            f"mask of shape {tuple(mask.shape)} does not match inputs of shape {tuple(like.shape)}; "
            f"expected (B, S) = {expected} with 1 = real token."
        )
    return mask.bool()


def _valid_tokens(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """(B, S, H) → (n_valid, H): the rows of the real tokens (all B·S rows without a mask)."""
    if mask is None:
        return x.reshape(-1, x.shape[-1])
    return x[_bool_mask(mask, x)]
