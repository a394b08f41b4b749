"""Method builders, one module per family (``logits``, ``features``, ``relations``, ``self_distill``,
``chains``); ``distillkit/config/registry.py`` maps each method's name to its schema and builder."""

from __future__ import annotations

from distillkit.config.registry import REGISTRY
from distillkit.recipe.objective import Dims, Objective
from distillkit.recipe.stage import Stage


def build_stages(cfg, dims: Dims | None = None) -> list[Stage]:
    """The stages of method ``cfg.name`` for models of shape ``dims`` (None only for none/kd)."""
    return REGISTRY[cfg.name].build(cfg, dims)


def build_objective(cfg) -> Objective:
    """The single stage's objective of a method that needs no model shapes (none, kd)."""
    (stage,) = build_stages(cfg)
    return stage.objective
