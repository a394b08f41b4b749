"""Parts several method families share: the CE and KD terms, layer maps, projections, sentence vectors,
and ``stage()``, the usual way a builder declares one of its stages."""

from __future__ import annotations

import torch

from distillkit.config import method as mc
from distillkit.errors import require
from distillkit.losses import logits as logit_losses
from distillkit.models.features import Features, layer_pairs
from distillkit.recipe.objective import Dims, LossInputs, LossTerm, Objective
from distillkit.recipe.stage import PREPARED, Budget, DataView, Stage


def stage(
    name: str,
    objective: Objective,
    epochs: float | None = None,
    learning_rate: float | None = None,
    text_file: str | None = None,
    share: float | None = None,
    **kwargs,
) -> Stage:
    """A stage trained against the prepared teacher (or none, when the objective reads no teacher) on the
    training split, or on ``text_file``. Its budget: ``epochs`` pins it (on top of the run's budget), ``share``
    takes that part of the run's budget, neither an equal part of what is left (``stages.split_budget``); rate
    None = the run's. ``kwargs`` go to ``Stage``."""
    data = kwargs.pop("data", None) or (DataView("text_file", text_file) if text_file else DataView())
    budget = Budget(
        epochs,
        learning_rate,
        learning_rate_key=f"method.{name}.learning_rate" if learning_rate is not None else "train.learning_rate",
        share=share,
    )
    kwargs.setdefault("teacher", PREPARED if objective.needs_teacher else None)
    return Stage(name, objective, data=data, budget=budget, **kwargs)


def hard_label_loss(x: LossInputs):
    """CE with the gold labels; on a mixup/cutmix batch, each row's two labels weighted as its inputs were."""
    if x.label_mix is not None:
        from distillkit.augment.mixing import mixed_cross_entropy

        return mixed_cross_entropy(x.student.logits, x.labels, *x.label_mix)
    return logit_losses.cross_entropy(x.student.logits, x.labels)


def ce_term(weight: float) -> LossTerm:
    return LossTerm("ce", weight, hard_label_loss, "CE(y, softmax(z_s))")


def kd_term(weight: float, temperature: float) -> LossTerm:
    return LossTerm(
        "kd",
        weight,
        lambda x: logit_losses.soft_target_kl(x.student.logits, x.teacher.logits, temperature),
        "T²·KL(softmax(z_t/T) ‖ softmax(z_s/T))",
    )


def joint_objective(name: str, logits: Objective, features: Objective) -> Objective:
    """One stage's loss with a feature objective's terms added to a logit objective's (a method's ``schedule=joint``:
    TinyBERT's intermediate terms in its prediction stage, MiniLM's relations in its fine-tuning): the features,
    adapters and teacher reads of both, one budget."""
    return Objective(
        name=name,
        terms=logits.terms + features.terms,
        needs_teacher=logits.needs_teacher or features.needs_teacher,
        student_features=features.student_features,
        teacher_features=features.teacher_features,
        adapters=features.adapters,
        notes="; ".join(n for n in (logits.notes, features.notes) if n),
        reads_logits=True,
    )


def layer_map_pairs(cfg: mc.LayerMapConfig, dims: Dims) -> list[tuple[int, int]]:
    return layer_pairs(
        "method.layer_map",
        cfg.strategy,
        dims.student_layers,
        dims.teacher_layers,
        cfg.layers,
        cfg.final,
        dims.pair_layers,
        dims.copied_layers,
    )


def projection(d_in: int, d_out: int) -> torch.nn.Linear:
    """A learned map from student to teacher width; the identity at start when the widths match, so a
    student initialised from teacher layers is not disturbed by a random projection."""
    layer = torch.nn.Linear(d_in, d_out)
    if d_in == d_out:
        with torch.no_grad():
            layer.weight.copy_(torch.eye(d_in))
            layer.bias.zero_()
    return layer


def token_mask(x: LossInputs) -> torch.Tensor:
    return x.attention_mask


def sentence_vector(features: Features, layer: int, kind: str, mask: torch.Tensor) -> torch.Tensor:
    """The (B, H) vector relation and contrastive losses compare: [CLS] or the mean over real tokens."""
    hidden = features.hidden[layer]
    if kind == "cls":
        return hidden[:, 0]
    m = mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * m).sum(1) / m.sum(1).clamp_min(1.0)


def same_width(dims: Dims, method: str) -> None:
    require(
        dims.student_hidden == dims.teacher_hidden,
        "student.hidden_size",
        dims.student_hidden,
        f"differs from the teacher's {dims.teacher_hidden}, and method={method} compares hidden states "
        "directly (no projection).",
        "use a student of the teacher's width, or method=fitnets / tinybert / minilm, which handle different widths.",
    )


def logit_terms(ce_weight: float, kd_weight: float, temperature: float) -> list[LossTerm]:
    return [ce_term(ce_weight), kd_term(kd_weight, temperature)]


def kd_objective(name: str, temperature: float, ce_weight: float) -> Objective:
    return Objective(
        name=name,
        terms=[ce_term(ce_weight), kd_term(1.0 - ce_weight, temperature)],
        needs_teacher=True,
        notes=f"T={temperature:g}, α=ce_weight={ce_weight:g} weights the hard-label term",
    )


def link_stages(inner, dims: Dims, name: str, student, teacher, group: str) -> list[Stage]:
    """The stages of method ``inner`` (a validated method config) training model ``student`` (a ``StudentSpec``)
    from ``teacher`` (a ``TeacherSpec``): one stage named ``name``, or ``name-<stage>`` for a multi-stage
    method; stages that would read the prepared teacher read ``teacher``. The last one produces the model."""
    from distillkit.methods import build_stages

    stages = build_stages(inner, dims)
    for s in stages:
        own = s.name
        s.name = name if len(stages) == 1 else f"{name}-{own}"
        s.student, s.group = student, group
        if s.teacher is not None and s.teacher.kind == "prepared":
            s.teacher = teacher
        if s.budget.learning_rate is not None:
            s.budget.learning_rate_key = f"method.inner.{own}.learning_rate"
    stages[-1].produces = True
    return stages


def without_teacher_yet(fn):
    """A term that reads a teacher which may have nothing to give yet (a snapshot source before its first
    snapshot): 0, with the student's graph kept, until it does."""

    def term(x: LossInputs) -> torch.Tensor:
        return x.student.logits.float().sum() * 0.0 if x.teacher is None else fn(x)

    return term
