"""Batch mixing and noising for online augmentation: pure tensor code, no models.

Mixing pairs each example i with perm(i) of the same batch and a weight λ_i ∈ [0.5, 1]:

- MixUp (Zhang et al. 2018, "mixup: Beyond Empirical Risk Minimization"), on input embeddings as MixKD does
  for text (Liang et al., ICLR 2021, "MixKD: Towards Efficient Distillation of Large-scale Language Models"):
      e_i ← λ_i·e_i + (1 − λ_i)·e_perm(i),   attention mask ← mask_i ∨ mask_perm(i),   λ_i ~ Beta(α, α)
- CutMix (Yun et al. 2019, "CutMix: Regularization Strategy to Train Strong Classifiers with Localizable
  Features"): a box of area ≈ (1 − λ_i)·H·W of image perm(i) pasted into image i; for text, a span of
  round((1 − λ_i)·n_i) real tokens. The other example's weight is then the share actually pasted.
- Targets mix by the other example's weight w_i (1 − λ_i, or the pasted share):
      hard labels:  (1 − w_i)·CE(z_i, y_i) + w_i·CE(z_i, y_perm(i))
      soft targets: log p̃_i = log((1 − w_i)·softmax(z_i) + w_i·softmax(z_perm(i)))

λ is folded to max(λ, 1 − λ) (the MixKD convention), so each mixed example is dominated by its own input and
keeps its own identity (position, length); rows with λ = 1 stay clean (only a ``share`` of the batch is mixed).

Consistency training (UDA, Xie et al. 2020, "Unsupervised Data Augmentation for Consistency Training"):
a noised view x′ (tokens masked or replaced at rate p) and the term
    T²·KL(softmax(z_t(x)/T) ‖ softmax(z_s(x′)/T)),
the teacher side detached, with Hinton's T² scaling (``distillkit.losses.logits.soft_target_kl``).

All randomness comes from a CPU ``torch.Generator`` argument, so the same generator state gives the same
result on any device; results are moved to the inputs' device. Beta samples come from Gamma samples drawn
by Marsaglia & Tsang (2000) on the generator's normals and uniforms (``torch.distributions`` and
``torch._standard_gamma`` take no generator).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from distillkit.losses import IGNORE_INDEX
from distillkit.losses.logits import soft_target_kl

NOISE_MODES = ("mask", "replace")


@dataclass(frozen=True)
class MixPlan:
    """Who mixes with whom: row i takes λ_i of itself and 1 − λ_i of row perm[i]; λ_i = 1 is a clean row."""

    lam: torch.Tensor  # (B,) float32 in [0.5, 1]
    perm: torch.Tensor  # (B,) long, a permutation of range(B)

    def mix(self, embeds: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """``embeds`` (B, L, H) mixed by this plan (the models' forward calls this: it needs no augment import)."""
        return mix_embeddings(embeds, attention_mask, self)[0]


def _log_gamma(n: int, alpha: float, generator: torch.Generator) -> torch.Tensor:
    """log of n Gamma(α, 1) samples (float64), by Marsaglia & Tsang (2000); α < 1 via G(α+1)·U^(1/α).

    In log space, so a tiny α cannot underflow to 0 (and then give 0/0 in the Beta ratio)."""
    a = alpha + 1.0 if alpha < 1.0 else alpha
    d = a - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)
    out = torch.empty(n, dtype=torch.float64)
    pending = torch.arange(n)
    while pending.numel():  # acceptance rate ≥ 0.95, so a few rounds at most
        x = torch.randn(pending.numel(), generator=generator, dtype=torch.float64)
        log_u = torch.log1p(-torch.rand(pending.numel(), generator=generator, dtype=torch.float64))
        v = (1.0 + c * x) ** 3
        log_v = torch.log(v.clamp_min(torch.finfo(torch.float64).tiny))
        ok = (v > 0) & (log_u < 0.5 * x * x + d - d * v + d * log_v)
        out[pending[ok]] = math.log(d) + log_v[ok]
        pending = pending[~ok]
    if alpha < 1.0:
        out += torch.log1p(-torch.rand(n, generator=generator, dtype=torch.float64)) / alpha
    return out


def sample_beta(n: int, alpha: float, generator: torch.Generator) -> torch.Tensor:
    """n samples of Beta(α, α) (float32, CPU): X / (X + Y) = sigmoid(log X − log Y), X, Y ~ Gamma(α, 1)."""
    if alpha <= 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    log_x = _log_gamma(n, alpha, generator)
    log_y = _log_gamma(n, alpha, generator)
    return torch.sigmoid(log_x - log_y).float()


