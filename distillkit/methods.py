"""The method table: a method's name → its stages, each with weighted loss terms, the features they
read, and any trainable adapters (projections, embedding heads) it owns.

``conf/method/*.yaml`` are the methods a user can pick; ``BUILDERS`` maps each ``name:`` to the
function that builds it from its config and the two models' shapes (``Dims``). Builders check what
depends on the models (layer maps, widths, head counts, hook paths) and raise ``ConfigError`` at plan
time, before any weight is loaded. A method differs from another only by what it declares here: the
trainer is the same for all of them.
"""

from __future__ import annotations

from typing import Callable

import torch

from distillkit import method_config as mc
from distillkit.errors import require
from distillkit.features import Features, FeatureSpec, HookSpec, layer_pairs, meta_model, projection_template
from distillkit.losses import contrastive
from distillkit.losses import features as feature_losses
from distillkit.losses import logits as logit_losses
from distillkit.losses import relations
from distillkit.method_types import Dims, LossInputs, LossTerm, Method, MethodStage


# ------------------------------------------------------------------------------------- shared parts
def _ce_term(weight: float) -> LossTerm:
    return LossTerm("ce", weight, lambda x: logit_losses.cross_entropy(x.student.logits, x.labels),
                    "CE(y, softmax(z_s))")


def _kd_term(weight: float, temperature: float) -> LossTerm:
    return LossTerm("kd", weight,
                    lambda x: logit_losses.soft_target_kl(x.student.logits, x.teacher.logits, temperature),
                    "T²·KL(softmax(z_t/T) ‖ softmax(z_s/T))")


def _pairs(cfg: mc.LayerMapConfig, dims: Dims) -> list[tuple[int, int]]:
    return layer_pairs("method.layer_map", cfg.strategy, dims.student_layers, dims.teacher_layers, cfg.layers,
                       cfg.final, dims.pair_layers, dims.copied_layers)


def _projection(d_in: int, d_out: int) -> torch.nn.Linear:
    """A learned map from student to teacher width; the identity at start when the widths match, so a
    student initialised from teacher layers is not disturbed by a random projection."""
    layer = torch.nn.Linear(d_in, d_out)
    if d_in == d_out:
        with torch.no_grad():
            layer.weight.copy_(torch.eye(d_in))
            layer.bias.zero_()
    return layer


def _mask(x: LossInputs) -> torch.Tensor:
    return x.attention_mask


def _sentence_vector(features: Features, layer: int, kind: str, mask: torch.Tensor) -> torch.Tensor:
    """The (B, H) vector relation and contrastive losses compare: [CLS] or the mean over real tokens."""
    hidden = features.hidden[layer]
    if kind == "cls":
        return hidden[:, 0]
    m = mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * m).sum(1) / m.sum(1).clamp_min(1.0)


def _same_width(dims: Dims, method: str) -> None:
    require(dims.student_hidden == dims.teacher_hidden, "student.hidden_size", dims.student_hidden,
            f"differs from the teacher's {dims.teacher_hidden}, and method={method} compares hidden states "
            "directly (no projection).", "use a student of the teacher's width, or method=fitnets / tinybert / "
            "minilm, which handle different widths.")


def _logit_terms(ce_weight: float, kd_weight: float, temperature: float) -> list[LossTerm]:
    return [_ce_term(ce_weight), _kd_term(kd_weight, temperature)]


# ------------------------------------------------------------------------------------------ builders
def build_none(cfg: mc.NoneMethodConfig, dims: Dims | None = None) -> list[MethodStage]:
    """Labels only: L = CE(y, softmax(z_s)). The baseline, and how the teacher is prepared."""
    return [MethodStage("distill", Method(name=cfg.name, terms=[_ce_term(1.0)], needs_teacher=False))]


def _kd_method(name: str, temperature: float, ce_weight: float) -> Method:
    return Method(name=name, terms=[_ce_term(ce_weight), _kd_term(1.0 - ce_weight, temperature)], needs_teacher=True,
                  notes=f"T={temperature:g}, α=ce_weight={ce_weight:g} weights the hard-label term")


