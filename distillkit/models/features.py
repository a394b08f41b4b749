"""What a loss can read from a forward pass, and how to get only that.

A method declares a ``FeatureSpec`` per model (student, teacher): which hidden states (by index: 0 is the
embedding output, ``l`` the output of layer ``l``), which layers' attention maps, and which module outputs
to capture by forward hooks (MiniLM's queries, keys and values; TinyBERT's queries and keys).
``forward_features`` asks the model for exactly that, keeps only the requested layers (the rest is dropped
as soon as the forward returns) and returns a small typed ``Features`` record.

Layer maps (``layer_pairs``) say which student layer learns from which teacher layer; they are checked
against both models at start-up, and so are hook paths (on a weightless copy of each model).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field

import torch

from distillkit.config.task import TASKS
from distillkit.errors import ConfigError, require

log = logging.getLogger("distillkit")

# every task's input keys (its row in config/task.py TASKS), in table order: a batch holds its own task's only
MODEL_INPUT_KEYS = tuple(dict.fromkeys(k for row in TASKS.values() for k in row.input_keys))


@dataclass(frozen=True)
class HookSpec:
    """Capture the output of module ``template.format(layer=l - 1)`` for each layer ``l`` in ``layers``
    (1-based, as hidden-state indices are), stored under ``name``. ``key`` is the config key that set
    the template, for error messages."""

    name: str
    template: str
    layers: tuple[int, ...]
    key: str


@dataclass(frozen=True)
class FeatureSpec:
    """Which outputs a model must return for a method's losses (logits always)."""

    hidden_states: tuple[int, ...] = ()  # 0 = embeddings, l = output of layer l
    attentions: tuple[int, ...] = ()  # 1-based layers; needs eager attention (models.py switches it on)
    hooks: tuple[HookSpec, ...] = ()


@dataclass
class Features:
    """One model's outputs for a batch. Shapes: logits (B, C); hidden[l] (B, S, H); attentions[l]
    (B, heads, S, S); captured[name][l] whatever the hooked module returns, usually (B, S, H)."""

    logits: torch.Tensor
    hidden: dict[int, torch.Tensor] = field(default_factory=dict)
    attentions: dict[int, torch.Tensor] = field(default_factory=dict)
    captured: dict[str, dict[int, torch.Tensor]] = field(default_factory=dict)


def model_inputs(batch: dict) -> dict:
    """The entries of a collated batch that the model's forward takes (no labels: losses own those)."""
    return {k: v for k, v in batch.items() if k in MODEL_INPUT_KEYS}


@contextlib.contextmanager
def capture(model: torch.nn.Module, hooks: tuple[HookSpec, ...]):
    """Forward hooks on the modules ``hooks`` name; yields the dict they fill; always removed."""
    store: dict[str, dict[int, torch.Tensor]] = {h.name: {} for h in hooks}
    handles = []
    # Under DDP (or DataParallel) the Trainer passes the wrapper; module paths name the wrapped model's modules.
    wrapped = isinstance(model, (torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel))
    inner = model.module if wrapped else model
    try:
        for h in hooks:
            for layer in h.layers:
                module = inner.get_submodule(h.template.format(layer=layer - 1))

                def hook(_module, _inputs, output, name=h.name, layer=layer):
                    store[name][layer] = output[0] if isinstance(output, tuple) else output

                handles.append(module.register_forward_hook(hook))
        yield store
    finally:
        for handle in handles:
            handle.remove()


def mixed_embeddings(model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, plan):
    """``model``'s input embeddings of ``input_ids`` mixed by ``plan`` (an ``augment.mixing.MixPlan``; the batch's
    mask is already the union)."""
    from distillkit.models.loading import unwrap

    return plan.mix(unwrap(model).get_input_embeddings()(input_ids), attention_mask)


def forward_features(model: torch.nn.Module, batch: dict, spec: FeatureSpec) -> Features:
    """Run ``model`` on ``batch`` and return the features ``spec`` asks for."""
    inputs = model_inputs(batch)
    if batch.get("mix") is not None:  # mixup: this model's own input embeddings, mixed (augment/online.py)
        inputs["inputs_embeds"] = mixed_embeddings(
            model, inputs.pop("input_ids"), inputs["attention_mask"], batch["mix"]
        )
    with capture(model, spec.hooks) as captured:
        out = model(
            **inputs,
            output_hidden_states=bool(spec.hidden_states),
            output_attentions=bool(spec.attentions),
            return_dict=True,
        )
    hidden = {i: out.hidden_states[i] for i in spec.hidden_states} if spec.hidden_states else {}
    attentions = {}
    if spec.attentions:
        if not out.attentions:  # sdpa/flash attention return an empty tuple instead of failing
            raise RuntimeError("the model returned no attention maps: it must run with attn_implementation='eager'")
        attentions = {layer: out.attentions[layer - 1] for layer in spec.attentions}
    return Features(logits=out.logits, hidden=hidden, attentions=attentions, captured=captured)


# ------------------------------------------------------------------------------------ layer maps
LAYER_MAP_STRATEGIES = ("auto", "uniform", "skip", "last", "list")


