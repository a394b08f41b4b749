"""Losses on output logits: hard-label cross-entropy and Hinton's soft-target distillation.

All functions are pure: tensors in, a scalar tensor out, reduced in fp32 whatever the input dtype
(bf16/fp16 logits under autocast are upcast before the softmax).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from distillkit.losses import IGNORE_INDEX


def cross_entropy(student_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """CE(y, softmax(z_s)) averaged over the examples whose label is not ``IGNORE_INDEX``.

    student_logits: (N, C) · labels: (N,) integer class ids.
    """
    return F.cross_entropy(student_logits.float(), labels, ignore_index=IGNORE_INDEX)


def check_same_shape(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> None:
    """Distillation on logits compares one label space: a ValueError naming both shapes when they differ."""
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"student and teacher logits differ in shape: {tuple(student_logits.shape)} vs "
            f"{tuple(teacher_logits.shape)}; distillation on logits needs the same label space."
        )


def soft_target_kl(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    temperature: float,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """T² · KL(softmax(z_t/T) ‖ softmax(z_s/T)), averaged over examples (Hinton et al. 2015, §2).

        KL(p ‖ q) = Σ_c p_c (log p_c − log q_c),  p = softmax(z_t/T),  q = softmax(z_s/T)

    The T² factor keeps the gradient magnitude of the soft term independent of T: the gradient of the
    un-scaled KL w.r.t. z_s is (q − p)/T, which shrinks like 1/T² for large T (Hinton et al., eq. 2-4).
    Computed from log-softmax in fp32, so it is finite for any finite logits, and exactly 0 when the
    logits are equal. ``mask`` (N,) bool keeps only some examples (e.g. non-padding positions).

    student_logits, teacher_logits: (N, C), or (..., C) with ``mask`` of shape (...).
    """
    check_same_shape(student_logits, teacher_logits)
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    per_example = kl_per_example(student_logits.float() / temperature, teacher_logits.float() / temperature)
    if mask is not None:
        per_example = per_example[mask]
    if per_example.numel() == 0:
        return student_logits.float().sum() * 0.0  # keeps the graph; no examples, no loss
    return per_example.mean() * temperature**2


def kl_per_example(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """KL(softmax(z_t) ‖ softmax(z_s)) for each example (last dim = classes), in fp32. Shape (...,).

    At T = 1 this is also the evaluation metric "KL to teacher"."""
    log_q = F.log_softmax(student_logits.float(), dim=-1)
    log_p = F.log_softmax(teacher_logits.float(), dim=-1)
    return (log_p.exp() * (log_p - log_q)).sum(dim=-1)


def soft_label_kl(student_logits: torch.Tensor, probs: torch.Tensor, temperature: float) -> torch.Tensor:
    """T² · KL(p^(1/T)/Z ‖ softmax(z_s/T)): Hinton's soft-target term with the teacher given as probabilities ``p``
    (a black-box teacher's soft labels, e.g. from an API's top log-probabilities) instead of logits. log p plays the
    teacher logits' part (softmax(log p / T) = p^(1/T)/Z), so at T = 1 it is KL(p ‖ softmax(z_s)); a row of ``p``
    that is one-hot is CE on that class. Zeros are clamped to 1e-12 before the log (a class with no mass).

    student_logits: (N, C) · probs: (N, C), rows summing to 1.
    """
    check_same_shape(student_logits, probs)
    return soft_target_kl(student_logits, probs.float().clamp_min(1e-12).log(), temperature)
