"""Methods of the causal-LM task (``task=causal_lm``): ``sft``, ``forward_kl``, ``reverse_kl`` (MiniLLM's per-token
form), ``gkd`` (Agarwal et al. 2024), ``minillm`` (Gu et al. 2024, its policy-gradient form), ``seq_kd`` (Kim &
Rush 2016) and ``blackbox_sft`` (a teacher that only writes text, e.g. an API: Alpaca's recipe, Taori et al. 2023).
Every term is a mean over response tokens (``losses/token.py``, ``losses/minillm.py``): the logits at position t−1
are compared at the tokens t whose label is not −100. Teacher and student output layers may have different padded
sizes beyond the tokenizer's ids: the terms read the shared rows.

On-policy methods carry a ``Rollout`` on their objective: the trainer lets the student sample the batch's responses
inside the training step (``lm_eval.rollout``), and the teacher then scores those tokens: their teacher outputs are
never cached (``Objective.uncacheable``). Off-policy forward KL declares a top-k form (``Objective.topk``): its
teacher's top-k log-probs are stored once per view (``topk_cache``) and the term reads them instead of logits."""

from __future__ import annotations

from distillkit.config import llm as lc
from distillkit.losses import IGNORE_INDEX, minillm, token
from distillkit.methods.common import stage
from distillkit.recipe.objective import Dims, LossInputs, LossTerm, Objective, Rollout
from distillkit.recipe.stage import PREPARED, DataView, GeneratedOptions, GenerationSpec, ResponsesOptions, Stage

NOT_CACHED = (
    "its loss reads the teacher's whole next-token distribution (only forward KL has a top-k form that "
    "the teacher top-k cache can serve)"
)
ON_POLICY = "on-policy: the student samples new responses at every step, so no teacher output is seen twice"


def aligned(x: LossInputs):
    """(student logits, teacher logits, response mask) at the positions that predict response tokens, over the
    vocabulary rows both models have."""
    z_s, z_t = x.student.logits[:, :-1], x.teacher.logits[:, :-1]
    vocab = min(z_s.shape[-1], z_t.shape[-1])
    return z_s[..., :vocab], z_t[..., :vocab], x.labels[:, 1:] != IGNORE_INDEX


def ntp_term(weight: float, on_data: bool = False) -> LossTerm:
    """NTP on the batch's responses; ``on_data``: on the dataset's responses even on a step that samples its own
    (the trainer then runs the student on both)."""
    return LossTerm(
        "ntp", weight, lambda x: token.next_token_loss(x.student.logits, x.labels), "NTP(y, p_s)", on_data=on_data
    )


def _on_policy(cfg, kind: str, notes: str) -> Objective:
    """(1 − μ)·KD + μ·NTP(y, p_s), μ = ntp_weight, the NTP term on the dataset's responses (MiniLLM mixes in a
    language-modelling loss beside its on-policy term; GKD has none, μ = 0); the KD term's responses are the
    student's samples on a fraction on_policy of the batches."""
    terms = [
        _kd(1.0 - cfg.ntp_weight, kind, cfg.temperature, cfg.chunk_size, getattr(cfg, "beta", 0.5)),
        ntp_term(cfg.ntp_weight, on_data=True),
    ]
    if cfg.ntp_weight:
        notes += f", μ=ntp_weight={cfg.ntp_weight:g} (NTP on the dataset's responses)"
    return Objective(
        name=cfg.name,
        terms=terms,
        needs_teacher=True,
        rollout=_rollout(cfg),
        uncacheable=ON_POLICY if cfg.on_policy > 0 else NOT_CACHED,
        notes=notes,
    )


def _kd(weight: float, kind: str, temperature: float, chunk: int | None, beta: float = 0.5) -> LossTerm:
    def fn(x: LossInputs):
        topk = x.teacher.captured.get("topk")
        if topk is not None:  # served by topk_cache: KL over the teacher's k tokens + one tail bucket
            return token.forward_kl_topk(
                x.student.logits[:, :-1],
                topk["indices"],
                topk["logprobs"],
                topk["tail"],
                x.labels[:, 1:] != IGNORE_INDEX,
                temperature=temperature,
                chunk_size=chunk,
            )
        z_s, z_t, mask = aligned(x)
        if kind == "jsd":
            return token.generalized_jsd(z_s, z_t, mask, beta=beta, temperature=temperature, chunk_size=chunk)
        loss = token.forward_kl if kind == "forward" else token.reverse_kl
        return loss(z_s, z_t, mask, temperature=temperature, chunk_size=chunk)

    formula = {
        "forward": "T²·KL(p_t ‖ p_s)",
        "reverse": "T²·KL(p_s ‖ p_t)",
        "jsd": f"T²·JSD_β(p_t ‖ p_s) [β={beta:g}]",
    }[kind]
    return LossTerm({"forward": "kd", "reverse": "reverse_kl", "jsd": "jsd"}[kind], weight, fn, formula)


