"""The method table: each ``method=<name>`` (a ``conf/method/<name>.yaml``) → its schema and its builder,
in one place. Light to import (schemas only; a builder's module is imported when the method is built), so
the config check that runs before anything heavy can use it.

A builder takes the method's validated config and the two models' shapes (``Dims``) and returns the
method's stages (``distillkit.stage_types.Stage``). Builders live by family under ``distillkit/methods/``;
a new family adds its module and its rows here.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from distillkit import llm_config as lc
from distillkit import method_config as mc
from distillkit import self_config as sc


@dataclass(frozen=True)
class MethodEntry:
    schema: type
    builder: str  # "family_module:function" under distillkit.methods
    family: str  # the README's grouping: logits, features, relations, self-distillation, chains, llm
    tasks: tuple[str, ...] = ("classification",)  # the tasks (task.name) whose models it distils

    def build(self, cfg, dims):
        module, function = self.builder.split(":")
        return getattr(importlib.import_module(f"distillkit.methods.{module}"), function)(cfg, dims)


LM = ("causal_lm",)
REGISTRY: dict[str, MethodEntry] = {
    "none": MethodEntry(mc.NoneMethodConfig, "logits:build_none", "logits"),
    "kd": MethodEntry(mc.KDMethodConfig, "logits:build_kd", "logits"),
    "fitnets": MethodEntry(mc.FitNetsMethodConfig, "features:build_fitnets", "features"),
    "attention_transfer": MethodEntry(mc.AttentionTransferMethodConfig, "features:build_attention_transfer",
                                      "features"),
    "pkd": MethodEntry(mc.PKDMethodConfig, "features:build_pkd", "features"),
    "distilbert": MethodEntry(mc.DistilBERTMethodConfig, "features:build_distilbert", "features"),
    "tinybert": MethodEntry(mc.TinyBERTMethodConfig, "features:build_tinybert", "features"),
    "rkd": MethodEntry(mc.RKDMethodConfig, "relations:build_rkd", "relations"),
    "crd": MethodEntry(mc.CRDMethodConfig, "relations:build_crd", "relations"),
    "minilm": MethodEntry(mc.MiniLMMethodConfig, "relations:build_minilm", "relations"),
    "born_again": MethodEntry(sc.BornAgainMethodConfig, "self_distill:build_born_again", "self-distillation"),
    "self_kd": MethodEntry(sc.SelfKDMethodConfig, "self_distill:build_self_kd", "self-distillation"),
    "snapshot_ensemble": MethodEntry(sc.SnapshotEnsembleMethodConfig, "self_distill:build_snapshot_ensemble",
                                     "self-distillation"),
    "ema_teacher": MethodEntry(sc.EMATeacherMethodConfig, "self_distill:build_ema_teacher", "self-distillation"),
    "noisy_student": MethodEntry(sc.NoisyStudentMethodConfig, "self_distill:build_noisy_student",
                                 "self-distillation"),
    "takd": MethodEntry(sc.TAKDMethodConfig, "chains:build_takd", "chains"),
    "sft": MethodEntry(lc.SFTMethodConfig, "llm:build_sft", "llm", LM),
    "forward_kl": MethodEntry(lc.ForwardKLMethodConfig, "llm:build_forward_kl", "llm", LM),
    "reverse_kl": MethodEntry(lc.ReverseKLMethodConfig, "llm:build_reverse_kl", "llm", LM),
    "gkd": MethodEntry(lc.GKDMethodConfig, "llm:build_gkd", "llm", LM),
    "seq_kd": MethodEntry(lc.SeqKDMethodConfig, "llm:build_seq_kd", "llm", LM),
}

METHOD_SCHEMAS: dict[str, type] = {name: entry.schema for name, entry in REGISTRY.items()}
