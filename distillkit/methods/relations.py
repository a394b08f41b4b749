"""Methods on relations between examples or tokens: RKD, CRD, MiniLM."""

from __future__ import annotations

import torch

from distillkit.config import method as mc
from distillkit.errors import require
from distillkit.losses import contrastive, relations
from distillkit.methods.common import joint_objective, logit_terms, sentence_vector, stage, token_mask
from distillkit.models.features import FeatureSpec, HookSpec, meta_model, projection_template
from distillkit.recipe.objective import Dims, LossInputs, LossTerm, Objective
from distillkit.recipe.stage import Stage


def build_rkd(cfg: mc.RKDMethodConfig, dims: Dims) -> list[Stage]:
    """Park et al. 2019: distance and angle potentials on the batch's final-layer sentence vectors."""
    s_layer, t_layer = dims.student_layers, dims.teacher_layers

    def vectors(x: LossInputs):
        return (
            sentence_vector(x.student, s_layer, cfg.embedding, token_mask(x)),
            sentence_vector(x.teacher, t_layer, cfg.embedding, token_mask(x)),
        )

    terms = logit_terms(cfg.ce_weight, cfg.kd_weight, cfg.temperature) + [
        LossTerm(
            "rkd_distance", cfg.distance_weight, lambda x: relations.rkd_distance(*vectors(x)), "Huber(ψ_D(s), ψ_D(t))"
        ),
        LossTerm("rkd_angle", cfg.angle_weight, lambda x: relations.rkd_angle(*vectors(x)), "Huber(ψ_A(s), ψ_A(t))"),
    ]
    method = Objective(
        name=cfg.name,
        needs_teacher=True,
        terms=terms,
        student_features=FeatureSpec(hidden_states=(s_layer,)),
        teacher_features=FeatureSpec(hidden_states=(t_layer,)),
        notes=f"on the final layer's {cfg.embedding} vector",
    )
    return [stage("distill", method)]


def build_crd(cfg: mc.CRDMethodConfig, dims: Dims) -> list[Stage]:
    """Tian et al. 2020: NCE between student and teacher embeddings against a momentum memory bank."""
    s_layer, t_layer = dims.student_layers, dims.teacher_layers
    n = dims.train_examples
    require(n >= 2, "data", n, "has fewer than 2 training examples: CRD needs negatives.", "use more data.")
    k = cfg.num_negatives if cfg.num_negatives is not None else contrastive.default_negatives(n)
    require(
        k <= n - 1,
        "method.num_negatives",
        k,
        f"exceeds the {n - 1} other training examples.",
        f"use at most {n - 1}, or null to scale the paper's 16384 to the data.",
    )
    adapters = torch.nn.ModuleDict(
        {
            "embed_student": contrastive.CRDHead(dims.student_hidden, cfg.feat_dim),
            "embed_teacher": contrastive.CRDHead(dims.teacher_hidden, cfg.feat_dim),
            "memory": contrastive.CRDMemory(n, cfg.feat_dim, k, cfg.nce_temperature, cfg.momentum, seed=0),
        }
    )

    def crd(x: LossInputs) -> torch.Tensor:
        s = x.adapters["embed_student"](sentence_vector(x.student, s_layer, cfg.embedding, token_mask(x)))
        t = x.adapters["embed_teacher"](sentence_vector(x.teacher, t_layer, cfg.embedding, token_mask(x)))
        return contrastive.crd_loss(s, t, x.adapters["memory"], x.batch["idx"])

    terms = logit_terms(cfg.ce_weight, cfg.kd_weight, cfg.temperature) + [
        LossTerm("crd", cfg.crd_weight, crd, "NCE(g_s(s), g_t(t); memory)")
    ]
    method = Objective(
        name=cfg.name,
        needs_teacher=True,
        terms=terms,
        adapters=adapters,
        student_features=FeatureSpec(hidden_states=(s_layer,)),
        teacher_features=FeatureSpec(hidden_states=(t_layer,)),
        notes=f"K={k} negatives of {n}, τ={cfg.nce_temperature:g}, momentum {cfg.momentum:g}, {cfg.feat_dim}-d heads",
    )
    return [stage("distill", method)]