def build_kd(cfg: mc.KDMethodConfig, dims: Dims | None = None) -> list[MethodStage]:
    """Hinton et al. 2015: L = α·CE(y, softmax(z_s)) + (1 − α)·T²·KL(softmax(z_t/T) ‖ softmax(z_s/T))."""
    return [MethodStage("distill", _kd_method(cfg.name, cfg.temperature, cfg.ce_weight))]


def build_fitnets(cfg: mc.FitNetsMethodConfig, dims: Dims) -> list[MethodStage]:
    """Romero et al. 2015. Stage ``hints``: L = Σ_(m,t) MSE(W_m·h_s^m, h_t^t); stage ``distill``: KD."""
    pairs = _pairs(cfg.layer_map, dims)
    adapters = torch.nn.ModuleDict(
        {f"hint_{m}": _projection(dims.student_hidden, dims.teacher_hidden) for m, _ in pairs})

    def hint_loss(x: LossInputs) -> torch.Tensor:
        return sum(feature_losses.hidden_mse(x.adapters[f"hint_{m}"](x.student.hidden[m]), x.teacher.hidden[t],
                                             _mask(x))
                   for m, t in pairs)

    hints = Method(
        name=f"{cfg.name}/hints", needs_teacher=True, adapters=adapters,
        terms=[LossTerm("hint", cfg.hint_weight, hint_loss, "Σ MSE(W·h_s, h_t)")],
        student_features=FeatureSpec(hidden_states=tuple(m for m, _ in pairs)),
        teacher_features=FeatureSpec(hidden_states=tuple(t for _, t in pairs)),
        notes=f"student→teacher layers {pairs}, W learned", reads_logits=False)
    return [MethodStage("hints", hints, cfg.hints.epochs, cfg.hints.learning_rate),
            MethodStage("distill", _kd_method(f"{cfg.name}/kd", cfg.temperature, cfg.ce_weight))]


def build_attention_transfer(cfg: mc.AttentionTransferMethodConfig, dims: Dims) -> list[MethodStage]:
    """Zagoruyko & Komodakis 2017 on token positions: A = Σ_c |h_c|^p per token."""
    pairs = _pairs(cfg.layer_map, dims)

    def at_loss(x: LossInputs) -> torch.Tensor:
        return sum(feature_losses.attention_transfer(x.student.hidden[m], x.teacher.hidden[t], _mask(x), p=cfg.p)
                   for m, t in pairs)

    at = LossTerm("at", cfg.at_weight, at_loss, "Σ ‖A_s/‖A_s‖ − A_t/‖A_t‖‖₂")
    method = Method(name=cfg.name, needs_teacher=True, terms=_logit_terms(cfg.ce_weight, cfg.kd_weight, cfg.temperature)
                    + [at], student_features=FeatureSpec(hidden_states=tuple(m for m, _ in pairs)),
                    teacher_features=FeatureSpec(hidden_states=tuple(t for _, t in pairs)),
                    notes=f"A = Σ_c |h_c|^{cfg.p:g} per token; student→teacher layers {pairs}")
    return [MethodStage("distill", method)]


def build_rkd(cfg: mc.RKDMethodConfig, dims: Dims) -> list[MethodStage]:
    """Park et al. 2019: distance and angle potentials on the batch's final-layer sentence vectors."""
    s_layer, t_layer = dims.student_layers, dims.teacher_layers

    def vectors(x: LossInputs):
        return (_sentence_vector(x.student, s_layer, cfg.embedding, _mask(x)),
                _sentence_vector(x.teacher, t_layer, cfg.embedding, _mask(x)))

    terms = _logit_terms(cfg.ce_weight, cfg.kd_weight, cfg.temperature) + [
        LossTerm("rkd_distance", cfg.distance_weight, lambda x: relations.rkd_distance(*vectors(x)),
                 "Huber(ψ_D(s), ψ_D(t))"),
        LossTerm("rkd_angle", cfg.angle_weight, lambda x: relations.rkd_angle(*vectors(x)), "Huber(ψ_A(s), ψ_A(t))"),
    ]
    method = Method(name=cfg.name, needs_teacher=True, terms=terms,
                    student_features=FeatureSpec(hidden_states=(s_layer,)),
                    teacher_features=FeatureSpec(hidden_states=(t_layer,)),
                    notes=f"on the final layer's {cfg.embedding} vector")
    return [MethodStage("distill", method)]


