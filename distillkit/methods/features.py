"""Methods on intermediate features: FitNets, attention transfer, PKD, DistilBERT, TinyBERT."""

from __future__ import annotations

from collections.abc import Callable

import torch

from distillkit.config import method as mc
from distillkit.errors import require
from distillkit.losses import features as feature_losses
from distillkit.methods.common import (
    ce_term,
    joint_objective,
    kd_objective,
    kd_term,
    layer_map_pairs,
    logit_terms,
    projection,
    same_width,
    stage,
    token_mask,
)
from distillkit.models.features import FeatureSpec, HookSpec, meta_model, projection_template
from distillkit.recipe.objective import Dims, LossInputs, LossTerm, Objective
from distillkit.recipe.stage import Stage


def build_fitnets(cfg: mc.FitNetsMethodConfig, dims: Dims) -> list[Stage]:
    """Romero et al. 2015. Stage ``hints``: L = Σ_(m,t) MSE(W_m·h_s^m, h_t^t); stage ``distill``: KD."""
    pairs = layer_map_pairs(cfg.layer_map, dims)
    adapters = torch.nn.ModuleDict(
        {f"hint_{m}": projection(dims.student_hidden, dims.teacher_hidden) for m, _ in pairs}
    )

    def hint_loss(x: LossInputs) -> torch.Tensor:
        return sum(
            feature_losses.hidden_mse(x.adapters[f"hint_{m}"](x.student.hidden[m]), x.teacher.hidden[t], token_mask(x))
            for m, t in pairs
        )

    hints = Objective(
        name=f"{cfg.name}/hints",
        needs_teacher=True,
        adapters=adapters,
        terms=[LossTerm("hint", cfg.hint_weight, hint_loss, "Σ MSE(W·h_s, h_t)")],
        student_features=FeatureSpec(hidden_states=tuple(m for m, _ in pairs)),
        teacher_features=FeatureSpec(hidden_states=tuple(t for _, t in pairs)),
        notes=f"student→teacher layers {pairs}, W learned",
        reads_logits=False,
    )
    return [
        stage("hints", hints, cfg.hints.epochs, cfg.hints.learning_rate, share=cfg.hints.share),
        stage("distill", kd_objective(f"{cfg.name}/kd", cfg.temperature, cfg.ce_weight)),
    ]


def build_attention_transfer(cfg: mc.AttentionTransferMethodConfig, dims: Dims) -> list[Stage]:
    """Zagoruyko & Komodakis 2017 on token positions: A = Σ_c |h_c|^p per token."""
    pairs = layer_map_pairs(cfg.layer_map, dims)

    def at_loss(x: LossInputs) -> torch.Tensor:
        return sum(
            feature_losses.attention_transfer(x.student.hidden[m], x.teacher.hidden[t], token_mask(x), p=cfg.p)
            for m, t in pairs
        )

    at = LossTerm("at", cfg.at_weight, at_loss, "Σ ‖A_s/‖A_s‖ − A_t/‖A_t‖‖₂")
    method = Objective(
        name=cfg.name,
        needs_teacher=True,
        terms=logit_terms(cfg.ce_weight, cfg.kd_weight, cfg.temperature) + [at],
        student_features=FeatureSpec(hidden_states=tuple(m for m, _ in pairs)),
        teacher_features=FeatureSpec(hidden_states=tuple(t for _, t in pairs)),
        notes=f"A = Σ_c |h_c|^{cfg.p:g} per token; student→teacher layers {pairs}",
    )
    return [stage("distill", method)]


def build_pkd(cfg: mc.PKDMethodConfig, dims: Dims) -> list[Stage]:
    """Sun et al. 2019: patient KD on the [CLS] states of mapped intermediate layers."""
    same_width(dims, cfg.name)
    pairs = layer_map_pairs(cfg.layer_map, dims)

    def pt(x: LossInputs) -> torch.Tensor:
        return sum(
            feature_losses.normalized_mse(x.student.hidden[m][:, 0], x.teacher.hidden[t][:, 0]) for m, t in pairs
        )

    terms = [
        ce_term(1.0 - cfg.alpha),
        kd_term(cfg.alpha, cfg.temperature),
        LossTerm("pt", cfg.beta, pt, "Σ ‖h_s/‖h_s‖ − h_t/‖h_t‖‖²"),
    ]
    method = Objective(
        name=cfg.name,
        needs_teacher=True,
        terms=terms,
        student_features=FeatureSpec(hidden_states=tuple(m for m, _ in pairs)),
        teacher_features=FeatureSpec(hidden_states=tuple(t for _, t in pairs)),
        notes=f"T={cfg.temperature:g}, α={cfg.alpha:g}, β={cfg.beta:g}; [CLS] of student→teacher layers {pairs}",
    )
    return [stage("distill", method)]


def build_distilbert(cfg: mc.DistilBERTMethodConfig, dims: Dims) -> list[Stage]:
    """Sanh et al. 2019: CE + KD + cosine between the last hidden states (student from every other layer)."""
    same_width(dims, cfg.name)
    s_layer, t_layer = dims.student_layers, dims.teacher_layers
    cos = LossTerm(
        "cos",
        cfg.cos_weight,
        lambda x: feature_losses.cosine_hidden(x.student.hidden[s_layer], x.teacher.hidden[t_layer], token_mask(x)),
        "(1 − cos(h_s, h_t))",
    )
    method = Objective(
        name=cfg.name,
        needs_teacher=True,
        terms=logit_terms(cfg.ce_weight, cfg.kd_weight, cfg.temperature) + [cos],
        student_features=FeatureSpec(hidden_states=(s_layer,)),
        teacher_features=FeatureSpec(hidden_states=(t_layer,)),
        notes=f"T={cfg.temperature:g}",
    )
    return [stage("distill", method)]


