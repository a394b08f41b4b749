"""Token-level losses for distilling causal language models (GKD, Agarwal et al. 2024; MiniLLM, Gu et al. 2024).

All functions are pure: tensors in, a 0-dim fp32 tensor out (bf16/fp16 logits are upcast to fp32 row by row).
Conventions shared by every loss here:

* logits are (B, S, V) (any (..., V) works) and ``mask`` is (B, S) (resp. (...)), bool or 1/0: true for the
  response tokens that are distilled, false for prompt and padding. The logits at the false positions are
  never read, so garbage there (even inf or NaN) changes neither the loss nor the gradients;
* the per-token divergence is summed over the vocabulary and averaged over the true positions of ``mask``;
  with no true position the loss is an exact 0 that keeps the graph (a zero gradient, never NaN);
* p = softmax(z / T); with ``scale_by_t2`` (the default) the result is multiplied by T² (Hinton et al. 2015):
  the gradient of the un-scaled divergence w.r.t. z_s carries a 1/T factor and shrinks like 1/T² for large T,
  and T² keeps its magnitude independent of T (exactly as ``logits.soft_target_kl``);
* 0 · log 0 = 0: vocabulary entries of zero probability (logit −inf) contribute nothing, to the loss and to the
  gradients, also when they are −inf in both the student and the teacher (a masked vocabulary): no loss here
  returns a NaN gradient for them;
* ``chunk_size``: the rows of the true positions are gathered first (padding costs nothing), then the
  per-token terms are computed ``chunk_size`` rows at a time and summed. When a gradient is needed each chunk is
  recomputed in the backward pass (``torch.utils.checkpoint``), so the fp32 (rows, V) temporaries of only one
  chunk are alive at a time; the gradient w.r.t. the logits is full size as always. The value and the gradients
  equal the unchunked ones up to floating-point summation order.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from distillkit.losses import IGNORE_INDEX


def forward_kl(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    mask: torch.Tensor,
    temperature: float = 1.0,
    scale_by_t2: bool = True,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """Forward KL, T² · mean over the masked tokens of KL(p_t ‖ p_s) (mode covering; GKD's β = 0, SeqKD/SFT on
    teacher soft labels).

        KL(p_t ‖ p_s) = Σ_v p_t,v (log p_t,v − log p_s,v),   p_t = softmax(z_t/T),  p_s = softmax(z_s/T)

    student_logits, teacher_logits: (B, S, V) · mask: (B, S), true = response token. Returns a 0-dim tensor.
    """
    return _full_vocab_loss(
        student_logits,
        teacher_logits,
        mask,
        temperature,
        scale_by_t2,
        chunk_size,
        lambda log_s, log_t: _kl_rows(log_t, log_s),
    )


def reverse_kl(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    mask: torch.Tensor,
    temperature: float = 1.0,
    scale_by_t2: bool = True,
    chunk_size: int | None = None,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Reverse KL, T² · mean over the masked tokens of KL(p_s ‖ p_t) (mode seeking; MiniLLM's objective per token,
    GKD's β = 1).

        KL(p_s ‖ p_t) = Σ_v p_s,v (log p_s,v − log p_t,v),   p = softmax(z/T)

    ``weights`` (B, S), optional: each token's KL multiplied by its weight before the mean (still divided by the
    number of masked tokens, not by the weights' sum); MiniLLM's importance weights (``losses/minillm.py``). They
    are used as given: pass them detached unless their gradient is wanted.

    student_logits, teacher_logits: (B, S, V) · mask: (B, S), true = response token. Returns a 0-dim tensor.
    """
    return _full_vocab_loss(
        student_logits,
        teacher_logits,
        mask,
        temperature,
        scale_by_t2,
        chunk_size,
        lambda log_s, log_t: _kl_rows(log_s, log_t),
        weights,
    )