def build_crd(cfg: mc.CRDMethodConfig, dims: Dims) -> list[MethodStage]:
    """Tian et al. 2020: NCE between student and teacher embeddings against a momentum memory bank."""
    s_layer, t_layer = dims.student_layers, dims.teacher_layers
    n = dims.train_examples
    require(n >= 2, "data", n, "has fewer than 2 training examples: CRD needs negatives.", "use more data.")
    k = cfg.num_negatives if cfg.num_negatives is not None else contrastive.default_negatives(n)
    require(k <= n - 1, "method.num_negatives", k, f"exceeds the {n - 1} other training examples.",
            f"use at most {n - 1}, or null to scale the paper's 16384 to the data.")
    adapters = torch.nn.ModuleDict({
        "embed_student": contrastive.CRDHead(dims.student_hidden, cfg.feat_dim),
        "embed_teacher": contrastive.CRDHead(dims.teacher_hidden, cfg.feat_dim),
        "memory": contrastive.CRDMemory(n, cfg.feat_dim, k, cfg.nce_temperature, cfg.momentum, seed=0),
    })

    def crd(x: LossInputs) -> torch.Tensor:
        s = x.adapters["embed_student"](_sentence_vector(x.student, s_layer, cfg.embedding, _mask(x)))
        t = x.adapters["embed_teacher"](_sentence_vector(x.teacher, t_layer, cfg.embedding, _mask(x)))
        return contrastive.crd_loss(s, t, x.adapters["memory"], x.batch["idx"])

    terms = _logit_terms(cfg.ce_weight, cfg.kd_weight, cfg.temperature) + [
        LossTerm("crd", cfg.crd_weight, crd, "NCE(g_s(s), g_t(t); memory)")]
    method = Method(name=cfg.name, needs_teacher=True, terms=terms, adapters=adapters,
                    student_features=FeatureSpec(hidden_states=(s_layer,)),
                    teacher_features=FeatureSpec(hidden_states=(t_layer,)),
                    notes=f"K={k} negatives of {n}, τ={cfg.nce_temperature:g}, momentum {cfg.momentum:g}, "
                          f"{cfg.feat_dim}-d heads")
    return [MethodStage("distill", method)]


def build_pkd(cfg: mc.PKDMethodConfig, dims: Dims) -> list[MethodStage]:
    """Sun et al. 2019: patient KD on the [CLS] states of mapped intermediate layers."""
    _same_width(dims, cfg.name)
    pairs = _pairs(cfg.layer_map, dims)

    def pt(x: LossInputs) -> torch.Tensor:
        return sum(feature_losses.normalized_mse(x.student.hidden[m][:, 0], x.teacher.hidden[t][:, 0])
                   for m, t in pairs)

    terms = [_ce_term(1.0 - cfg.alpha), _kd_term(cfg.alpha, cfg.temperature),
             LossTerm("pt", cfg.beta, pt, "Σ ‖h_s/‖h_s‖ − h_t/‖h_t‖‖²")]
    method = Method(name=cfg.name, needs_teacher=True, terms=terms,
                    student_features=FeatureSpec(hidden_states=tuple(m for m, _ in pairs)),
                    teacher_features=FeatureSpec(hidden_states=tuple(t for _, t in pairs)),
                    notes=f"T={cfg.temperature:g}, α={cfg.alpha:g}, β={cfg.beta:g}; [CLS] of student→teacher "
                          f"layers {pairs}")
    return [MethodStage("distill", method)]


def build_distilbert(cfg: mc.DistilBERTMethodConfig, dims: Dims) -> list[MethodStage]:
    """Sanh et al. 2019: CE + KD + cosine between the last hidden states (student from every other layer)."""
    _same_width(dims, cfg.name)
    s_layer, t_layer = dims.student_layers, dims.teacher_layers
    cos = LossTerm("cos", cfg.cos_weight,
                   lambda x: feature_losses.cosine_hidden(x.student.hidden[s_layer], x.teacher.hidden[t_layer],
                                                          _mask(x)),
                   "(1 − cos(h_s, h_t))")
    method = Method(name=cfg.name, needs_teacher=True,
                    terms=_logit_terms(cfg.ce_weight, cfg.kd_weight, cfg.temperature) + [cos],
                    student_features=FeatureSpec(hidden_states=(s_layer,)),
                    teacher_features=FeatureSpec(hidden_states=(t_layer,)), notes=f"T={cfg.temperature:g}")
    return [MethodStage("distill", method)]