def _tinybert_attention(cfg: mc.TinyBERTMethodConfig, dims: Dims, pairs) -> tuple[Callable, dict, dict]:
    """The attention term's loss and the features it reads from each model: the pre-softmax scores
    QKᵀ/√d from hooks on the query/key projections (``scores``, the paper's), or the softmax output
    (``probs``, needs eager attention)."""
    s_layers, t_layers = tuple(m for m, _ in pairs), tuple(t for _, t in pairs)
    if cfg.attention_target == "probs":

        def probs(x: LossInputs) -> torch.Tensor:
            return sum(
                feature_losses.attention_mse(x.student.attentions[m], x.teacher.attentions[t], token_mask(x))
                for m, t in pairs
            )

        return probs, {"attentions": s_layers}, {"attentions": t_layers}

    def hooks(config, layers):
        model = meta_model(config)
        return tuple(
            HookSpec(
                p,
                projection_template(model, p, getattr(cfg, f"{p}_path"), f"method.{p}_path"),
                layers,
                f"method.{p}_path",
            )
            for p in ("query", "key")
        )

    heads = dims.teacher_heads

    def scores(x: LossInputs) -> torch.Tensor:
        s, t = x.student.captured, x.teacher.captured
        return sum(
            feature_losses.attention_score_mse(
                s["query"][m], s["key"][m], t["query"][tl], t["key"][tl], heads, token_mask(x)
            )
            for m, tl in pairs
        )

    return scores, {"hooks": hooks(dims.student_config, s_layers)}, {"hooks": hooks(dims.teacher_config, t_layers)}


def _tinybert_intermediate(cfg: mc.TinyBERTMethodConfig, dims: Dims, name: str) -> Objective:
    pairs = layer_map_pairs(cfg.layer_map, dims)
    s_attn, t_attn, att = {}, {}, None
    if cfg.attention_weight:
        require(
            dims.student_heads == dims.teacher_heads,
            "student.num_heads",
            dims.student_heads,
            f"differs from the teacher's {dims.teacher_heads}; TinyBERT's attention loss compares maps head by head.",
            f"use student.num_heads={dims.teacher_heads}, or method.attention_weight=0.",
        )
        att, s_attn, t_attn = _tinybert_attention(cfg, dims, pairs)
    adapters = torch.nn.ModuleDict(
        {
            "W_e": projection(dims.student_hidden, dims.teacher_hidden),
            "W_h": projection(dims.student_hidden, dims.teacher_hidden),
        }
    )

    def emb(x: LossInputs) -> torch.Tensor:
        return feature_losses.hidden_mse(x.adapters["W_e"](x.student.hidden[0]), x.teacher.hidden[0], token_mask(x))

    def hid(x: LossInputs) -> torch.Tensor:
        return sum(
            feature_losses.hidden_mse(x.adapters["W_h"](x.student.hidden[m]), x.teacher.hidden[t], token_mask(x))
            for m, t in pairs
        )

    a = "QKᵀ/√d" if cfg.attention_target == "scores" else "softmax(QKᵀ/√d)"
    return Objective(
        name=name,
        needs_teacher=True,
        adapters=adapters,
        terms=[
            LossTerm("embedding", cfg.embedding_weight, emb, "MSE(W_e·e_s, e_t)"),
            LossTerm("attention", cfg.attention_weight, att, "Σ MSE(A_s, A_t)"),
            LossTerm("hidden", cfg.hidden_weight, hid, "Σ MSE(W_h·h_s, h_t)"),
        ],
        student_features=FeatureSpec(hidden_states=(0,) + tuple(m for m, _ in pairs), **s_attn),
        teacher_features=FeatureSpec(hidden_states=(0,) + tuple(t for _, t in pairs), **t_attn),
        notes=f"A = {a}; student→teacher layers {pairs}",
        reads_logits=False,
    )


def build_tinybert(cfg: mc.TinyBERTMethodConfig, dims: Dims) -> list[Stage]:
    """Jiao et al. 2020: [general →] intermediate-layer distillation → prediction-layer distillation; with
    ``schedule=joint`` [general →] one stage whose loss is the prediction loss plus the intermediate terms."""
    stages = []
    if cfg.general.enabled:
        stages.append(
            stage(
                "general",
                _tinybert_intermediate(cfg, dims, f"{cfg.name}/general"),
                cfg.general.epochs or None,
                cfg.general.learning_rate,
                cfg.general.text_file,
                share=cfg.general.share,
            )
        )
    prediction = kd_objective(f"{cfg.name}/prediction", cfg.temperature, cfg.ce_weight)
    if cfg.schedule == "joint":  # one stage: the intermediate terms added to the prediction loss
        features = _tinybert_intermediate(cfg, dims, f"{cfg.name}/joint")
        objective = joint_objective(f"{cfg.name}/joint", prediction, features)
        budget = cfg.prediction
        return stages + [stage("distill", objective, budget.epochs, budget.learning_rate, share=budget.share)]
    stages.append(
        stage(
            "intermediate",
            _tinybert_intermediate(cfg, dims, f"{cfg.name}/intermediate"),
            cfg.intermediate.epochs,
            cfg.intermediate.learning_rate,
            share=cfg.intermediate.share,
        )
    )
    stages.append(
        stage(
            "prediction",
            prediction,
            cfg.prediction.epochs,
            cfg.prediction.learning_rate,
            share=cfg.prediction.share,
        )
    )
    return stages