def layer_pairs(
    key: str,
    strategy: str,
    n_student: int,
    n_teacher: int,
    layers: list[int] | None = None,
    final: bool = True,
    pair_layers: list[int] | None = None,
    copied_layers: list[int] | None = None,
) -> list[tuple[int, int]]:
    """(student layer, teacher layer) pairs in hidden-state numbering (1..n; 0 would be the embeddings).

    - ``uniform`` (TinyBERT): student layer m ↔ teacher layer round(m·N/M), m = 1..M; ends on both last layers.
    - ``skip`` (PKD-Skip): a fixed stride k = N // M: student m ↔ teacher m·k.
    - ``last`` (PKD-Last): student m ↔ teacher N − M + m.
    - ``list``: ``layers`` gives the teacher layer of student layers 1, 2, ... in order.
    - ``auto``: ``auto_layer_map``: the pair file's map, else the layers the student was copied from,
      else uniform.
    With ``final=False`` the student's last layer is left out (PKD: its output is covered by the logit loss).
    """
    m_count = n_student if final else n_student - 1
    require(
        m_count >= 1,
        f"{key}.final",
        final,
        f"leaves no student layer to map (the student has {n_student}).",
        "use a student with at least 2 layers, or final=true.",
    )
    if strategy == "auto":
        auto, source = auto_layer_map(pair_layers, copied_layers)
        strategy, layers = ("list", auto[:m_count]) if auto else ("uniform", None)
        log.info("%s.strategy=auto: %s", key, source)
    if strategy == "list":
        require(
            layers is not None and len(layers) == m_count,
            f"{key}.layers",
            layers,
            f"must list one teacher layer for each of the {m_count} mapped student layers.",
            f"give {m_count} teacher layers (1..{n_teacher}), e.g. {key}.layers="
            f"[{','.join(str(round((m + 1) * n_teacher / n_student)) for m in range(m_count))}].",
        )
        teacher = list(layers)
    elif strategy == "uniform":
        teacher = [max(1, round(m * n_teacher / n_student)) for m in range(1, m_count + 1)]
    elif strategy == "skip":
        stride = max(1, n_teacher // n_student)
        teacher = [m * stride for m in range(1, m_count + 1)]
    elif strategy == "last":
        teacher = [n_teacher - n_student + m for m in range(1, m_count + 1)]
    else:
        raise ConfigError(
            f"{key}.strategy", strategy, "is not a valid layer map.", f"use one of {', '.join(LAYER_MAP_STRATEGIES)}."
        )
    bad = [t for t in teacher if not 1 <= t <= n_teacher]
    require(
        not bad,
        f"{key}.layers" if strategy == "list" else f"{key}.strategy",
        layers if strategy == "list" else strategy,
        f"maps to teacher layer(s) {bad}, outside the teacher's 1..{n_teacher} (hidden-state numbering: "
        "0 is the embeddings, 1 the first layer).",
        f"use teacher layers between 1 and {n_teacher}, or a student with fewer layers than the teacher.",
    )
    return list(zip(range(1, m_count + 1), teacher))


def auto_layer_map(pair_layers: list[int] | None, copied_layers: list[int] | None) -> tuple[list[int] | None, str]:
    """The teacher layers (hidden-state numbering) ``strategy=auto`` maps student layers 1, 2, ... to, and
    where they come from, in this order:

    1. the pair file's ``pair.layer_map`` (conf/pair/<teacher>_<student>.yaml), a deliberate choice;
    2. the layers the student was copied from (``student.init`` uniform/first/last/list): student layer m
       started as 0-based teacher layer i, so it learns from teacher hidden state i + 1 — its feature losses
       start near zero and each layer keeps the role it was copied for;
    3. None: the caller falls back to uniform (a student from scratch or from its own checkpoint).
    """
    if pair_layers:
        return list(pair_layers), f"the pair file's layer map {list(pair_layers)} (pair.layer_map)"
    if copied_layers:
        mapped = [i + 1 for i in copied_layers]
        return mapped, (
            f"the teacher layers the student was copied from (0-based {list(copied_layers)} → hidden states {mapped})"
        )
    return None, "no pair file map and no copied layers: uniform"


# ---------------------------------------------------------------------------------------- hook paths
# Where the self-attention projections live in common encoders; {layer} is the 0-based layer index.
ATTENTION_PROJECTIONS = {
    p: ("{base}.encoder.layer.{{layer}}.attention.self." + p, "{base}.transformer.layer.{{layer}}.attention." + q)
    for p, q in (("query", "q_lin"), ("key", "k_lin"), ("value", "v_lin"))
}


def _has(model: torch.nn.Module, path: str) -> bool:
    try:
        model.get_submodule(path)
        return True
    except AttributeError:
        return False


def projection_template(model: torch.nn.Module, which: str, override: str | None, key: str) -> str:
    """The module path template of ``which`` (query/key/value) projection: ``override`` if given, else
    the first known layout that exists in ``model``. Raises ConfigError naming ``key`` when none fits."""
    if override:
        require(
            "{layer}" in override,
            key,
            override,
            "has no {layer} placeholder for the layer index.",
            "write the path with {layer}, e.g. bert.encoder.layer.{layer}.attention.self.query.",
        )
        require(
            _has(model, override.format(layer=0)),
            key,
            override,
            f"is not a module of {type(model).__name__} (checked for layer 0).",
            "list the model's modules with [n for n, _ in model.named_modules()] and pick the projection's path.",
        )
        return override
    base = getattr(model, "base_model_prefix", "")
    for template in ATTENTION_PROJECTIONS[which]:
        template = template.format(base=base)
        if _has(model, template.format(layer=0)):
            return template
    raise ConfigError(
        key,
        None,
        f"is not set and {type(model).__name__} has none of the known {which} "
        "projection layouts (BERT/RoBERTa, DistilBERT).",
        f"set {key} to the module path with a {{layer}} placeholder, e.g. "
        f"bert.encoder.layer.{{layer}}.attention.self.{which}.",
    )


def meta_model(config):
    """A weightless model of ``config`` (on the meta device), for checking module paths at start-up."""
    from transformers import AutoModelForSequenceClassification

    with torch.device("meta"):
        return AutoModelForSequenceClassification.from_config(config)