def _tinybert_attention(cfg: mc.TinyBERTMethodConfig, dims: Dims, pairs) -> tuple[Callable, dict, dict]:
    """The attention term's loss and the features it reads from each model: the pre-softmax scores
    QKᵀ/√d from hooks on the query/key projections (``scores``, the paper's), or the softmax output
    (``probs``, needs eager attention)."""
    s_layers, t_layers = tuple(m for m, _ in pairs), tuple(t for _, t in pairs)
    if cfg.attention_target == "probs":
        def probs(x: LossInputs) -> torch.Tensor:
            return sum(feature_losses.attention_mse(x.student.attentions[m], x.teacher.attentions[t], _mask(x))
                       for m, t in pairs)
        return probs, {"attentions": s_layers}, {"attentions": t_layers}

    def hooks(config, layers):
        model = meta_model(config)
        return tuple(HookSpec(p, projection_template(model, p, getattr(cfg, f"{p}_path"), f"method.{p}_path"),
                              layers, f"method.{p}_path") for p in ("query", "key"))

    heads = dims.teacher_heads

    def scores(x: LossInputs) -> torch.Tensor:
        s, t = x.student.captured, x.teacher.captured
        return sum(feature_losses.attention_score_mse(s["query"][m], s["key"][m], t["query"][tl], t["key"][tl],
                                                      heads, _mask(x)) for m, tl in pairs)
    return scores, {"hooks": hooks(dims.student_config, s_layers)}, {"hooks": hooks(dims.teacher_config, t_layers)}


def _tinybert_intermediate(cfg: mc.TinyBERTMethodConfig, dims: Dims, name: str) -> Method:
    pairs = _pairs(cfg.layer_map, dims)
    s_attn, t_attn, att = {}, {}, None
    if cfg.attention_weight:
        require(dims.student_heads == dims.teacher_heads, "student.num_heads", dims.student_heads,
                f"differs from the teacher's {dims.teacher_heads}; TinyBERT's attention loss compares maps "
                "head by head.",
                f"use student.num_heads={dims.teacher_heads}, or method.attention_weight=0.")
        att, s_attn, t_attn = _tinybert_attention(cfg, dims, pairs)
    adapters = torch.nn.ModuleDict({"W_e": _projection(dims.student_hidden, dims.teacher_hidden),
                                    "W_h": _projection(dims.student_hidden, dims.teacher_hidden)})

    def emb(x: LossInputs) -> torch.Tensor:
        return feature_losses.hidden_mse(x.adapters["W_e"](x.student.hidden[0]), x.teacher.hidden[0], _mask(x))

    def hid(x: LossInputs) -> torch.Tensor:
        return sum(feature_losses.hidden_mse(x.adapters["W_h"](x.student.hidden[m]), x.teacher.hidden[t], _mask(x))
                   for m, t in pairs)

    a = "QKᵀ/√d" if cfg.attention_target == "scores" else "softmax(QKᵀ/√d)"
    return Method(
        name=name, needs_teacher=True, adapters=adapters,
        terms=[LossTerm("embedding", cfg.embedding_weight, emb, "MSE(W_e·e_s, e_t)"),
               LossTerm("attention", cfg.attention_weight, att, "Σ MSE(A_s, A_t)"),
               LossTerm("hidden", cfg.hidden_weight, hid, "Σ MSE(W_h·h_s, h_t)")],
        student_features=FeatureSpec(hidden_states=(0,) + tuple(m for m, _ in pairs), **s_attn),
        teacher_features=FeatureSpec(hidden_states=(0,) + tuple(t for _, t in pairs), **t_attn),
        notes=f"A = {a}; student→teacher layers {pairs}", reads_logits=False)


