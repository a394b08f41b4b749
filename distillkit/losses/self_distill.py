"""Losses and helpers for self-distillation: reverse KL, DINO centering, Noisy Student pseudo-labels,
ensemble (BAN / snapshot) predictions, EMA teachers and PS-KD's progressively refined targets.

Like ``distillkit.losses.logits``: pure functions, tensors in, a scalar tensor out, reduced in fp32 whatever
the input dtype, in log space. Only ``centered_kl`` detaches its teacher (DINO's stop-gradient); elsewhere
running the teacher under ``torch.no_grad()`` is the caller's business.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
import torch.nn.functional as F

from distillkit.losses import IGNORE_INDEX
from distillkit.losses.logits import check_same_shape, kl_per_example, soft_target_kl


def _check_temperature(name: str, value: float) -> None:
    if value <= 0:
        raise ValueError(f"{name} must be > 0, got {value}")


def reverse_soft_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """T² · KL(softmax(z_s/T) ‖ softmax(z_t/T)), averaged over examples: the reverse (mode-seeking) KL.

        KL(q ‖ p) = Σ_c q_c (log q_c − log p_c),  q = softmax(z_s/T),  p = softmax(z_t/T)

    Forward KL (``soft_target_kl``) is mean-covering; the reverse direction makes the student concentrate on
    the teacher's modes, as in progressive self-KD and MiniLLM (Gu et al. 2024, "MiniLLM: Knowledge
    Distillation of Large Language Models", §2.1). It is ``soft_target_kl`` with the arguments swapped, so
    the student's logits get a gradient both through q (the weights) and log q. Same T² scaling, shape and
    temperature checks as ``soft_target_kl``. student_logits, teacher_logits: (N, C).
    """
    check_same_shape(student_logits, teacher_logits)
    return soft_target_kl(teacher_logits, student_logits, temperature)


def centered_kl(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    center: torch.Tensor | None,
    teacher_temperature: float,
    student_temperature: float,
) -> torch.Tensor:
    """DINO's loss (Caron et al. 2021, "Emerging Properties in Self-Supervised Vision Transformers", §3.1):

        KL(p_t ‖ p_s),  p_t = softmax((z_t − c)/T_t),  p_s = softmax(z_s/T_s)

    averaged over examples, with the teacher side (and ``center``) detached: DINO's stop-gradient. Centering
    (subtracting c, a running mean of teacher logits, shape (C,); None = no centering) prevents one class
    dominating, a low T_t sharpens; together they avoid collapse. Not scaled by T²: DINO's cross-entropy
    H(p_t, p_s) has no such factor. KL differs from H(p_t, p_s) only by the teacher's entropy H(p_t), a
    constant for the student's gradient, and is 0 when the two distributions agree.
    student_logits, teacher_logits: (N, C).
    """
    check_same_shape(student_logits, teacher_logits)
    _check_temperature("teacher_temperature", teacher_temperature)
    _check_temperature("student_temperature", student_temperature)
    teacher = teacher_logits.detach().float()
    if center is not None:
        if center.shape != teacher.shape[-1:]:
            raise ValueError(f"center must have shape {tuple(teacher.shape[-1:])}, got {tuple(center.shape)}")
        teacher = teacher - center.detach().float()
    per_example = kl_per_example(student_logits.float() / student_temperature, teacher / teacher_temperature)
    return per_example.mean()


def batch_center(teacher_logits: torch.Tensor) -> torch.Tensor:
    """Mean of the teacher's logits over the batch, (C,), fp32, detached (all-reduce it under DDP)."""
    return teacher_logits.detach().float().reshape(-1, teacher_logits.shape[-1]).mean(dim=0)


def update_center(
    center: torch.Tensor,
    teacher_logits: torch.Tensor | None,
    momentum: float,
    batch_mean: torch.Tensor | None = None,
) -> torch.Tensor:
    """DINO's center update (Caron et al. 2021, eq. 4): c ← m·c + (1 − m)·(1/B) Σ_i z_t,i. Returns a new tensor.

    ``batch_mean`` (C,), if given, replaces ``batch_center(teacher_logits)``: under DDP the caller all-reduces
    the per-rank batch means first so every rank keeps the same center.
    """
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"momentum must be in [0, 1], got {momentum}")
    if batch_mean is None:
        if teacher_logits is None:
            raise ValueError("update_center needs teacher_logits or batch_mean")
        batch_mean = batch_center(teacher_logits)
    if batch_mean.shape != center.shape:
        raise ValueError(f"batch mean has shape {tuple(batch_mean.shape)}, center {tuple(center.shape)}")
    return momentum * center.detach().float() + (1.0 - momentum) * batch_mean.detach().float()