def _rollout(cfg) -> Rollout | None:
    if cfg.on_policy == 0:
        return None
    s = cfg.sampling
    return Rollout(cfg.on_policy, s.max_new_tokens, s.temperature, s.top_p)


def build_sft(cfg: lc.SFTMethodConfig, dims: Dims | None = None) -> list[Stage]:
    """L = NTP(y, p_s) on the dataset's responses."""
    return [stage("distill", Objective(name=cfg.name, terms=[ntp_term(1.0)], needs_teacher=False))]


def build_forward_kl(cfg: lc.ForwardKLMethodConfig, dims: Dims | None = None) -> list[Stage]:
    """L = λ·T²·KL(p_t ‖ p_s) + (1 − λ)·NTP(y, p_s), λ = kd_weight."""
    terms = [_kd(cfg.kd_weight, "forward", cfg.temperature, cfg.chunk_size), ntp_term(1.0 - cfg.kd_weight)]
    return [
        stage(
            "distill",
            Objective(
                name=cfg.name,
                terms=terms,
                needs_teacher=True,
                topk=cfg.temperature,
                notes=f"λ=kd_weight={cfg.kd_weight:g}, T={cfg.temperature:g}",
            ),
        )
    ]


def _after_sft(cfg, objective: Objective) -> list[Stage]:
    """[sft →] distill: on-policy distillation starts from a student fine-tuned on the data (MiniLLM and GKD both
    do), since an untrained student's samples are noise the teacher can only grade; ``sft_share`` of the run's
    epochs go to a first NTP stage, the rest to distillation (the total budget stays ``train.epochs``), whose peak
    learning rate is ``distill_learning_rate`` (null = ``train.learning_rate``)."""
    distill = stage("distill", objective, learning_rate=cfg.distill_learning_rate)
    if cfg.distill_learning_rate is not None:
        distill.budget.learning_rate_key = "method.distill_learning_rate"
    if cfg.sft_share == 0:
        return [distill]
    sft = stage("sft", Objective(name="sft", terms=[ntp_term(1.0)], needs_teacher=False))
    sft.budget.share, distill.budget.share = cfg.sft_share, 1.0 - cfg.sft_share
    return [sft, distill]


def build_reverse_kl(cfg: lc.ReverseKLMethodConfig, dims: Dims | None = None) -> list[Stage]:
    """[sft →] L = (1 − μ)·T²·KL(p_s ‖ p_t) per token on the student's own samples (fraction on_policy of the
    batches) + μ·NTP on the dataset's responses."""
    return _after_sft(cfg, _on_policy(cfg, "reverse", f"on-policy fraction {cfg.on_policy:g}, T={cfg.temperature:g}"))


def build_gkd(cfg: lc.GKDMethodConfig, dims: Dims | None = None) -> list[Stage]:
    """[sft →] L = (1 − μ)·T²·JSD_β(p_t ‖ p_s) per token + μ·NTP on the dataset's responses; with probability
    λ = on_policy the JSD's responses are the student's samples."""
    return _after_sft(
        cfg, _on_policy(cfg, "jsd", f"β={cfg.beta:g}, λ=on_policy={cfg.on_policy:g}, T={cfg.temperature:g}")
    )


def build_minillm(cfg: lc.MiniLLMMethodConfig, dims: Dims | None = None) -> list[Stage]:
    """[sft →] L = (1 − μ)·(single step + long term) + μ·NTP on the dataset's responses, every batch sampled from
    p̃ = α·p + (1 − α)·q_θ inside the training step (``losses/minillm.py`` has the formulas)."""
    alpha = cfg.teacher_mix

    def inputs(x: LossInputs):
        z_s, z_t, mask = aligned(x)
        return z_s, z_t, x.labels[:, 1:], mask

    def single_step(x: LossInputs):
        return minillm.single_step_loss(*inputs(x), alpha=alpha, chunk_size=cfg.chunk_size)

    def long_term(x: LossInputs):
        return minillm.long_term_loss(
            *inputs(x),
            alpha=alpha,
            length_norm=cfg.length_norm,
            discount=cfg.discount,
            reward_clip=cfg.reward_clip,
            ratio_clip=cfg.ratio_clip,
        )

    returns = "R^Norm_{t+1}" if cfg.length_norm else "R_{t+1}"
    weight = 1.0 - cfg.ntp_weight
    terms = [
        LossTerm("single_step", weight, single_step, "w·KL(p_s ‖ p_t)"),
        LossTerm("long_term", weight, long_term, f"[−w·{returns}·log p_s(y_t)]"),
        ntp_term(cfg.ntp_weight, on_data=True),
    ]
    notes = (
        f"y ∼ p̃ = α·p_t + (1 − α)·p_s, α=teacher_mix={alpha:g}; w = p_s(y_t)/p̃(y_t); "
        f"r_t = log p_t(y_t) − log p_s(y_t)"
        + (f", γ={cfg.discount:g}" if cfg.discount != 1.0 else "")
        + (f", ε=ratio_clip={cfg.ratio_clip:g}" if cfg.ratio_clip is not None else "")
        + (f", r clipped to ±{cfg.reward_clip:g}" if cfg.reward_clip is not None else "")
        + (f", μ=ntp_weight={cfg.ntp_weight:g} (NTP on the dataset's responses)" if cfg.ntp_weight else "")
    )
    s = cfg.sampling
    objective = Objective(
        name=cfg.name,
        terms=terms,
        needs_teacher=True,
        rollout=Rollout(1.0, s.max_new_tokens, s.temperature, s.top_p, teacher_mix=alpha),
        uncacheable=ON_POLICY,
        notes=notes,
    )
    return _after_sft(cfg, objective)