def build_tinybert(cfg: mc.TinyBERTMethodConfig, dims: Dims) -> list[MethodStage]:
    """Jiao et al. 2020: [general →] intermediate-layer distillation → prediction-layer distillation."""
    stages = []
    if cfg.general.epochs:
        stages.append(MethodStage("general", _tinybert_intermediate(cfg, dims, f"{cfg.name}/general"),
                                  cfg.general.epochs, cfg.general.learning_rate, cfg.general.text_file))
    stages.append(MethodStage("intermediate", _tinybert_intermediate(cfg, dims, f"{cfg.name}/intermediate"),
                              cfg.intermediate.epochs, cfg.intermediate.learning_rate))
    stages.append(MethodStage("prediction", _kd_method(f"{cfg.name}/prediction", cfg.temperature, cfg.ce_weight),
                              cfg.prediction.epochs, cfg.prediction.learning_rate))
    return stages


def _minilm_hooks(cfg: mc.MiniLMMethodConfig, config, layer: int) -> tuple[HookSpec, ...]:
    model = meta_model(config)
    return tuple(HookSpec(p, projection_template(model, p, getattr(cfg, f"{p}_path"), f"method.{p}_path"), (layer,),
                          f"method.{p}_path") for p in ("query", "key", "value"))


def build_minilm(cfg: mc.MiniLMMethodConfig, dims: Dims) -> list[MethodStage]:
    """Wang et al. 2020: self-attention distribution and value-relation transfer, then fine-tuning."""
    t_layer = cfg.teacher_layer or dims.teacher_layers
    require(t_layer <= dims.teacher_layers, "method.teacher_layer", t_layer,
            f"is beyond the teacher's {dims.teacher_layers} layers.",
            f"use 1..{dims.teacher_layers}, or null for the last.")
    s_layer = dims.student_layers
    heads = cfg.relation_heads or dims.student_heads
    for who, width in (("student", dims.student_hidden), ("teacher", dims.teacher_hidden)):
        require(width % heads == 0, "method.relation_heads", heads, f"does not divide the {who}'s hidden size {width}.",
                "pick a head count that divides both hidden sizes.")
    s_hooks = _minilm_hooks(cfg, dims.student_config, s_layer)
    t_hooks = _minilm_hooks(cfg, dims.teacher_config, t_layer)

    def attn_kl(x: LossInputs) -> torch.Tensor:
        s, t = x.student.captured, x.teacher.captured
        return relations.minilm_attention_kl(s["query"][s_layer], s["key"][s_layer], t["query"][t_layer],
                                             t["key"][t_layer], heads, _mask(x))

    def value_kl(x: LossInputs) -> torch.Tensor:
        return relations.minilm_value_kl(x.student.captured["value"][s_layer], x.teacher.captured["value"][t_layer],
                                         heads, _mask(x))

    transfer = Method(
        name=f"{cfg.name}/relations", needs_teacher=True,
        terms=[LossTerm("attention_kl", cfg.attention_weight, attn_kl, "KL(softmax(Q_tK_tᵀ/√d) ‖ softmax(Q_sK_sᵀ/√d))"),
               LossTerm("value_kl", cfg.value_weight, value_kl, "KL(softmax(V_tV_tᵀ/√d) ‖ softmax(V_sV_sᵀ/√d))")],
        student_features=FeatureSpec(hooks=s_hooks), teacher_features=FeatureSpec(hooks=t_hooks),
        notes=f"student layer {s_layer} ↔ teacher layer {t_layer}, {heads} relation heads", reads_logits=False)
    finetune = Method(name=f"{cfg.name}/finetune", terms=[_ce_term(1.0)], needs_teacher=False)
    return [MethodStage("relations", transfer, cfg.relations.epochs, cfg.relations.learning_rate),
            MethodStage("finetune", finetune, cfg.finetune.epochs, cfg.finetune.learning_rate)]


BUILDERS: dict[str, Callable[..., list[MethodStage]]] = {
    "none": build_none,
    "kd": build_kd,
    "fitnets": build_fitnets,
    "attention_transfer": build_attention_transfer,
    "rkd": build_rkd,
    "crd": build_crd,
    "pkd": build_pkd,
    "distilbert": build_distilbert,
    "tinybert": build_tinybert,
    "minilm": build_minilm,
}


def build_stages(cfg, dims: Dims | None = None) -> list[MethodStage]:
    """The stages of method ``cfg.name`` for models of shape ``dims`` (None only for none/kd)."""
    return BUILDERS[cfg.name](cfg, dims)


def build_method(cfg) -> Method:
    """The single stage of a method that needs no model shapes (none, kd)."""
    (stage,) = build_stages(cfg)
    return stage.method