@torch.no_grad()
def confident_unlabeled(teacher_logits: torch.Tensor, labels: torch.Tensor, threshold: float) -> torch.Tensor:
    """Bool (N,): the label is ``IGNORE_INDEX`` (unlabeled) and the teacher's max softmax probability at T = 1
    is >= ``threshold``."""
    confidence = F.softmax(teacher_logits.float(), dim=-1).amax(dim=-1)
    return (labels == IGNORE_INDEX) & (confidence >= threshold)


def pseudo_label_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    threshold: float,
    hard: bool,
    temperature: float = 1.0,
) -> torch.Tensor:
    """Noisy Student's loss on unlabeled data (Xie et al. 2020, "Self-training with Noisy Student improves
    ImageNet classification", §2), on the rows kept by ``confident_unlabeled``:

        hard:  CE(argmax_c z_t, softmax(z_s))
        soft:  T² · KL(softmax(z_t/T) ‖ softmax(z_s/T))

    averaged over the kept rows; rows with a real label, or a teacher less confident than ``threshold``,
    do not count. With no row kept the result is 0 with the student's graph attached.
    student_logits, teacher_logits: (N, C) · labels: (N,).
    """
    check_same_shape(student_logits, teacher_logits)
    _check_temperature("temperature", temperature)
    if labels.shape != student_logits.shape[:-1]:
        raise ValueError(f"labels have shape {tuple(labels.shape)}, logits {tuple(student_logits.shape)}")
    keep = confident_unlabeled(teacher_logits, labels, threshold)
    if not bool(keep.any()):
        return student_logits.float().sum() * 0.0  # keeps the graph; no examples, no loss
    if hard:
        pseudo = teacher_logits[keep].detach().argmax(dim=-1)
        return F.cross_entropy(student_logits[keep].float(), pseudo)
    return soft_target_kl(student_logits, teacher_logits, temperature, mask=keep)


def mean_probability_logits(logits_list: list[torch.Tensor]) -> torch.Tensor:
    """The ensemble's "logits": log of the members' mean softmax probability, in fp32,

        log((1/K) Σ_k softmax(z_k)) = logsumexp_k(log_softmax(z_k)) − log K

    computed in log space, so it is finite for any finite logits. This is the prediction of a Born-Again
    Networks ensemble (Furlanello et al. 2018, §3) or a snapshot ensemble (Huang et al. 2017). The result is
    a log-probability (exp sums to 1); a temperature applied later scales these log-probabilities.
    K = 1 returns log_softmax(z_1).
    """
    if not logits_list:
        raise ValueError("mean_probability_logits needs at least one member")
    for z in logits_list[1:]:
        check_same_shape(logits_list[0], z)
    log_probs = [F.log_softmax(z.float(), dim=-1) for z in logits_list]
    if len(log_probs) == 1:
        return log_probs[0]
    return torch.logsumexp(torch.stack(log_probs), dim=0) - math.log(len(log_probs))


@torch.no_grad()
def ema_update_(ema_params: Iterable[torch.Tensor], params: Iterable[torch.Tensor], momentum: float) -> None:
    """In place, θ_ema ← τ·θ_ema + (1 − τ)·θ for each pair (the mean teacher / DINO / BYOL EMA teacher).

    τ = 0 copies θ, τ = 1 leaves θ_ema. Non-floating tensors (counters, integer buffers) are copied.
    """
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"momentum must be in [0, 1], got {momentum}")
    for ema, p in zip(ema_params, params, strict=True):
        if ema.shape != p.shape:
            raise ValueError(f"EMA tensor has shape {tuple(ema.shape)}, parameter {tuple(p.shape)}")
        if ema.is_floating_point():
            ema.mul_(momentum).add_(p.detach().to(ema.dtype), alpha=1.0 - momentum)
        else:
            ema.copy_(p)


def cosine_momentum(base: float, step: int, total_steps: int, final: float = 1.0) -> float:
    """DINO's teacher-momentum schedule (Caron et al. 2021, §3.1, following BYOL):

        τ_k = final − (final − base)·(cos(π·k/K) + 1)/2,   so τ_0 = base, τ_K = final

    with k clamped to [0, K]; ``total_steps`` <= 0 returns ``base``.
    """
    if total_steps <= 0:
        return base
    k = min(max(step, 0), total_steps)
    return final - (final - base) * (math.cos(math.pi * k / total_steps) + 1.0) / 2.0


