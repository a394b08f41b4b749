"""The teacher's top-k next-token log-probabilities, stored once per training view (causal LMs, off-policy).

Per-token logits over a large vocabulary (150k for Qwen) do not fit on disk or in memory at dataset × length. For
an off-policy stage whose loss has a top-k form (forward KL: ``Objective.topk``), the teacher runs once over the
training view and, at every response position, keeps its k most likely tokens' log-probabilities at the loss's
temperature and the log of the mass of the rest (``losses.token.topk_targets``). The entry is content-addressed
(the teacher's weights, the tokenised view, k, T, precision) under ``<cache>/teacher_topk/<key>/``: later epochs
and later runs of a sweep read it instead of running the teacher. The loss then compares k + 1 buckets
(``forward_kl_topk``): exact for k = V, a lower bound of the full KL otherwise (the gap is the teacher's tail mass
times the KL inside the tail).

Files: ``indices.npy`` (tokens, k) int32, ``logprobs.npy`` (tokens, k) in ``teacher.cache_precision``,
``tail.npy`` (tokens,) float32, ``offsets.npy`` (rows + 1,) int64: row r's response positions are
offsets[r]:offsets[r+1], in position order. Under DDP rank 0 builds while the others wait, then all read.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
import torch

from distillkit import store as cache
from distillkit.losses import IGNORE_INDEX
from distillkit.models.features import Features
from distillkit.teachers import cache_rules
from distillkit.teachers.sources import TeacherSource

log = logging.getLogger("distillkit")
KIND = "teacher_topk"
FORMAT = 1
DTYPES = {"fp16": np.float16, "bf16": np.float32, "fp32": np.float32}  # bf16: kept as fp32 (numpy has no bf16)


class TopKSource(TeacherSource):
    """Serves a batch of the cached view (it carries ``teacher_row``) as ``Features`` whose ``captured["topk"]``
    holds (B, S−1, k) indices and log-probs and (B, S−1) tail log-probs at the positions that predict response
    tokens (zeros elsewhere, never read); any other batch goes to the wrapped source."""

    kind = "cached"

    def __init__(self, inner: TeacherSource, directory: Path):
        self.inner, self.directory = inner, directory
        self.meta = json.loads((directory / "meta.json").read_text())
        self.arrays = {n: np.load(directory / f"{n}.npy", mmap_mode="r") for n in ("indices", "logprobs", "tail")}
        self.offsets = np.load(directory / "offsets.npy")
        self.served_rows, self.read_s = 0, 0.0

    def setup(self, student, device, world_size=1):
        self.inner.setup(student, device, world_size)

    @property
    def forward_rows(self) -> int:
        return self.inner.forward_rows  # only batches the entry does not serve run the teacher

    def modules(self):
        return self.inner.modules()

    def describe(self):
        return f"{self.inner.describe()}, top-{self.meta['k']} log-probs read from its cache"

    def outputs(self, batch, spec, training=True):
        rows = batch.get(cache_rules.ROW)
        if rows is None:
            return self.inner.outputs(batch, spec, training)
        started = time.perf_counter()
        mask = batch["labels"][:, 1:] != IGNORE_INDEX
        k, device = self.meta["k"], batch["labels"].device
        indices = torch.zeros((*mask.shape, k), dtype=torch.long)
        logprobs = torch.zeros((*mask.shape, k), dtype=torch.float32)
        tail = torch.zeros(mask.shape, dtype=torch.float32)
        for i, r in enumerate(rows.tolist()):
            lo, hi = int(self.offsets[r]), int(self.offsets[r + 1])
            where = mask[i].nonzero().squeeze(1).cpu()
            if len(where) != hi - lo:
                raise RuntimeError(
                    f"teacher top-k cache {self.directory}: row {r} has {hi - lo} cached positions and "
                    f"the batch {len(where)}; the entry does not belong to this view"
                )
            indices[i, where] = torch.from_numpy(np.array(self.arrays["indices"][lo:hi], dtype=np.int64))
            logprobs[i, where] = torch.from_numpy(np.array(self.arrays["logprobs"][lo:hi], dtype=np.float32))
            tail[i, where] = torch.from_numpy(np.array(self.arrays["tail"][lo:hi], dtype=np.float32))
        self.served_rows += len(rows)
        self.read_s += time.perf_counter() - started
        topk = {"indices": indices.to(device), "logprobs": logprobs.to(device), "tail": tail.to(device)}
        return Features(logits=torch.empty(0, device=device), captured={"topk": topk})

    def saved_s(self, build_s: float) -> float:
        per_row = self.meta["build_s"] / max(1, self.meta["rows"])
        return round(self.served_rows * per_row - build_s - self.read_s, 3)


@torch.no_grad()
def build(
    tmp: Path, model, data, collator, device, batch_size: int, k: int, temperature: float, precision: str
) -> dict:
    """Run ``model`` over ``data`` in row order and write the entry's arrays into ``tmp``; returns its meta."""
    from torch.utils.data import DataLoader

    from distillkit.losses.token import topk_targets

    model.eval()
    started = time.perf_counter()
    parts = {"indices": [], "logprobs": [], "tail": []}
    counts = []
    for batch in DataLoader(data, batch_size=batch_size, shuffle=False, collate_fn=collator):
        logits = model(
            input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device)
        ).logits
        mask = (batch["labels"][:, 1:] != IGNORE_INDEX).to(device)
        idx, lp, tail = topk_targets(logits[:, :-1][mask], min(k, logits.shape[-1]), temperature)
        parts["indices"].append(idx.int().cpu().numpy())
        parts["logprobs"].append(lp.cpu().numpy().astype(DTYPES[precision]))
        parts["tail"].append(tail.float().cpu().numpy())
        counts.extend(mask.sum(1).tolist())
    for name, chunks in parts.items():
        np.save(tmp / f"{name}.npy", np.concatenate(chunks))
    np.save(tmp / "offsets.npy", np.concatenate([[0], np.cumsum(counts)]).astype(np.int64))
    return {
        "k": min(k, logits.shape[-1]),
        "temperature": temperature,
        "precision": precision,
        "rows": len(counts),
        "tokens": int(sum(counts)),
        "build_s": round(time.perf_counter() - started, 3),
    }


