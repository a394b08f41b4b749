"""The method table: each ``method=<name>`` (a ``conf/method/<name>.yaml``) → its schema and its builder,
in one place. Light to import (schemas only; a builder's module is imported when the method is built), so
the config check that runs before anything heavy can use it.

A builder takes the method's validated config and the two models' shapes (``Dims``) and returns the
method's stages (``distillkit.recipe.stage.Stage``). Builders live by family under ``distillkit/methods/``;
a new family adds its module and its rows here.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from omegaconf import DictConfig, OmegaConf

from distillkit.config import blackbox as bc
from distillkit.config import llm as lc
from distillkit.config import method as mc
from distillkit.config import self_distill as sc
from distillkit.config.build import build_section
from distillkit.errors import ConfigError, one_of, require


@dataclass(frozen=True)
class MethodEntry:
    schema: type
    builder: str  # "family_module:function" under distillkit.methods
    # the docs' grouping (docs/methods.md): logits, features, relations, self-distillation, chains, llm; a task's
    # row (config/task.py TASKS) names the families whose methods apply to it
    family: str
    generates: bool = False  # the method's teacher writes text (an endpoint teacher can serve it)
    needs_endpoint: bool = False  # only an endpoint teacher serves it (a sweep's jobs with another teacher skip it)

    def build(self, cfg, dims):
        module, function = self.builder.split(":")
        return getattr(importlib.import_module(f"distillkit.methods.{module}"), function)(cfg, dims)


REGISTRY: dict[str, MethodEntry] = {
    "none": MethodEntry(mc.NoneMethodConfig, "logits:build_none", "logits"),
    "kd": MethodEntry(mc.KDMethodConfig, "logits:build_kd", "logits"),
    "fitnets": MethodEntry(mc.FitNetsMethodConfig, "features:build_fitnets", "features"),
    "attention_transfer": MethodEntry(
        mc.AttentionTransferMethodConfig, "features:build_attention_transfer", "features"
    ),
    "pkd": MethodEntry(mc.PKDMethodConfig, "features:build_pkd", "features"),
    "distilbert": MethodEntry(mc.DistilBERTMethodConfig, "features:build_distilbert", "features"),
    "tinybert": MethodEntry(mc.TinyBERTMethodConfig, "features:build_tinybert", "features"),
    "rkd": MethodEntry(mc.RKDMethodConfig, "relations:build_rkd", "relations"),
    "crd": MethodEntry(mc.CRDMethodConfig, "relations:build_crd", "relations"),
    "minilm": MethodEntry(mc.MiniLMMethodConfig, "relations:build_minilm", "relations"),
    "born_again": MethodEntry(sc.BornAgainMethodConfig, "self_distill:build_born_again", "self-distillation"),
    "self_kd": MethodEntry(sc.SelfKDMethodConfig, "self_distill:build_self_kd", "self-distillation"),
    "snapshot_ensemble": MethodEntry(
        sc.SnapshotEnsembleMethodConfig, "self_distill:build_snapshot_ensemble", "self-distillation"
    ),
    "ps_kd": MethodEntry(sc.PSKDMethodConfig, "self_distill:build_ps_kd", "self-distillation"),
    "ema_teacher": MethodEntry(sc.EMATeacherMethodConfig, "self_distill:build_ema_teacher", "self-distillation"),
    "noisy_student": MethodEntry(sc.NoisyStudentMethodConfig, "self_distill:build_noisy_student", "self-distillation"),
    "takd": MethodEntry(sc.TAKDMethodConfig, "chains:build_takd", "chains"),
    "sft": MethodEntry(lc.SFTMethodConfig, "llm:build_sft", "llm"),
    "forward_kl": MethodEntry(lc.ForwardKLMethodConfig, "llm:build_forward_kl", "llm"),
    "reverse_kl": MethodEntry(lc.ReverseKLMethodConfig, "llm:build_reverse_kl", "llm"),
    "gkd": MethodEntry(lc.GKDMethodConfig, "llm:build_gkd", "llm"),
    "minillm": MethodEntry(lc.MiniLLMMethodConfig, "llm:build_minillm", "llm"),
    "seq_kd": MethodEntry(lc.SeqKDMethodConfig, "llm:build_seq_kd", "llm"),
    "blackbox_sft": MethodEntry(lc.BlackboxSFTMethodConfig, "llm:build_blackbox_sft", "llm", generates=True),
    "blackbox_label": MethodEntry(
        bc.BlackboxLabelMethodConfig, "logits:build_blackbox_label", "logits", generates=True, needs_endpoint=True
    ),
    "star": MethodEntry(lc.StarMethodConfig, "self_improve:build_star", "llm"),
    "critique_revise": MethodEntry(
        lc.CritiqueReviseMethodConfig, "self_improve:build_critique_revise", "llm", generates=True
    ),
}

METHOD_SCHEMAS: dict[str, type] = {name: entry.schema for name, entry in REGISTRY.items()}


def build_method(node: dict, key: str = "method"):
    """The ``method`` section validated against its method's schema; a method that distils each link with an
    ``inner`` method (born_again, takd) gets that one validated too, against the table."""
    one_of(f"{key}.name", node["name"], METHOD_SCHEMAS)
    method = build_section(key, METHOD_SCHEMAS[node["name"]], node)
    if hasattr(method, "inner"):
        method.inner = inner_method(method.inner, f"{key}.inner")
    return method


def inner_method(value, key: str):
    """``value`` (a dict with ``name``) validated against its method's schema; returns the schema object."""
    if isinstance(value, DictConfig):
        value = OmegaConf.to_container(value, resolve=True)
    if not isinstance(value, dict):
        return value  # already built (a config object passed in by code)
    name = value.get("name")
    inner_names = [n for n in METHOD_SCHEMAS if n not in sc.INNER_EXCLUDED and n != "none"]
    require(
        name in inner_names,
        f"{key}.name",
        name,
        "is not a method a link can be distilled with.",
        f"use one of {', '.join(inner_names)}, e.g. {key}={{name: kd, temperature: 4.0, ce_weight: 0.5}}.",
    )
    try:
        return build_section(key, METHOD_SCHEMAS[name], value)
    except ConfigError as err:
        if err.key.startswith("method.") and not err.key.startswith(key):
            err = ConfigError(key + err.key[len("method") :], err.value, err.problem, err.fix)
        raise err from None