def ps_kd_alpha(final_alpha: float, progress: float) -> float:
    """PS-KD's schedule (Kim, Ji, Yoon & Hwang 2021, "Self-Knowledge Distillation with Progressive Refinement of
    Targets", §3): α_t = α_T · t/T grows linearly, here as α = α_T · progress with ``progress`` the share of the
    training done (clamped to [0, 1]; the caller says which share: completed epochs / total epochs)."""
    if not 0.0 <= final_alpha <= 1.0:
        raise ValueError(f"final_alpha must be in [0, 1], got {final_alpha}")
    return final_alpha * min(max(progress, 0.0), 1.0)


def label_distribution(labels: torch.Tensor, classes: int) -> torch.Tensor:
    """Labels as an (N, C) fp32 distribution: class ids (N,) one-hot, an ``IGNORE_INDEX`` row all zeros; an (N, C)
    float distribution (a mixup batch's mixed labels) as it is, detached."""
    if labels.is_floating_point():
        if labels.shape[-1] != classes:
            raise ValueError(f"a label distribution of shape {tuple(labels.shape)} for {classes} classes")
        return labels.detach().float()
    labeled = (labels != IGNORE_INDEX)[:, None]
    return F.one_hot(labels.clamp_min(0).long(), classes).float() * labeled


def ps_kd_targets(
    labels: torch.Tensor, previous_logits: torch.Tensor | None, alpha: float, classes: int | None = None
) -> torch.Tensor:
    """PS-KD's target (Kim et al. 2021, §3), the label softened by the model's own earlier prediction:

        P̃_t = (1 − α_t)·y + α_t·P_{t−1},   P_{t−1} = softmax(previous_logits)

    ``labels``: (N,) class ids or an (N, C) label distribution (``label_distribution``). ``previous_logits``: (N, C),
    the earlier model's logits (or log-probabilities: softmax gives back the probabilities); None (no earlier
    prediction yet) gives y whatever α, and then ``classes`` (C) is needed for class ids. Returns (N, C) fp32,
    detached: a target, not a path for gradients."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if previous_logits is None:
        if classes is None and not labels.is_floating_point():
            raise ValueError("ps_kd_targets needs `classes` for class-id labels when there are no previous logits")
        return label_distribution(labels, classes if classes is not None else labels.shape[-1])
    y = label_distribution(labels, previous_logits.shape[-1])
    if previous_logits.shape != y.shape:
        raise ValueError(f"previous logits have shape {tuple(previous_logits.shape)}, the labels {tuple(y.shape)}")
    return (1.0 - alpha) * y + alpha * F.softmax(previous_logits.detach().float(), dim=-1)


def ps_kd_loss(
    student_logits: torch.Tensor, labels: torch.Tensor, previous_logits: torch.Tensor | None, alpha: float
) -> torch.Tensor:
    """PS-KD's loss (Kim et al. 2021, §3): the cross-entropy of the student against ``ps_kd_targets``,

        L = −(1/N) Σ_i Σ_c P̃_t,ic · log softmax(z_s)_ic

    averaged over the N labeled rows (an ``IGNORE_INDEX`` label, or an all-zero label distribution, does not count;
    no labeled row gives 0 with the graph kept). At α = 0, or with no earlier prediction (None), it is the plain
    CE(y, softmax(z_s)). student_logits: (N, C) · labels: (N,) or (N, C) · previous_logits: (N, C) or None."""
    if labels.is_floating_point():
        check_same_shape(student_logits, labels)
    elif labels.shape != student_logits.shape[:-1]:
        raise ValueError(f"labels have shape {tuple(labels.shape)}, logits {tuple(student_logits.shape)}")
    if previous_logits is not None:
        check_same_shape(student_logits, previous_logits)
    target = ps_kd_targets(labels, previous_logits, alpha, student_logits.shape[-1])
    rows = label_distribution(labels, student_logits.shape[-1]).sum(dim=-1) > 0
    if not bool(rows.any()):
        return student_logits.float().sum() * 0.0  # keeps the graph; no labeled row, no loss
    log_p = F.log_softmax(student_logits.float(), dim=-1)
    return -(target[rows] * log_p[rows]).sum(dim=-1).mean()
