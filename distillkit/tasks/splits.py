"""The train/eval splits every task loads (``TaskData``) and the seeded sample ``data.max_train_samples`` /
``data.max_eval_samples`` draw from them (``sample``): pieces shared by the tasks, which never import each other."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: datasets is imported where data are loaded
    import datasets

log = logging.getLogger("distillkit")


@dataclass
class TaskData:
    """A task's loaded splits, not tokenised. Classification: columns text, [text_pair], label (int), and the
    label names; causal LM: prompt and response (or chat messages), no labels."""

    train: datasets.Dataset
    eval: datasets.Dataset
    label_names: list[str]
    has_pair: bool
    dropped: dict = field(default_factory=dict)  # split → rows dropped by data.drop_missing=true

    @property
    def num_labels(self) -> int:
        return len(self.label_names)


def stratified_sample(labels: list[int], n: int, seed) -> list[int]:
    """Indices of ``n`` of the rows, drawn at random (numpy's PCG64 from ``seed``) within each label so every
    label keeps its share (largest remainder), returned in file order. Real files are often sorted by
    label or source, where the first ``n`` rows would be one class."""
    import numpy as np

    rng = np.random.default_rng(seed)
    by_label: dict = {}
    for i, label in enumerate(labels):
        by_label.setdefault(label, []).append(i)
    total = len(labels)
    quota = {y: n * len(rows) // total for y, rows in by_label.items()}
    by_remainder = sorted(by_label, key=lambda y: (-(n * len(by_label[y]) % total), y))
    for y in by_remainder[: n - sum(quota.values())]:
        quota[y] += 1
    picked = []
    for y in sorted(by_label):
        rows = by_label[y]
        picked += [rows[j] for j in rng.permutation(len(rows))[: quota[y]]]
    return sorted(picked)


def sample(split, n: int | None, seed: int, name: str, stratify_by: str | None = None):
    """``split`` itself, or ``n`` of its rows drawn at random, in file order: within each value of column
    ``stratify_by`` (``stratified_sample``) when one is named. The seed is ``data.sample_seed`` (not the run's,
    so a seed sweep trains and evaluates on the same rows), one stream per split."""
    if not n or n >= len(split):
        return split
    stream = [seed, 0 if name == "train" else 1]
    if stratify_by is not None:
        picked = stratified_sample(split.with_format("arrow")[stratify_by].to_pylist(), n, stream)
    else:
        import numpy as np

        picked = sorted(np.random.default_rng(stream).permutation(len(split))[:n].tolist())
    log.info(
        "data.max_%s_samples=%d: a random sample of the %s split's %d rows%s (data.sample_seed=%d).",
        name,
        n,
        name,
        len(split),
        f", stratified by {stratify_by}" if stratify_by else "",
        seed,
    )
    return split.select(picked)