def sample_mix(batch_size: int, alpha: float, share: float, generator: torch.Generator) -> MixPlan:
    """A random pairing and weights: round(share·B) random rows get λ = max(b, 1 − b), b ~ Beta(α, α); the
    rest, and any row paired with itself (perm[i] == i), get λ = 1. ``round`` is Python's (half to even).

    The plan is on the CPU; move ``lam`` and ``perm`` to the batch's device."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"share must be in [0, 1], got {share}")
    perm = torch.randperm(batch_size, generator=generator)
    chosen = torch.randperm(batch_size, generator=generator)[: round(share * batch_size)]
    b = sample_beta(chosen.numel(), alpha, generator)
    lam = torch.ones(batch_size)
    lam[chosen] = torch.maximum(b, 1.0 - b)
    lam[perm == torch.arange(batch_size)] = 1.0
    return MixPlan(lam, perm)


def mix_embeddings(
    embeds: torch.Tensor, attention_mask: torch.Tensor, plan: MixPlan
) -> tuple[torch.Tensor, torch.Tensor]:
    """MixUp on input embeddings (B, S, H): e_i ← λ_i·e_i + (1 − λ_i)·e_perm(i) and, for mixed rows
    (λ_i < 1), mask_i ← max(mask_i, mask_perm(i)); clean rows are returned exactly as they were."""
    lam = plan.lam.to(embeds.device, torch.float32)
    perm = plan.perm.to(embeds.device)
    w = lam[:, None, None]
    mixed = (w * embeds.float() + (1.0 - w) * embeds[perm].float()).to(embeds.dtype)
    rows = lam < 1
    embeds = torch.where(rows[:, None, None], mixed, embeds)
    mask = torch.where(rows[:, None], torch.maximum(attention_mask, attention_mask[perm]), attention_mask)
    return embeds, mask


def _id_tensor(ids: set[int] | torch.Tensor, device: torch.device) -> torch.Tensor:
    if isinstance(ids, torch.Tensor):
        return ids.to(device, torch.long)
    return torch.tensor(sorted(ids), dtype=torch.long, device=device)


def _real_tokens(input_ids: torch.Tensor, attention_mask: torch.Tensor, special: torch.Tensor) -> torch.Tensor:
    """(B, S) bool: attended positions whose id is not a special token ([CLS], [SEP], [PAD], …)."""
    return attention_mask.bool() & ~torch.isin(input_ids, special.to(input_ids.dtype))


def _span_start(n: int, length: int, generator: torch.Generator) -> int:
    return int(torch.randint(0, n - length + 1, (1,), generator=generator))


def cutmix_tokens(
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    plan: MixPlan,
    generator: torch.Generator,
    special_ids: set[int] | torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """CutMix for token ids (B, S): in each mixed row i (λ_i < 1), a random run of L consecutive real tokens
    (specials and padding skipped, never replaced) takes a random run of L real tokens of row j = perm[i],
    L = round((1 − λ_i)·n_i) clipped to [1, min(n_i, n_j)], n = a row's real non-special token count.

    Returns (ids, attention_mask (unchanged), share (B,) float32 = L / n_i, 0 for clean rows). Rows are
    handled on the CPU in order, drawing the two span starts from ``generator``."""
    device = input_ids.device
    source = input_ids.cpu()
    ids = source.clone()
    real = _real_tokens(source, attention_mask.cpu(), _id_tensor(special_ids, source.device))
    lam, perm = plan.lam.cpu().tolist(), plan.perm.cpu().tolist()
    share = torch.zeros(len(lam))
    for i, (lam_i, j) in enumerate(zip(lam, perm)):
        pos_i, pos_j = real[i].nonzero().squeeze(1), real[j].nonzero().squeeze(1)
        n_i, n_j = pos_i.numel(), pos_j.numel()
        if lam_i >= 1.0 or min(n_i, n_j) == 0:
            continue
        length = min(max(round((1.0 - lam_i) * n_i), 1), n_i, n_j)
        start_i, start_j = _span_start(n_i, length, generator), _span_start(n_j, length, generator)
        ids[i, pos_i[start_i : start_i + length]] = source[j, pos_j[start_j : start_j + length]]
        share[i] = length / n_i
    return ids.to(device), attention_mask, share.to(device)


def _box(size: int, cut: int, generator: torch.Generator) -> tuple[int, int]:
    """[lo, hi) of a cut of length ``cut`` centred at a random position in [0, size), clipped to the image."""
    centre = int(torch.randint(0, size, (1,), generator=generator))
    lo = centre - cut // 2
    return max(lo, 0), min(lo + cut, size)


def cutmix_images(x: torch.Tensor, plan: MixPlan, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """CutMix (Yun et al. 2019, eq. 1-2) for images (B, C, H, W): in each mixed row i, the box of
    round(H·√(1 − λ_i)) × round(W·√(1 − λ_i)) at a uniformly random centre, clipped to the image, takes the
    same box of image perm[i]. Returns (x, share (B,) float32 = clipped box area / (H·W), 0 for clean rows)."""
    height, width = x.shape[-2:]
    out = x.clone()
    lam, perm = plan.lam.cpu().tolist(), plan.perm.cpu().tolist()
    share = torch.zeros(len(lam))
    for i, (lam_i, j) in enumerate(zip(lam, perm)):
        if lam_i >= 1.0:
            continue
        side = math.sqrt(1.0 - lam_i)
        y0, y1 = _box(height, round(height * side), generator)
        x0, x1 = _box(width, round(width * side), generator)
        out[i, :, y0:y1, x0:x1] = x[j, :, y0:y1, x0:x1]
        share[i] = (y1 - y0) * (x1 - x0) / (height * width)
    return out, share.to(x.device)


def mix_logits(logits: torch.Tensor, weight_other: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    """log((1 − w_i)·softmax(z_i) + w_i·softmax(z_perm(i))) for logits (B, C), in fp32: the logsumexp of the
    two log-softmaxes plus log weights, so it is finite and stable; w_i = 0 gives exactly log_softmax(z_i).
    A log-distribution, so it serves as logits downstream (softmax of it is the mixed distribution)."""
    log_p = F.log_softmax(logits.float(), dim=-1)
    w = weight_other.to(log_p.device, torch.float32)[:, None]
    own = torch.log1p(-w) + log_p
    other = torch.log(w) + log_p[perm.to(log_p.device)]
    return torch.logsumexp(torch.stack([own, other]), dim=0)


def mixed_cross_entropy(
    logits: torch.Tensor, labels: torch.Tensor, weight_other: torch.Tensor, perm: torch.Tensor
) -> torch.Tensor:
    """Σ_i [(1 − w_i)·CE(z_i, y_i) + w_i·CE(z_i, y_perm(i))] / Σ_i [(1 − w_i)·[y_i labeled] + w_i·[y_perm(i)
    labeled]], in fp32. An ``IGNORE_INDEX`` target contributes nothing, so w = 0 gives
    F.cross_entropy(..., ignore_index=-100); no labeled target at all gives 0 (keeping the graph)."""
    log_p = F.log_softmax(logits.float(), dim=-1)
    w = weight_other.to(log_p.device, torch.float32)
    other_labels = labels[perm.to(labels.device)]
    own_ce = F.nll_loss(log_p, labels, ignore_index=IGNORE_INDEX, reduction="none")
    other_ce = F.nll_loss(log_p, other_labels, ignore_index=IGNORE_INDEX, reduction="none")
    own_w = (1.0 - w) * (labels != IGNORE_INDEX)
    other_w = w * (other_labels != IGNORE_INDEX)
    total = (own_w + other_w).sum()
    return (own_w * own_ce + other_w * other_ce).sum() / total.clamp_min(torch.finfo(torch.float32).tiny)


def _replacement_ids(mode: str, mask_id: int | None, vocab_size: int | None, special: torch.Tensor) -> torch.Tensor:
    """The ids a noised token may become: [mask_id] ("mask"), or every non-special id below vocab_size."""
    if mode not in NOISE_MODES:
        raise ValueError(f"noise mode must be one of {NOISE_MODES}, got {mode!r}")
    if mode == "mask":
        if mask_id is None:
            raise ValueError('noise mode "mask" needs mask_id (the tokenizer has no mask token)')
        return torch.tensor([mask_id])
    if vocab_size is None:
        raise ValueError('noise mode "replace" needs vocab_size')
    vocab = torch.arange(vocab_size)
    allowed = vocab[~torch.isin(vocab, special)]
    if allowed.numel() == 0:
        raise ValueError(f"no non-special id below vocab_size={vocab_size} to replace tokens with")
    return allowed


def token_noise(
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    p: float,
    mode: str,
    generator: torch.Generator,
    special_ids: set[int] | torch.Tensor,
    mask_id: int | None = None,
    vocab_size: int | None = None,
) -> torch.Tensor:
    """A noised view for consistency training: each real non-special token independently with probability p
    becomes ``mask_id`` ("mask") or a uniform random non-special id in [0, vocab_size) ("replace"; it may
    draw the token's own id). Special tokens and padding never change."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be in [0, 1], got {p}")
    special = _id_tensor(special_ids, torch.device("cpu"))
    choices = _replacement_ids(mode, mask_id, vocab_size, special)
    hit = torch.rand(input_ids.shape, generator=generator) < p
    picks = choices[torch.randint(0, choices.numel(), input_ids.shape, generator=generator)]
    hit = hit.to(input_ids.device) & _real_tokens(input_ids, attention_mask, special.to(input_ids.device))
    return torch.where(hit, picks.to(input_ids.device, input_ids.dtype), input_ids)


def consistency_kl(teacher_logits: torch.Tensor, student_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """T²·KL(softmax(z_t/T) ‖ softmax(z_s/T)), batch mean, the teacher detached (UDA's consistency term with
    Hinton's T² scaling); 0 when the logits are equal."""
    return soft_target_kl(student_logits, teacher_logits.detach(), temperature)