def why_not(cfg, stage) -> str | None:
    """Why ``stage``'s teacher outputs cannot be stored as top-k log-probs, or None when they can."""
    if cfg.hardware.shard_teacher:
        return cache_rules.SHARDED
    if cfg.teacher.cache_outputs == "never":
        return "teacher.cache_outputs=never"
    if stage.objective.topk is None:
        return stage.objective.uncacheable or "its loss has no top-k form"
    if stage.teacher.kind != "prepared":
        return f"its teacher ({stage.teacher.describe()}) is not the run's frozen teacher"
    return cache_rules.why_not(stage, [])


def estimate_bytes(data, k: int, precision: str) -> int:
    """An upper bound of the entry's size: every token of the view counted as a response token."""
    from distillkit.teachers.output_store import row_lengths

    tokens = int(row_lengths(data).sum())
    return tokens * (k * (4 + np.dtype(DTYPES[precision]).itemsize) + 4)


def prepare(stage, source, data, ws, device, batch_size: int):
    """(source, data, record) as ``teacher_cache.prepare``: the top-k entry found or built, the view with
    ``teacher_row``; or the source unchanged with the reason in the record."""
    from distillkit.teachers import output_store as store

    cfg = ws.cfg
    reason = why_not(cfg, stage)
    size = estimate_bytes(data, cfg.teacher.cache_topk, cfg.teacher.cache_precision)
    if reason is None and cfg.teacher.cache_outputs == "auto" and size > cfg.teacher.cache_budget_gb * 1e9:
        reason = (
            f"its top-{cfg.teacher.cache_topk} log-probs could take up to {size / 1e9:.1f} GB, over "
            f"teacher.cache_budget_gb={cfg.teacher.cache_budget_gb:g}"
        )
    if reason is not None:
        log.info("[%s] teacher outputs not cached: %s", stage.name, reason)
        return source, data, {"used": False, "reason": reason}
    source.setup(None, device)
    (model,) = source.modules()
    k, temperature, precision = cfg.teacher.cache_topk, stage.objective.topk, cfg.teacher.cache_precision
    key = {
        "kind": KIND,
        "format": FORMAT,
        "weights": store.weights_digest(model),
        "data": store.data_digest(data),
        "labels": _labels_digest(data),
        "k": k,
        "temperature": temperature,
        "precision": precision,
    }

    def fill(tmp: Path) -> dict:
        meta = build(tmp, model, data, ws.collator, device, batch_size, k, temperature, precision)
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
        return meta

    entry = cache.find_or_build(ws.plan.cache_root, KIND, key, fill)  # rank 0 builds, the others wait, all read
    final, built_s = entry.path, entry.value["build_s"] if entry.built else 0.0
    cached = TopKSource(source, final)
    size = sum(f.stat().st_size for f in final.iterdir() if f.is_file())
    why = (
        f"frozen teacher, the same responses every epoch: top-{cached.meta['k']} log-probs + tail at "
        f"T={temperature:g} for {cached.meta['tokens']} response tokens"
    )
    log.info(
        "[%s] teacher outputs %s %s (%.1f MB; %s)",
        stage.name,
        "cached in" if built_s else "read from",
        final,
        size / 1e6,
        why,
    )
    record = {
        "used": True,
        "reason": why,
        "entry": str(final),
        "size_bytes": size,
        "built": bool(built_s),
        "build_s": built_s,
        "precision": {"logprobs": precision, "tail": "fp32"},
        "topk": cached.meta["k"],
    }
    return cached, data.add_column(cache_rules.ROW, np.arange(len(data))), record


def _labels_digest(data) -> str:
    """The response positions are part of the key: the same token ids with another prompt/response split differ."""
    import hashlib

    digest = hashlib.sha256()
    for row in data.with_format("numpy", columns=["labels"])["labels"]:
        digest.update(np.asarray(row, dtype=np.int64).tobytes() + b";")
    return digest.hexdigest()
