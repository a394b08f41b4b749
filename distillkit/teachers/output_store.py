"""Where the ``cached`` teacher source keeps a teacher's outputs (``distillkit/teachers/output_cache.py`` decides and
serves): the entry's key (digests of the teacher's weights and of the data view as the teacher sees it), its
layout (logits per row; hidden states and hooked outputs per real token; attention maps per pair of real
tokens, each example's block at its offset) and the build, sharded over processes. Memory-mapped ``.npy``
files, one per tensor; features in the chosen precision (bf16 as its raw 16 bits), logits in float32.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from distillkit import dist
from distillkit.models.features import MODEL_INPUT_KEYS, Features, FeatureSpec
from distillkit.store import arrow_column, data_digest, weights_digest  # noqa: F401 (part of an entry's key)

FORMAT = 1
KIND = "teacher_outputs"
PRECISIONS = {"fp16": np.float16, "bf16": np.uint16, "fp32": np.float32}  # bf16 is stored as its raw 16 bits
FP16_MAX = 65504.0


# ------------------------------------------------------------------------------------------------ the key
def entry_spec(source, data, spec: FeatureSpec, precision: str) -> dict:
    models = source.modules()
    return {
        "kind": KIND,
        "format": FORMAT,
        "teacher": source.describe(),
        "weights": [weights_digest(m) for m in models],
        "attention": [getattr(m.config, "_attn_implementation", None) for m in models],
        "data": data_digest(data),
        "features": {
            "hidden_states": list(spec.hidden_states),
            "attentions": list(spec.attentions),
            "hooks": [dataclasses.asdict(h) for h in spec.hooks],
        },
        "precision": {"logits": "fp32", "features": precision},
    }


# ----------------------------------------------------------------------------------------------- storage
@dataclass
class Layout:
    """Where each example's outputs are in the entry's arrays."""

    lengths: np.ndarray  # real tokens per row
    token_offsets: np.ndarray = field(init=False)  # rows + 1
    pair_offsets: np.ndarray = field(init=False)  # rows + 1 (len² per row)

    def __post_init__(self):
        self.lengths = np.asarray(self.lengths, dtype=np.int64)
        self.token_offsets = np.concatenate([[0], np.cumsum(self.lengths)])
        self.pair_offsets = np.concatenate([[0], np.cumsum(self.lengths**2)])

    def token_index(self, rows) -> np.ndarray:
        return np.concatenate([np.arange(self.token_offsets[r], self.token_offsets[r + 1]) for r in rows])


def tensor_names(spec: FeatureSpec) -> list[str]:
    return (
        ["logits"]
        + [f"hidden.{layer}" for layer in spec.hidden_states]
        + [f"attention.{layer}" for layer in spec.attentions]
        + [f"captured.{h.name}.{layer}" for h in spec.hooks for layer in h.layers]
    )


def _pick(features: Features, name: str) -> torch.Tensor:
    kind, *rest = name.split(".")
    if kind == "logits":
        return features.logits
    if kind == "hidden":
        return features.hidden[int(rest[0])]
    if kind == "attention":
        return features.attentions[int(rest[0])]
    return features.captured[rest[0]][int(rest[1])]


class Overflow(Exception):
    """A feature value beyond the storage precision's range."""


def _to_storage(t: torch.Tensor, precision: str) -> np.ndarray:
    if precision == "fp32":
        return t.float().cpu().numpy()
    if precision == "fp16":
        t = t.float()
        if bool((t.abs() > FP16_MAX).any()):
            raise Overflow(f"max |x| = {float(t.abs().max()):.4g}")
        return t.half().cpu().numpy()
    return t.to(torch.bfloat16).cpu().view(torch.int16).numpy().view(np.uint16)


def from_storage(a: np.ndarray, precision: str) -> torch.Tensor:
    t = torch.from_numpy(np.array(a))  # a copy: the entry's memory map is read-only
    return t.view(torch.bfloat16) if precision == "bf16" else t


def row_lengths(data) -> np.ndarray:
    """Real tokens per row of a tokenised dataset (its attention masks' sums; rows are unpadded)."""
    column = "attention_mask" if "attention_mask" in data.column_names else "input_ids"
    arr = arrow_column(data, column)
    offsets = np.asarray(arr.offsets)
    if column == "input_ids":
        return np.diff(offsets)
    values = np.asarray(arr.flatten()).astype(np.int64)
    return np.add.reduceat(values, offsets[:-1]) if len(values) else np.zeros(len(data), dtype=np.int64)


