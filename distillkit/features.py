"""What a loss can read from a forward pass, and how to get only that.

A method declares a ``FeatureSpec`` per model (student, teacher); ``forward_features`` asks the model
for exactly those outputs (hidden states and attention maps cost memory, so they are off unless a
loss needs them) and returns them as a small typed ``Features`` record instead of a string-keyed dict.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

MODEL_INPUT_KEYS = ("input_ids", "attention_mask", "token_type_ids", "position_ids")


@dataclass(frozen=True)
class FeatureSpec:
    """Which outputs a model must return for a method's losses."""

    hidden_states: bool = False
    attentions: bool = False  # needs eager attention; models.py switches it on and says so


@dataclass
class Features:
    """One model's outputs for a batch. Shapes: logits (B, C); hidden_states L+1 × (B, S, H) with the
    embeddings first; attentions L × (B, heads, S, S)."""

    logits: torch.Tensor
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


def model_inputs(batch: dict) -> dict:
    """The entries of a collated batch that the model's forward takes (no labels: losses own those)."""
    return {k: v for k, v in batch.items() if k in MODEL_INPUT_KEYS}


def forward_features(model: torch.nn.Module, batch: dict, spec: FeatureSpec) -> Features:
    """Run ``model`` on ``batch`` and return the features ``spec`` asks for."""
    out = model(
        **model_inputs(batch),
        output_hidden_states=spec.hidden_states,
        output_attentions=spec.attentions,
        return_dict=True,
    )
    return Features(
        logits=out.logits,
        hidden_states=out.hidden_states if spec.hidden_states else None,
        attentions=out.attentions if spec.attentions else None,
    )