def generalized_jsd(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    mask: torch.Tensor,
    beta: float = 0.5,
    temperature: float = 1.0,
    scale_by_t2: bool = True,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """Generalized JSD of GKD (Agarwal et al. 2024, eq. 1), T² · mean over the masked tokens, in TRL's convention
    (``GKDTrainer.generalized_jsd_loss``, trl/trainer/gkd_trainer.py), with P = teacher and Q = student:

        m = β·p_t + (1 − β)·p_s,   JSD(β) = β·KL(p_t ‖ m) + (1 − β)·KL(p_s ‖ m)      for 0 < β < 1
        JSD(0) := KL(p_t ‖ p_s) (forward KL),   JSD(1) := KL(p_s ‖ p_t) (reverse KL)

    β = 0.5 is the ordinary Jensen-Shannon divergence (≤ log 2 at T = 1, unscaled); in general
    0 ≤ JSD(β) ≤ H(β) = −β log β − (1−β) log(1−β). The endpoints are definitions, as in TRL: the mixture formula
    degenerates there (JSD(β) ≈ β·KL(p_t ‖ p_s) → 0 as β → 0, and ≈ (1−β)·KL(p_s ‖ p_t) as β → 1), so the loss
    jumps at β ∈ {0, 1}; those two values return ``forward_kl`` / ``reverse_kl`` exactly. log m is computed as
    logaddexp(log p_t + log β, log p_s + log(1 − β)), never as log of a sum of probabilities.
    TRL applies no T² factor: pass ``scale_by_t2=False`` to reproduce it.

    student_logits, teacher_logits: (B, S, V) · mask: (B, S), true = response token. Returns a 0-dim tensor.
    """
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"beta must be in [0, 1], got {beta}")
    return _full_vocab_loss(
        student_logits,
        teacher_logits,
        mask,
        temperature,
        scale_by_t2,
        chunk_size,
        lambda log_s, log_t: _gjsd_rows(log_s, log_t, float(beta)),
    )


