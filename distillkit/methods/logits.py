"""Methods on the output logits alone: ``none`` (labels only, the baseline) and ``kd`` (Hinton et al. 2015)."""

from __future__ import annotations

from distillkit.config import method as mc
from distillkit.methods.common import ce_term, kd_objective, stage
from distillkit.recipe.objective import Dims, Objective
from distillkit.recipe.stage import Stage


def build_none(cfg: mc.NoneMethodConfig, dims: Dims | None = None) -> list[Stage]:
    """Labels only: L = CE(y, softmax(z_s)). The baseline, and how the teacher is prepared."""
    return [stage("distill", Objective(name=cfg.name, terms=[ce_term(1.0)], needs_teacher=False))]


def build_kd(cfg: mc.KDMethodConfig, dims: Dims | None = None) -> list[Stage]:
    """Hinton et al. 2015: L = α·CE(y, softmax(z_s)) + (1 − α)·T²·KL(softmax(z_t/T) ‖ softmax(z_s/T))."""
    return [stage("distill", kd_objective(cfg.name, cfg.temperature, cfg.ce_weight))]
