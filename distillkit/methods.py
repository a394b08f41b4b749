"""The method table: a method's name → its weighted loss terms, the features they read, and any
trainable adapters (projections, embedding heads) it owns.

``conf/method/*.yaml`` are the methods a user can pick; ``BUILDERS`` maps each ``name:`` to the
function that builds it. A method differs from another only by what it declares here: the trainer is
the same for all of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from distillkit.config import KDMethodConfig, NoneMethodConfig
from distillkit.features import Features, FeatureSpec
from distillkit.losses import logits as logit_losses


@dataclass
class LossInputs:
    """Everything a loss term may read for one batch."""

    student: Features
    teacher: Features | None
    labels: torch.Tensor  # (B,)
    attention_mask: torch.Tensor  # (B, S)
    adapters: torch.nn.ModuleDict


@dataclass
class LossTerm:
    """One weighted term of a method's loss; logged under ``name`` at every logging step."""

    name: str
    weight: float
    fn: Callable[[LossInputs], torch.Tensor]
    formula: str  # how the term reads in the printed loss, e.g. "CE(y, softmax(z_s))"


@dataclass
class Method:
    name: str
    terms: list[LossTerm]
    needs_teacher: bool
    student_features: FeatureSpec = field(default_factory=FeatureSpec)
    teacher_features: FeatureSpec = field(default_factory=FeatureSpec)
    adapters: torch.nn.ModuleDict = field(default_factory=torch.nn.ModuleDict)
    notes: str = ""  # symbols and hyper-parameters, printed under the formula

    def formula(self) -> str:
        """The composed loss as one line, e.g. ``L = 0.5·CE(y, softmax(z_s)) + 0.5·T²·KL(...)``."""
        parts = [f"{term.weight:g}·{term.formula}" for term in self.terms if term.weight != 0]
        text = "L = " + (" + ".join(parts) if parts else "0")
        return text + (f"    [{self.notes}]" if self.notes else "")

    def __call__(self, inputs: LossInputs) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The weighted total and each term's unweighted value (detached, for logging)."""
        total, values = None, {}
        for term in self.terms:
            if term.weight == 0:
                continue
            value = term.fn(inputs)
            values[term.name] = value.detach()
            total = term.weight * value if total is None else total + term.weight * value
        return total, values


def _ce_term(weight: float) -> LossTerm:
    return LossTerm("ce", weight, lambda x: logit_losses.cross_entropy(x.student.logits, x.labels), "CE(y, softmax(z_s))")


def build_none(cfg: NoneMethodConfig) -> Method:
    """Labels only: L = CE(y, softmax(z_s)). The baseline, and how the teacher is prepared."""
    return Method(name=cfg.name, terms=[_ce_term(1.0)], needs_teacher=False)


def build_kd(cfg: KDMethodConfig) -> Method:
    """Hinton et al. 2015: L = α·CE(y, softmax(z_s)) + (1 − α)·T²·KL(softmax(z_t/T) ‖ softmax(z_s/T))."""
    temperature = cfg.temperature
    kd = LossTerm(
        "kd",
        1.0 - cfg.ce_weight,
        lambda x: logit_losses.soft_target_kl(x.student.logits, x.teacher.logits, temperature),
        "T²·KL(softmax(z_t/T) ‖ softmax(z_s/T))",
    )
    return Method(
        name=cfg.name,
        terms=[_ce_term(cfg.ce_weight), kd],
        needs_teacher=True,
        notes=f"T={temperature:g}, α=ce_weight={cfg.ce_weight:g} weights the hard-label term",
    )


BUILDERS: dict[str, Callable[..., Method]] = {"none": build_none, "kd": build_kd}


def build_method(cfg) -> Method:
    return BUILDERS[cfg.name](cfg)
