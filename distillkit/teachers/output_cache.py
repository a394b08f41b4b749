"""The ``cached`` teacher source: a frozen teacher's outputs computed once per training example, stored on disk
content-addressed, and served by example index in every later step, epoch and run.

``teacher.cache_outputs`` (auto | always | never) decides per stage (``decide``). A stage qualifies when its
teacher is frozen (the prepared teacher, a model an earlier stage produced, an ensemble of those: not an EMA,
not snapshots, not the model the stage trains) and its data view is the same every epoch (no online
augmentation: mixup, cutmix and consistency change the inputs at every step). ``auto`` also weighs the size
against ``teacher.cache_budget_gb`` and the free disk, and leaves alone a stage teacher seen for one epoch
(nothing to reuse); it logs what it decided and why. ``always`` refuses, before anything runs, a run where a
stage cannot be cached (``check``).

What is stored: the outputs the stage's losses read (``FeatureSpec``): logits always (float32: a temperature
divides them, and they are small), and the hidden states, attention maps and hooked module outputs the method
reads, in ``teacher.cache_precision`` (fp16 by default: the MSE / cosine / attention losses do not see the
difference; a value beyond fp16's range makes the stage run online instead, and says so). Only real tokens are
stored (padding is masked out of every loss), each example's tokens at its offset; served, they are placed at
the batch's real positions and the padding is zero.

The entry (``distillkit/teachers/output_store.py``) is keyed by everything that determines the outputs: a digest of
the teacher's weights (each member's, for an ensemble), a digest of the stage's data view exactly as the teacher
sees it (token ids, attention masks, token types, row by row: the data, its tokenisation, the view and any offline
augmented copies are all in it), the feature spec, the precision, the attention implementation and the format.
It lives under ``<cache>/teacher_outputs/<key>``, made in ``.building-<key>`` and renamed when complete, under
the entry's file lock: of several jobs of a sweep, one builds and the others wait and reuse it. Under DDP the
build is sharded (each process computes its share of the batches into the same files) and each process then
reads only the rows of its own shard.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from distillkit import dist
from distillkit import store as cache
from distillkit.errors import ConfigError
from distillkit.models.features import Features, FeatureSpec
from distillkit.teachers import output_store as store
from distillkit.teachers.cache_rules import ROW, SHARDED, sharded, why_not
from distillkit.teachers.output_store import KIND, PRECISIONS, Layout, row_lengths
from distillkit.teachers.sources import TeacherSource

log = logging.getLogger("distillkit")

MODES = ("auto", "always", "never")


# ------------------------------------------------------------------------------------------- the decision
@dataclass
class Decision:
    use: bool
    reason: str


def check(cfg, stages) -> None:
    """``teacher.cache_outputs=always``: refuse, before anything runs, a stage whose teacher cannot be cached."""
    if cfg.teacher.cache_outputs != "always":
        return
    for stage in stages:
        if stage.teacher is None or stage.trains_teacher:
            continue
        online = _online(cfg, stage)
        reason = SHARDED if sharded(cfg) else why_not(stage, online)
        if reason is not None:
            fix = f"drop augmentation={','.join(online)} for this run, or " if online else ""
            raise ConfigError(
                "teacher.cache_outputs",
                "always",
                f"cannot cache the teacher of stage {stage.name!r} (method={cfg.method.name}): {reason}.",
                f"{fix}use teacher.cache_outputs=auto (it caches the stages it can and logs why not for the others).",
            )


def _online(cfg, stage) -> list[str]:
    from distillkit.augment.online import online_options

    return online_options(cfg.augmentation.online, stage)


def decide(cfg, stage, rows: int, tokens: int, pairs: int, spec: FeatureSpec, dims: dict, root: Path) -> Decision:
    """Whether to cache ``stage``'s teacher, and why (logged, and kept in the stage's record)."""
    mode = cfg.teacher.cache_outputs
    if sharded(cfg):
        return Decision(False, SHARDED)
    if mode == "never":
        return Decision(False, "teacher.cache_outputs=never")
    reason = why_not(stage, _online(cfg, stage))
    if reason is not None:
        return Decision(False, reason)
    size = estimate_bytes(rows, tokens, pairs, spec, dims, cfg.teacher.cache_precision)
    free = shutil.disk_usage(root).free
    if size > 0.9 * free:
        return Decision(
            False, f"the outputs would take {_gb(size)}, and the cache's disk ({root}) has {_gb(free)} free"
        )
    if mode == "always":
        return Decision(True, f"teacher.cache_outputs=always ({_gb(size)})")
    budget = cfg.teacher.cache_budget_gb * 1e9
    if size > budget:
        return Decision(
            False,
            f"the outputs it reads ({describe_spec(spec)}) would take {_gb(size)}, over "
            f"teacher.cache_budget_gb={cfg.teacher.cache_budget_gb:g}",
        )
    if stage.teacher.kind != "prepared" and (stage.budget.epochs or 0) <= 1:
        return Decision(False, "a teacher trained in this run, seen for one epoch: nothing would be read twice")
    return Decision(True, f"frozen teacher, the same inputs every epoch; {describe_spec(spec)}: {_gb(size)}")


def describe_spec(spec: FeatureSpec) -> str:
    parts = ["logits"]
    if spec.hidden_states:
        parts.append(f"hidden states {list(spec.hidden_states)}")
    if spec.attentions:
        parts.append(f"attention maps {list(spec.attentions)}")
    for hook in spec.hooks:
        parts.append(f"{hook.name} {list(hook.layers)}")
    return ", ".join(parts)


def estimate_bytes(rows: int, tokens: int, pairs: int, spec: FeatureSpec, dims: dict, precision: str) -> int:
    """The entry's size: logits (float32 per row) + hidden states and hooked outputs (per real token) +
    attention maps (heads per pair of real tokens), the features in ``precision``. ``dims``: num_labels,
    hidden_size, num_heads, and ``hook:<name>`` for hooked outputs (hidden_size when unknown)."""
    width = np.dtype(PRECISIONS[precision]).itemsize
    per_token = len(spec.hidden_states) * dims["hidden_size"]
    per_token += sum(len(h.layers) * dims.get(f"hook:{h.name}", dims["hidden_size"]) for h in spec.hooks)
    return (
        rows * dims["num_labels"] * 4
        + rows * 8
        + tokens * per_token * width
        + pairs * dims["num_heads"] * len(spec.attentions) * width
    )


def _gb(n: float) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"


# -------------------------------------------------------------------------------------------- the source
class CachedSource(TeacherSource):
    """A frozen source's outputs read from an entry: for batches of the cached view (they carry ``teacher_row``)
    and features the entry holds; anything else (evaluation batches) goes to the source itself."""

    kind = "cached"

    def __init__(self, inner: TeacherSource, directory: Path, spec: FeatureSpec):
        self.inner, self.directory, self.spec = inner, directory, spec
        self.meta = json.loads((directory / "meta.json").read_text())
        self.precision = self.meta["precision"]
        self.layout = Layout(np.load(directory / "lengths.npy"))
        self.arrays = {name: np.load(directory / f"{name}.npy", mmap_mode="r") for name in self.meta["tensors"]}
        self.served_rows = 0
        self.read_s = 0.0
        self.logits_only = inner.logits_only

    def setup(self, student, device, world_size=1):
        self.inner.setup(student, device, world_size)

    @property
    def forward_rows(self) -> int:
        """Only the batches the entry cannot serve (evaluation batches, features it does not hold) run the teacher."""
        return self.inner.forward_rows

    def _holds(self, spec: FeatureSpec) -> bool:
        return (
            set(spec.hidden_states) <= set(self.spec.hidden_states)
            and set(spec.attentions) <= set(self.spec.attentions)
            and all(h in self.spec.hooks for h in spec.hooks)
        )

    def outputs(self, batch, spec, training=True):
        rows = batch.get(ROW)
        if rows is None or not self._holds(spec):
            return self.inner.outputs(batch, spec, training)
        started = time.perf_counter()
        rows = rows.cpu().numpy()
        mask = batch["attention_mask"].bool()
        device = mask.device
        logits = torch.from_numpy(self.arrays["logits"][rows]).to(device)
        tokens = self.layout.token_index(rows) if (spec.hidden_states or spec.hooks) else None
        features = Features(
            logits,
            hidden={layer: self._tokens(f"hidden.{layer}", tokens, mask) for layer in spec.hidden_states},
            attentions={layer: self._pairs(f"attention.{layer}", rows, mask) for layer in spec.attentions},
            captured={
                h.name: {layer: self._tokens(f"captured.{h.name}.{layer}", tokens, mask) for layer in h.layers}
                for h in spec.hooks
            },
        )
        self.served_rows += len(rows)
        self.read_s += time.perf_counter() - started
        return features

    def _dtype(self, name: str) -> torch.dtype:
        return getattr(torch, self.meta["tensors"][name]["served_dtype"])

    def _tokens(self, name: str, tokens: np.ndarray, mask: torch.Tensor) -> torch.Tensor:
        values = store.from_storage(self.arrays[name][tokens], self.precision).to(mask.device, self._dtype(name))
        out = torch.zeros(*mask.shape, values.shape[-1], dtype=values.dtype, device=mask.device)
        out[mask] = values  # fails loudly if the batch's real tokens are not the stored ones
        return out

    def _pairs(self, name: str, rows: np.ndarray, mask: torch.Tensor) -> torch.Tensor:
        arr, offsets = self.arrays[name], self.layout.pair_offsets
        heads = arr.shape[1]
        out = torch.zeros(
            mask.shape[0], heads, mask.shape[1], mask.shape[1], dtype=self._dtype(name), device=mask.device
        )
        for b, r in enumerate(rows):
            pos = mask[b].nonzero().squeeze(1)
            block = store.from_storage(arr[offsets[r] : offsets[r + 1]], self.precision).to(mask.device, out.dtype)
            out[b][:, pos[:, None], pos[None, :]] = block.reshape(len(pos), len(pos), heads).permute(2, 0, 1)
        return out

    def modules(self):
        return self.inner.modules()

    def describe(self):
        return f"{self.inner.describe()}, its outputs read from the cache ({self.directory.name})"

    def saved_s(self, built_s: float) -> float:
        """Teacher time this process did not spend: the rows it served × the build's forward time per row (per
        process), less the build (when this run built it) and the reads. An estimate: the build runs larger,
        length-sorted batches than training does."""
        per_row = self.meta["build_s"] * self.meta["world_size"] / max(1, self.meta["rows"])
        return round(self.served_rows * per_row - built_s - self.read_s, 3)


# --------------------------------------------------------------------------------------- in a stage
def teacher_dims(source) -> dict:
    """The sizes ``estimate_bytes`` reads (zeros for a source with no model yet: an EMA, refused anyway)."""
    if not source.modules():
        return {"num_labels": 0, "hidden_size": 0, "num_heads": 0}
    config = source.modules()[0].config
    return {
        "num_labels": config.num_labels,
        "hidden_size": getattr(config, "hidden_size", 0),
        "num_heads": getattr(config, "num_attention_heads", 0),
    }


def prepare(stage, source, data, ws, device, batch_size: int):
    """The stage's source and data view with its teacher's outputs cached, when ``decide`` says so: (source,
    data, record); the data gains the ``teacher_row`` column. Otherwise the source and data unchanged, and the
    record says why (None for a stage without a teacher)."""
    if (
        source is None or stage.teacher is None or not stage.objective.needs_teacher
    ):  # seq_kd: the teacher wrote the data
        return source, data, None
    if ws.plan.kind.teacher_outputs == "topk":  # the task's format: top-k next-token log-probs (topk_cache.py)
        from distillkit.teachers import topk_cache

        return topk_cache.prepare(stage, source, data, ws, device, batch_size)
    cfg, spec = ws.cfg, stage.objective.teacher_features
    precision, root = cfg.teacher.cache_precision, ws.plan.cache_root
    layout = Layout(row_lengths(data))
    decision = decide(
        cfg,
        stage,
        len(data),
        int(layout.token_offsets[-1]),
        int(layout.pair_offsets[-1]),
        spec,
        teacher_dims(source),
        root,
    )
    if decision.use and not dist.agree(True, device):  # another process decided otherwise (its free disk)
        decision = Decision(False, "another process could not cache it")
    elif not decision.use:
        dist.agree(False, device)
    if not decision.use:
        log.info("[%s] teacher outputs not cached: %s", stage.name, decision.reason)
        return source, data, {"used": False, "reason": decision.reason}
    source.setup(None, device)  # the teacher on the device, in eval mode, before the key hashes its weights
    key = store.entry_spec(source, data, spec, precision)

    def fill(tmp: Path) -> None:  # on every process, its share of the batches (under DDP)
        meta, problem = store.build(
            tmp, source, data, spec, ws.collator, batch_size, device, precision, dist.rank(), dist.world_size()
        )
        if problem is not None:
            raise cache.Declined(problem)
        if dist.is_main():
            (tmp / "meta.json").write_text(json.dumps(meta, indent=2))

    entry = cache.find_or_build(root, KIND, key, fill, every_rank=True)
    if entry.problem is not None:
        log.warning(
            "[%s] teacher outputs not cached: %s. The stage runs with the teacher online.", stage.name, entry.problem
        )
        return source, data, {"used": False, "reason": entry.problem}
    final, built_s = entry.path, entry.seconds
    size = sum(f.stat().st_size for f in final.iterdir() if f.is_file())
    log.info(
        "[%s] teacher outputs %s %s (%s, %s; %s)",
        stage.name,
        "cached in" if built_s else "read from",
        final,
        _gb(size),
        describe_spec(spec),
        decision.reason,
    )
    record = {
        "used": True,
        "reason": decision.reason,
        "entry": str(final),
        "size_bytes": size,
        "built": bool(built_s),
        "build_s": round(built_s, 3),
        "precision": {"logits": "fp32", "features": precision},
    }
    return CachedSource(source, final, spec), data.add_column(ROW, np.arange(len(data))), record