def _forward(source, inputs, rows, collator, device, spec) -> tuple[dict, Features]:
    columns = inputs[[int(r) for r in rows]]  # one read per batch (a row at a time costs ~0.5 ms each)
    batch = collator([dict(zip(columns, values)) for values in zip(*columns.values())])
    batch = {k: v.to(device) for k, v in batch.items()}
    return batch, source.outputs(batch, spec, training=False)


def _per_token(t: torch.Tensor, batch_seq: tuple[int, int]) -> bool:
    return t.dim() == 3 and tuple(t.shape[:2]) == batch_seq


def _allocate(
    directory: Path, names: list[str], probe: Features, layout: Layout, precision: str, create: bool
) -> dict[str, np.ndarray]:
    """The entry's arrays (created by one process, opened for writing by the others)."""
    arrays = {}
    for name in names:
        t = _pick(probe, name)
        if name == "logits":
            shape, dtype = (len(layout.lengths), t.shape[-1]), np.float32
        elif name.startswith("attention."):
            shape, dtype = (int(layout.pair_offsets[-1]), t.shape[1]), PRECISIONS[precision]
        else:
            shape, dtype = (int(layout.token_offsets[-1]), t.shape[-1]), PRECISIONS[precision]
        path = directory / f"{name}.npy"
        arrays[name] = np.lib.format.open_memmap(path, mode="w+" if create else "r+", dtype=dtype, shape=shape)
    return arrays


def _write(arrays: dict, rows, batch: dict, features: Features, layout: Layout, precision: str) -> None:
    mask = batch["attention_mask"].bool()
    tokens = None
    for name, arr in arrays.items():
        t = _pick(features, name).detach()
        if name == "logits":
            arr[rows] = t.float().cpu().numpy()
        elif name.startswith("attention."):
            for b, r in enumerate(rows):
                pos = mask[b].nonzero().squeeze(1)
                block = t[b][:, pos][:, :, pos].permute(1, 2, 0).reshape(len(pos) ** 2, t.shape[1])
                arr[layout.pair_offsets[r] : layout.pair_offsets[r + 1]] = _to_storage(block, precision)
        else:
            tokens = layout.token_index(rows) if tokens is None else tokens
            arr[tokens] = _to_storage(t[mask], precision)


def build(
    directory: Path,
    source,
    data,
    spec: FeatureSpec,
    collator,
    batch_size: int,
    device,
    precision: str,
    rank: int = 0,
    world: int = 1,
) -> tuple[dict, str | None]:
    """Fill ``directory`` with the teacher's outputs for every row of ``data`` (this process: every ``world``-th
    batch from ``rank``, rows of similar length together); return the entry's description (for meta.json) and
    None, or why the outputs cannot be stored (a feature beyond fp16's range, a hooked output that is not one
    vector per token). Every process returns at the same point, so the caller can agree on the outcome."""
    started = time.perf_counter()
    layout = Layout(row_lengths(data))
    inputs = data.select_columns([c for c in MODEL_INPUT_KEYS if c in data.column_names])
    order = np.argsort(-layout.lengths, kind="stable")
    _, probe = _forward(source, inputs, order[:1], collator, device, spec)
    names = tensor_names(spec)
    for name in names:  # the same on every process: the same first row
        t = _pick(probe, name)
        if name.startswith(("hidden.", "captured.")) and not _per_token(t, (1, int(layout.lengths[order[0]]))):
            return {}, f"{name} has shape {tuple(t.shape)} for one example, not one vector per token"
    arrays = _allocate(directory, names, probe, layout, precision, create=True) if rank == 0 else None
    if rank == 0:
        np.save(directory / "lengths.npy", layout.lengths)  # where each row's tokens are, for the reader
    dist.barrier()
    arrays = arrays if arrays is not None else _allocate(directory, names, probe, layout, precision, create=False)
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    problem = None
    try:
        for rows in batches[rank::world]:
            batch, features = _forward(source, inputs, rows, collator, device, spec)
            _write(arrays, rows, batch, features, layout, precision)
    except Overflow as err:
        problem = (
            f"a teacher feature does not fit teacher.cache_precision={precision} ({err}); set "
            "teacher.cache_precision=bf16 or fp32 to cache it"
        )
    for arr in arrays.values():
        arr.flush()
    meta = {
        "rows": len(layout.lengths),
        "tokens": int(layout.token_offsets[-1]),
        "build_s": round(time.perf_counter() - started, 3),
        "world_size": world,
        "batch_size": batch_size,
        "precision": precision,
        "tensors": {
            n: {"shape": list(a.shape), "served_dtype": str(_pick(probe, n).dtype).replace("torch.", "")}
            for n, a in arrays.items()
        },
    }
    return meta, problem
