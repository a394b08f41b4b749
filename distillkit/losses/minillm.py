"""MiniLLM's policy-gradient form of the sequence-level reverse KL (Gu, Dong, Wei, Huang, ICLR 2024, "MiniLLM:
Knowledge Distillation of Large Language Models"; reference code microsoft/LMOps, folder minillm/).

The objective is the reverse KL between whole responses, KL(q_θ ‖ p) = E_{y∼q_θ}[log q_θ(y|x) − log p(y|x)]
(q_θ the student, p the teacher). With the per-token reward r_t = log p(y_t|y_<t, x) − log q_θ(y_t|y_<t, x) and the
policy gradient theorem its gradient is −E[Σ_t R_t ∇log q_θ(y_t|·)], R_t = Σ_{t'≥t} r_{t'}; splitting R_t = r_t +
R_{t+1} and taking the expectation over y_t exactly gives the paper's SINGLE-STEP DECOMPOSITION:

    ∇L = E_{y∼q_θ}[ Σ_t ∇KL(q_θ(·|y_<t, x) ‖ p(·|y_<t, x))           (single step: exact, over the vocabulary)
                   − Σ_t R_{t+1} ∇log q_θ(y_t|y_<t, x) ]             (long term: REINFORCE on the future reward)

The paper's two further changes, both here:

* LENGTH NORMALISATION: R_{t+1} is replaced by the mean of the future rewards, so long responses do not get
  large returns (and a bias towards short ones). The paper prints R^Norm_{t+1} = 1/(T − t − 1) · Σ_{t'=t+1}^{T}
  r_{t'}, whose sum has T − t terms (positions 1..T), so the printed factor divides by zero at t = T − 1. Here it
  is the mean over the terms summed, R^Norm_{t+1} = (1/(T − t)) · Σ_{t'=t+1}^{T} r_{t'}, and 0 at the last token
  (no future). LMOps (minillm/minillm/losses.py, ``_get_advantages_and_returns``) averages Σ_{t'≥t} r_{t'} over
  its T − t + 1 terms instead, i.e. it includes the current token's reward r_t, which the single-step term already
  accounts for exactly; the paper's R_{t+1} is what this module computes.
* TEACHER-MIXED SAMPLING: responses are sampled from p̃ = α·p + (1 − α)·q_θ (α = 0.2), which keeps the student
  from reward hacking its own degenerate samples early in training. The expectation over q_θ is then an
  importance-weighted one over p̃; the paper approximates the weight of the prefix, Π_{t'≤t} q_θ/p̃, by the single
  token's, w_t = q_θ(y_t|·)/p̃(y_t|·), detached, and applies it to both parts. w_t ∈ [0, 1/(1 − α)].

The surrogate whose gradient is the above (w and R^Norm detached; mean over the N response tokens of the batch):

    L = (1/N) Σ_t w_t·KL_t(q_θ ‖ p)  +  (1/N) Σ_t −R^Norm_{t+1}·ρ_t,    ρ_t = w_t·q_θ(y_t)/sg(q_θ(y_t)) (= w_t)

The second term's value is −(1/N)·Σ_t w_t·R^Norm_{t+1} (the negative weighted future reward) and its gradient
−(1/N)·Σ_t w_t·R^Norm_{t+1}·∇log q_θ(y_t). With ``ratio_clip`` = ε it is PPO's clipped form (Schulman et al. 2017,
as LMOps does): max(−R·ρ, −R·clip(ρ, 1 − ε, 1 + ε)) per token. The responses are sampled inside the training step
from the current student, so the PPO ratio q_θ/q_θ_old is 1 and ρ_t = w_t: the clip drops the gradient of a token
whose weight lies outside [1 − ε, 1 + ε] on the side the return pushes it (LMOps's first PPO epoch does the same).

All functions are pure; conventions as ``losses/token.py``: logits (B, S, V) aligned with ``tokens`` (B, S) (the
logits at a position predict the token at the same position: pass the shifted views), ``mask`` (B, S) true on the
response tokens; logits and tokens at the false positions are never read (garbage there changes nothing), and
every term is a mean over the true positions (an exact 0 that keeps the graph when there is none).
"""