def build_seq_kd(cfg: lc.SeqKDMethodConfig, dims: Dims | None = None) -> list[Stage]:
    """L = NTP(ŷ, p_s) on the teacher's own responses ŷ (generated once before the stage trains; cached)."""
    objective = Objective(
        name=cfg.name,
        terms=[ntp_term(1.0)],
        needs_teacher=False,
        notes=f"ŷ: teacher {'greedy' if cfg.num_beams == 1 else f'beam-{cfg.num_beams}'} responses"
        + (" + the dataset's" if cfg.keep_original else ""),
    )
    view = DataView("teacher_responses", options=ResponsesOptions(cfg.num_beams, cfg.max_new_tokens, cfg.keep_original))
    return [stage("distill", objective, data=view, teacher=PREPARED)]


def _pipeline_options(cfg: lc.BlackboxSFTMethodConfig) -> dict:
    """The settings of ``cfg.pipeline`` beyond responses' (empty for responses)."""
    keys = {
        "self_instruct": ("seed_file", "pool_size", "max_attempts", "examples_per_prompt", "rouge_threshold"),
        "explanations": ("system_prompts",),
        "dialogue": ("turns", "follow_ups"),
    }.get(cfg.pipeline, ())
    return {k: list(v) if k in ("system_prompts", "follow_ups") else v for k in keys for v in [getattr(cfg, k)]}


def build_blackbox_sft(cfg: lc.BlackboxSFTMethodConfig, dims: Dims | None = None) -> list[Stage]:
    """generate → distill: the run's generating teacher (an endpoint, or the teacher model) writes a dataset once
    (``generate``: no optimizer step, outside the budget), then L = NTP(ŷ, p_s) on it (``distill``: the whole
    budget). pipeline=responses: ŷ = the teacher's answers to the training prompts (Alpaca's recipe); self_instruct,
    explanations, dialogue: stages/generation/pipelines.py."""
    generate = Stage(
        "generate",
        None,
        teacher=None,
        generation=GenerationSpec(cfg.pipeline, cfg.system_prompt, cfg.drop_truncated, options=_pipeline_options(cfg)),
    )
    return [generate, learn_generated(cfg.name, f"the teacher's written answers ({cfg.pipeline} pipeline)", cfg)]


def learn_generated(name: str, written: str, cfg) -> Stage:
    """``distill``: L = NTP(ŷ, p_s) on the dataset stage ``generate`` wrote (``written`` says what ŷ is), with the
    dataset's own rows too when ``cfg.keep_original``; the whole budget. With ``cfg.kd_weight`` λ > 0 (grey-box):
    L = λ·KL_topk(p̂_t ‖ p_s) + (1 − λ)·NTP(ŷ, p_s), p̂_t the endpoint's top log-probs at each response position
    (``tasks/causal_lm/greybox.py``; one-hot on ŷ where it gave none, where the term is NTP)."""
    weight = getattr(cfg, "kd_weight", 0.0)
    terms = [ntp_term(1.0)] if not weight else [written_kd_term(weight), ntp_term(1.0 - weight)]
    notes = f"ŷ: {written}" + (" + the dataset's" if cfg.keep_original else "")
    if weight:
        notes += f"; p̂_t: the endpoint's top log-probs, λ=kd_weight={weight:g}"
    objective = Objective(name=name, terms=terms, needs_teacher=False, notes=notes)
    view = DataView("generated", options=GeneratedOptions("generate", cfg.keep_original, greybox=bool(weight)))
    return stage("distill", objective, data=view)


def written_kd_term(weight: float) -> LossTerm:
    """Forward KL against the top log-probs an endpoint wrote with its answers (the batch's topk_* columns): the
    k + 1 buckets of ``forward_kl_topk`` at T = 1 (the endpoint's log-probs are its distribution's)."""
    return LossTerm(
        "kd",
        weight,
        lambda x: token.forward_kl_topk(
            x.student.logits[:, :-1],
            x.batch["topk_ids"],
            x.batch["topk_logp"],
            x.batch["topk_tail"],
            x.labels[:, 1:] != IGNORE_INDEX,
        ),
        "KL_topk(p̂_t ‖ p_s)",
    )
