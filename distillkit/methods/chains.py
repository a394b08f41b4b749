"""Teacher chains: ``takd`` (Mirzadeh et al. 2020, teacher assistants): teacher → assistant(s) → student, each
link a stage (or a multi-stage inner method) distilling the next model from the one before."""

from __future__ import annotations

import copy

from distillkit.config import self_distill as sc
from distillkit.errors import require
from distillkit.methods.common import link_stages
from distillkit.recipe.objective import Dims
from distillkit.recipe.stage import PREPARED, Stage, StudentSpec, TeacherSpec


def assistant_depths(cfg: sc.TAKDMethodConfig, dims: Dims) -> list[int]:
    """The assistants' depths, checked to lie strictly between the student's and the teacher's."""
    t, s = dims.teacher_layers, dims.student_layers
    depths = cfg.assistants if cfg.assistants is not None else [round((t + s) / 2)]
    require(
        s + 1 < t,
        "method",
        cfg.name,
        f"needs room for an assistant between the student's {s} layers and the teacher's {t}.",
        "use a shallower student (e.g. student=bert-2l), or method=kd.",
    )
    for depth in depths:
        where = "as deep as or deeper than the teacher" if depth >= t else "as shallow as or shallower than the student"
        require(
            s < depth < t,
            "method.assistants",
            depth if cfg.assistants is None else cfg.assistants,
            f"has an assistant {where} ({depth} layers; teacher {t}, student {s}).",
            f"use depths strictly between {s} and {t}, deepest first, e.g. method.assistants=[{(t + s) // 2}].",
        )
    return depths


def build_takd(cfg: sc.TAKDMethodConfig, dims: Dims) -> list[Stage]:
    """teacher → assistant_1 → … → student, each link distilled with ``cfg.inner``; assistants are derived from
    the teacher like the student (same width rules and initialisation), only deeper."""
    stages, teacher, teacher_config = [], PREPARED, dims.teacher_config
    for depth in assistant_depths(cfg, dims):
        config = copy.deepcopy(dims.student_config)
        config.num_hidden_layers = depth
        link = Dims.from_configs(config, teacher_config, dims.train_examples)
        name = f"assistant{depth}"
        stages += link_stages(cfg.inner, link, name, StudentSpec(name, "depth", num_layers=depth), teacher, "assistant")
        teacher, teacher_config = TeacherSpec("stage", (name,)), config
    last = Dims.from_configs(dims.student_config, teacher_config, dims.train_examples)
    return stages + link_stages(cfg.inner, last, "student", StudentSpec(), teacher, "student")