from __future__ import annotations

import math

import torch

from distillkit.losses import token


def token_logprobs(logits: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """log softmax(z)[y] at the masked positions, 0 elsewhere, in fp32. logits (B, S, V), tokens and mask (B, S) →
    (B, S); differentiable w.r.t. the logits (only the masked rows are read)."""
    keep = _mask(mask, logits)
    out = logits.new_zeros(keep.shape, dtype=torch.float32)
    rows = logits[keep].float()
    out[keep] = rows.log_softmax(-1).gather(-1, tokens[keep].long().unsqueeze(-1)).squeeze(-1)
    return out


def mixture_logprobs(student_logprobs: torch.Tensor, teacher_logprobs: torch.Tensor, alpha: float) -> torch.Tensor:
    """log p̃ = log(α·p + (1 − α)·q), computed as a logaddexp of log-probabilities (exact for α ∈ {0, 1}). Works
    elementwise: on whole next-token distributions (..., V) (to sample from p̃) or on the sampled tokens' log-probs.

    student_logprobs = log q, teacher_logprobs = log p, any equal shapes."""
    _check_alpha(alpha)
    if alpha == 0.0:
        return student_logprobs
    if alpha == 1.0:
        return teacher_logprobs
    return torch.logaddexp(teacher_logprobs + math.log(alpha), student_logprobs + math.log1p(-alpha))


def importance_weights(student_logprobs: torch.Tensor, teacher_logprobs: torch.Tensor, alpha: float) -> torch.Tensor:
    """w = q(y)/p̃(y) = exp(log q − log p̃), p̃ = α·p + (1 − α)·q, from the sampled tokens' log-probs; detached (the
    paper's single-token approximation of the prefix's weight). 1 at α = 0; at most 1/(1 − α)."""
    with torch.no_grad():
        log_q = student_logprobs.float()
        return (log_q - mixture_logprobs(log_q, teacher_logprobs.float(), alpha)).exp()


def future_returns(
    rewards: torch.Tensor, mask: torch.Tensor, length_norm: bool = True, discount: float = 1.0
) -> torch.Tensor:
    """R_{t+1} per position: the (discounted) sum of the rewards of the masked positions strictly after t in the
    same row, Σ_{t'>t} γ^(k(t') − k(t) − 1)·r_{t'} (k counts the masked positions; γ = ``discount``, 1 = the paper's
    plain sum); with ``length_norm`` divided by the number of those positions, T − t (the mean of the future rewards:
    the paper's R^Norm_{t+1}, see the module docstring for the paper's printed T − t − 1). 0 where there is no future
    masked position and at the unmasked positions. rewards, mask (B, S) → (B, S) fp32, detached."""
    if not 0.0 < discount <= 1.0:
        raise ValueError(f"discount must be in (0, 1], got {discount}")
    with torch.no_grad():
        keep = mask.to(rewards.device) != 0
        r = torch.where(keep, rewards.float(), torch.zeros((), device=rewards.device))
        returns, counts = torch.zeros_like(r), torch.zeros_like(r)
        running, seen = r.new_zeros(r.shape[0]), r.new_zeros(r.shape[0])
        for t in reversed(range(r.shape[1])):
            returns[:, t], counts[:, t] = running, seen
            running = torch.where(keep[:, t], r[:, t] + discount * running, running)
            seen = seen + keep[:, t].float()
        if length_norm:
            returns = torch.where(counts > 0, returns / counts.clamp_min(1.0), torch.zeros_like(returns))
        return returns * keep


def rewards(
    student_logprobs: torch.Tensor, teacher_logprobs: torch.Tensor, mask: torch.Tensor, clip: float | None = None
) -> torch.Tensor:
    """r_t = log p(y_t|·) − log q_θ(y_t|·) at the masked positions (0 elsewhere), clipped to [−clip, clip] when
    ``clip`` is given; detached. Token log-probs (B, S) → (B, S) fp32."""
    if clip is not None and not clip > 0:
        raise ValueError(f"clip must be > 0 or None, got {clip}")
    with torch.no_grad():
        r = teacher_logprobs.float() - student_logprobs.float()
        if clip is not None:
            r = r.clamp(-clip, clip)
        return r * (mask.to(r.device) != 0)


def policy_gradient_loss(
    student_logprobs: torch.Tensor,
    returns: torch.Tensor,
    weights: torch.Tensor,
    mask: torch.Tensor,
    ratio_clip: float | None = None,
) -> torch.Tensor:
    """The long-term term's surrogate, (1/N)·Σ_t ℓ_t over the N masked tokens, with ρ_t = w_t·exp(log q_t − sg(log
    q_t)) (value w_t, gradient w_t·∇log q_t):

        ℓ_t = −R_t·ρ_t                                           ratio_clip None
        ℓ_t = max(−R_t·ρ_t, −R_t·clip(ρ_t, 1 − ε, 1 + ε))         ratio_clip = ε (PPO)

    student_logprobs (B, S): log q_θ of the sampled tokens, with their gradient · returns, weights (B, S): used
    detached · mask (B, S). Returns a 0-dim fp32 tensor."""
    if ratio_clip is not None and not 0.0 < ratio_clip < 1.0:
        raise ValueError(f"ratio_clip must be in (0, 1) or None, got {ratio_clip}")
    keep = _mask(mask, student_logprobs.unsqueeze(-1))
    n = int(keep.sum())
    if n == 0:
        return student_logprobs[:0].float().sum()
    log_q = student_logprobs[keep].float()
    advantage, w = returns[keep].detach().float(), weights[keep].detach().float()
    rho = w * (log_q - log_q.detach()).exp()
    per_token = -advantage * rho
    if ratio_clip is not None:
        per_token = torch.maximum(per_token, -advantage * rho.clamp(1.0 - ratio_clip, 1.0 + ratio_clip))
    return per_token.sum() / n


def single_step_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    tokens: torch.Tensor,
    mask: torch.Tensor,
    alpha: float = 0.2,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """(1/N)·Σ_t w_t·Σ_{y'} q_θ(y'|y_<t, x)·log(q_θ(y'|·)/p(y'|·)): the token-level reverse KL at every sampled
    prefix, differentiated exactly, each token weighted by its importance weight w_t (``importance_weights`` of the
    sampled token ``tokens``; 1 at α = 0). T = 1 (no T² factor). logits (B, S, V), tokens and mask (B, S)."""
    weights = importance_weights(
        token_logprobs(student_logits.detach(), tokens, mask), token_logprobs(teacher_logits, tokens, mask), alpha
    )
    return token.reverse_kl(
        student_logits, teacher_logits, mask, scale_by_t2=False, chunk_size=chunk_size, weights=weights
    )


def long_term_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    tokens: torch.Tensor,
    mask: torch.Tensor,
    alpha: float = 0.2,
    length_norm: bool = True,
    discount: float = 1.0,
    reward_clip: float | None = None,
    ratio_clip: float | None = None,
) -> torch.Tensor:
    """The long-term term: ``policy_gradient_loss`` with the returns ``future_returns(rewards(...))`` and the
    importance weights of the sampled ``tokens``. logits (B, S, V), tokens and mask (B, S). Returns a 0-dim tensor
    whose value is −(1/N)·Σ_t w_t·R^Norm_{t+1} (the negative weighted future reward)."""
    log_q = token_logprobs(student_logits, tokens, mask)
    log_p = token_logprobs(teacher_logits.detach(), tokens, mask)
    weights = importance_weights(log_q, log_p, alpha)
    returns = future_returns(rewards(log_q, log_p, mask, reward_clip), mask, length_norm, discount)
    return policy_gradient_loss(log_q, returns, weights, mask, ratio_clip)


def _check_alpha(alpha: float) -> None:
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")


def _mask(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    if tuple(mask.shape) != tuple(like.shape[:-1]):
        raise ValueError(f"mask of shape {tuple(mask.shape)} does not match {tuple(like.shape)}; expected (B, S)")
    return mask.to(device=like.device) != 0