def _minilm_hooks(cfg: mc.MiniLMMethodConfig, config, layer: int) -> tuple[HookSpec, ...]:
    model = meta_model(config)
    return tuple(
        HookSpec(
            p,
            projection_template(model, p, getattr(cfg, f"{p}_path"), f"method.{p}_path"),
            (layer,),
            f"method.{p}_path",
        )
        for p in ("query", "key", "value")
    )


def build_minilm(cfg: mc.MiniLMMethodConfig, dims: Dims) -> list[Stage]:
    """Wang et al. 2020: self-attention distribution and value-relation transfer, then fine-tuning."""
    t_layer = cfg.teacher_layer or dims.teacher_layers
    require(
        t_layer <= dims.teacher_layers,
        "method.teacher_layer",
        t_layer,
        f"is beyond the teacher's {dims.teacher_layers} layers.",
        f"use 1..{dims.teacher_layers}, or null for the last.",
    )
    s_layer = dims.student_layers
    heads = cfg.relation_heads or dims.student_heads
    for who, width in (("student", dims.student_hidden), ("teacher", dims.teacher_hidden)):
        require(
            width % heads == 0,
            "method.relation_heads",
            heads,
            f"does not divide the {who}'s hidden size {width}.",
            "pick a head count that divides both hidden sizes.",
        )
    s_hooks = _minilm_hooks(cfg, dims.student_config, s_layer)
    t_hooks = _minilm_hooks(cfg, dims.teacher_config, t_layer)

    def attn_kl(x: LossInputs) -> torch.Tensor:
        s, t = x.student.captured, x.teacher.captured
        return relations.minilm_attention_kl(
            s["query"][s_layer], s["key"][s_layer], t["query"][t_layer], t["key"][t_layer], heads, token_mask(x)
        )

    def value_kl(x: LossInputs) -> torch.Tensor:
        return relations.minilm_value_kl(
            x.student.captured["value"][s_layer], x.teacher.captured["value"][t_layer], heads, token_mask(x)
        )

    transfer = Objective(
        name=f"{cfg.name}/relations",
        needs_teacher=True,
        terms=[
            LossTerm("attention_kl", cfg.attention_weight, attn_kl, "KL(softmax(Q_tK_tᵀ/√d) ‖ softmax(Q_sK_sᵀ/√d))"),
            LossTerm("value_kl", cfg.value_weight, value_kl, "KL(softmax(V_tV_tᵀ/√d) ‖ softmax(V_sV_sᵀ/√d))"),
        ],
        student_features=FeatureSpec(hooks=s_hooks),
        teacher_features=FeatureSpec(hooks=t_hooks),
        notes=f"student layer {s_layer} ↔ teacher layer {t_layer}, {heads} relation heads",
        reads_logits=False,
    )
    finetune = Objective(
        name=f"{cfg.name}/finetune",
        terms=logit_terms(1.0 - cfg.kd_weight, cfg.kd_weight, cfg.temperature),
        needs_teacher=cfg.kd_weight > 0,
        notes=f"λ=kd_weight={cfg.kd_weight:g}, T={cfg.temperature:g}" if cfg.kd_weight else "",
    )
    if cfg.schedule == "joint":  # one stage: the relation terms added to the fine-tuning loss
        objective = joint_objective(f"{cfg.name}/joint", finetune, transfer)
        budget = cfg.finetune
        return [stage("distill", objective, budget.epochs, budget.learning_rate, share=budget.share)]
    return [
        stage("relations", transfer, cfg.relations.epochs, cfg.relations.learning_rate, share=cfg.relations.share),
        stage("finetune", finetune, cfg.finetune.epochs, cfg.finetune.learning_rate, share=cfg.finetune.share),
    ]