def topk_targets(
    teacher_logits: torch.Tensor, k: int, temperature: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The k most likely teacher tokens and the mass of the rest, for a compact cache of teacher outputs.

        log p_t = log_softmax(z_t / T);  (logprobs, indices) = topk(log p_t, k)
        tail_logprob = log(1 − Σ_{kept} p_t,v) = logsumexp of log p_t over the V − k tokens not kept

    The tail is the logsumexp of the left-out log-probs, not log1p(−exp(logsumexp(kept))): the two are equal,
    but the latter cancels catastrophically in fp32 when the kept mass is ≈ 1 (a peaked teacher). With k = V the
    tail is exactly −inf (mass 0; ``forward_kl_topk`` handles it without NaN).

    teacher_logits: (..., V). Returns indices (..., k) int64, logprobs (..., k) fp32 sorted in decreasing order,
    tail_logprob (...) fp32.
    """
    vocab = teacher_logits.shape[-1]
    if not 1 <= k <= vocab:
        raise ValueError(
            f"k must be in [1, V] = [1, {vocab}], got {k} for teacher logits of shape {tuple(teacher_logits.shape)}"
        )
    _check_temperature(temperature)
    log_p = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    logprobs, indices = log_p.topk(k, dim=-1)
    return indices, logprobs, _tail_logprob(log_p, indices)


def forward_kl_topk(
    student_logits: torch.Tensor,
    indices: torch.Tensor,
    logprobs: torch.Tensor,
    tail_logprob: torch.Tensor,
    mask: torch.Tensor,
    temperature: float = 1.0,
    scale_by_t2: bool = True,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """Forward KL against cached top-k teacher targets: KL over k + 1 buckets, the k kept tokens and one tail.

        KL_k = Σ_{v kept} p_t,v (log p_t,v − log p_s,v) + p_t,tail (log p_t,tail − log p_s,tail)
        log p_s,tail = log(1 − Σ_{v kept} p_s,v) = logsumexp of log p_s over the tokens not kept

    with p_s = softmax(z_s / T); T must be the temperature given to ``topk_targets``. T² scaling, masking,
    reduction and chunking as ``forward_kl``. With k = V (tail mass 0) this is exactly ``forward_kl``. For k < V
    it is an approximation from below: merging the tail into one bucket can only lose information, and the chain
    rule of KL gives the gap exactly, KL − KL_k = p_t,tail · KL(p_t(·|tail) ‖ p_s(·|tail)) ≥ 0 per token, so the
    error is small when the teacher's tail mass is small.

    student_logits: (B, S, V) · indices, logprobs: (B, S, k) · tail_logprob: (B, S) · mask: (B, S).
    """
    lead, vocab = tuple(student_logits.shape[:-1]), student_logits.shape[-1]
    if indices.shape != logprobs.shape or tuple(indices.shape[:-1]) != lead or tuple(tail_logprob.shape) != lead:
        raise ValueError(
            f"top-k targets do not match student logits of shape {tuple(student_logits.shape)}: indices "
            f"{tuple(indices.shape)}, logprobs {tuple(logprobs.shape)}, tail_logprob {tuple(tail_logprob.shape)}; "
            f"expected (..., k), (..., k) and {lead}."
        )
    if indices.dtype.is_floating_point or indices.dtype == torch.bool:
        raise ValueError(f"indices must be an integer tensor, got {indices.dtype}")
    if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= vocab):
        raise ValueError(
            f"indices must be in [0, {vocab}) for a vocabulary of {vocab}, "
            f"got [{int(indices.min())}, {int(indices.max())}]"
        )
    _check_temperature(temperature)

    def rows(z_s: torch.Tensor, idx: torch.Tensor, lp: torch.Tensor, tail: torch.Tensor) -> torch.Tensor:
        log_s = F.log_softmax(z_s.float() / temperature, dim=-1)
        log_t_buckets = torch.cat([lp.float(), tail.float()[:, None]], dim=-1)
        log_s_buckets = torch.cat([log_s.gather(-1, idx.long()), _tail_logprob(log_s, idx.long())[:, None]], dim=-1)
        return _kl_rows(log_t_buckets, log_s_buckets)

    k = indices.shape[-1]
    flat = [
        student_logits.reshape(-1, vocab),
        indices.reshape(-1, k),
        logprobs.reshape(-1, k),
        tail_logprob.reshape(-1),
    ]
    return _masked_mean(flat, _token_mask(mask, student_logits), temperature, scale_by_t2, chunk_size, rows)


# ------------------------------------------------------------------------------------------------------- internals


def _kl_rows(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """Σ_v p_v (log p_v − log q_v) per row (last dim), with 0 · log 0 = 0. (n, V) log-probs → (n,).

    The ``where`` sits on the log-ratio, not on the product, so a −inf in log p gives a zero gradient, not NaN."""
    p = log_p.exp()
    return (p * torch.where(p > 0, log_p - log_q, torch.zeros_like(log_p))).sum(dim=-1)


def _gjsd_rows(log_s: torch.Tensor, log_t: torch.Tensor, beta: float) -> torch.Tensor:
    """Per-row generalized JSD (see ``generalized_jsd``), with the endpoints β ∈ {0, 1} as forward / reverse KL."""
    if beta == 0.0:
        return _kl_rows(log_t, log_s)
    if beta == 1.0:
        return _kl_rows(log_s, log_t)
    # An entry of probability 0 under both (−inf in both, e.g. a masked vocabulary) would make log m = −inf, and
    # logaddexp's backward there is exp(−inf − (−inf)) = NaN, which reaches every logit of the row through
    # log_softmax. Clamped to the dtype's lowest finite value, log m stays finite and exp of it is still 0, so the
    # loss is unchanged (those entries weigh 0 in both KL terms) and their gradient is 0; any finite log-prob is
    # above the clamp and unchanged.
    floor = torch.finfo(log_s.dtype).min
    log_s, log_t = log_s.clamp_min(floor), log_t.clamp_min(floor)
    log_m = torch.logaddexp(log_t + math.log(beta), log_s + math.log1p(-beta))
    return beta * _kl_rows(log_t, log_m) + (1.0 - beta) * _kl_rows(log_s, log_m)


def next_token_loss(logits: torch.Tensor, labels: torch.Tensor, chunk_size: int | None = None) -> torch.Tensor:
    """NTP (SFT's loss): the mean over response tokens of −log p_s(y_t | y_<t, x), in fp32.

        NTP = −(1/N) · Σ_{t: y_t ≠ −100} log softmax(z_{t−1})[y_t]

    ``logits`` (B, S, V) and ``labels`` (B, S) are aligned as a causal LM's forward and HF's labels are: the logits
    at position t−1 predict the token at t, so the last position's logits and the first label are never read.
    ``labels`` is −100 on prompt and padding. No response token: an exact 0 that keeps the graph."""
    shifted, targets = logits[:, :-1], labels[:, 1:]
    keep = targets != IGNORE_INDEX
    vocab = shifted.shape[-1]
    flat_targets = targets.clamp_min(0).reshape(-1, 1).to(shifted.device)

    def rows(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return -F.log_softmax(z.float(), dim=-1).gather(-1, y).squeeze(-1)

    return _masked_mean([shifted.reshape(-1, vocab), flat_targets], keep, 1.0, False, chunk_size, rows)


def _tail_logprob(log_p: torch.Tensor, kept: torch.Tensor) -> torch.Tensor:
    """log of the probability mass outside ``kept``: logsumexp over the entries not kept (−inf when all are, or
    when every entry left out is −inf, e.g. a masked vocabulary).

    A row with no mass left is computed on zeros and set to −inf afterwards: logsumexp's backward on a row of only
    −inf is exp(−inf − (−inf)) = NaN, which would reach every logit of the row through log_softmax."""
    rest = log_p.scatter(-1, kept, float("-inf"))
    empty = torch.isneginf(rest).all(dim=-1)
    tail = torch.where(empty[..., None], torch.zeros_like(rest), rest).logsumexp(dim=-1)
    return torch.where(empty, torch.full_like(tail, float("-inf")), tail)


def _full_vocab_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    mask: torch.Tensor,
    temperature: float,
    scale_by_t2: bool,
    chunk_size: int | None,
    divergence: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Checks, then the masked mean of ``divergence(log p_s, log p_t)`` over (rows, V) tempered log-probs, each
    row multiplied by its entry of ``weights`` (same shape as ``mask``) when given."""
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"student and teacher logits differ in shape: {tuple(student_logits.shape)} vs "
            f"{tuple(teacher_logits.shape)}; token-level distillation needs the same (B, S) positions and the "
            "same vocabulary (V)."
        )
    _check_temperature(temperature)
    keep = _token_mask(mask, student_logits)
    if weights is not None and tuple(weights.shape) != tuple(keep.shape):
        raise ValueError(f"weights of shape {tuple(weights.shape)} do not match the mask's {tuple(keep.shape)}")

    def rows(z_s: torch.Tensor, z_t: torch.Tensor, *w: torch.Tensor) -> torch.Tensor:
        log_s = F.log_softmax(z_s.float() / temperature, dim=-1)
        log_t = F.log_softmax(z_t.float() / temperature, dim=-1)
        per_row = divergence(log_s, log_t)
        return per_row * w[0].float() if w else per_row

    vocab = student_logits.shape[-1]
    flat = [student_logits.reshape(-1, vocab), teacher_logits.reshape(-1, vocab)]
    if weights is not None:
        flat.append(weights.to(student_logits.device).reshape(-1))
    return _masked_mean(flat, keep, temperature, scale_by_t2, chunk_size, rows)


def _masked_mean(
    flat: Sequence[torch.Tensor],
    keep: torch.Tensor,
    temperature: float,
    scale_by_t2: bool,
    chunk_size: int | None,
    rows: Callable[..., torch.Tensor],
) -> torch.Tensor:
    """(T² ·) mean over the kept rows of ``rows(*row_slices)``; ``flat`` are (B·S, ...) tensors, ``keep`` (B, S).

    The kept row ids are gathered once, then ``rows`` runs on ``chunk_size`` of them at a time (all at once when
    None), each chunk under activation checkpointing when a gradient is needed."""
    if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1):
        raise ValueError(f"chunk_size must be a positive int or None, got {chunk_size!r}")
    ids = keep.reshape(-1).nonzero().squeeze(1)
    n = ids.numel()
    if n == 0:
        return flat[0][:0].float().sum()  # exactly 0, keeps the graph, gradient 0; no response token, no loss

    def chunk_sum(*args: torch.Tensor) -> torch.Tensor:
        *tensors, chunk_ids = args
        return rows(*(t.index_select(0, chunk_ids) for t in tensors)).sum()

    step = n if chunk_size is None else chunk_size
    use_checkpoint = step < n and torch.is_grad_enabled() and any(t.requires_grad for t in flat)
    total = flat[0].new_zeros((), dtype=torch.float32)
    for start in range(0, n, step):
        chunk_ids = ids[start : start + step]
        if use_checkpoint:
            total = total + checkpoint(chunk_sum, *flat, chunk_ids, use_reentrant=False)
        else:
            total = total + chunk_sum(*flat, chunk_ids)
    loss = total / n
    return loss * temperature**2 if scale_by_t2 else loss


def _token_mask(mask: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """The response-token mask as bool, checked against the (..., V) logits it masks (shape (...))."""
    if logits.dim() < 2:
        raise ValueError(f"token losses expect (B, S, V) logits, got shape {tuple(logits.shape)}")
    if tuple(mask.shape) != tuple(logits.shape[:-1]):
        raise ValueError(
            f"mask of shape {tuple(mask.shape)} does not match logits of shape {tuple(logits.shape)}; "
            f"expected {tuple(logits.shape[:-1])} with true = response token."
        )
    return mask.to(device=logits.device) != 0


def _check_temperature(temperature: float) -> None:
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
