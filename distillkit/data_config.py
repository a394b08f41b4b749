"""The ``data`` group's schema (``DataConfig``, with the embedded task's ``SyntheticDataConfig``) and the local
file formats it accepts; re-exported by ``distillkit.config``. Checks needing only the config run here; checks
that read the files run in ``distillkit.data`` at plan time."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Optional

from distillkit.errors import one_of, require
from distillkit.errors import positive as _positive


# ----------------------------------------------------------------------------------------------- data
@dataclass
class SyntheticDataConfig:
    n_train: int = 8000
    n_eval: int = 1000
    label_noise: float = 0.1
    seed: int = 0
    sentences: int = 1  # sentences per example (> 1: the multi-sentence mode, e.g. for augmentation=sentence_shuffle)

    def __post_init__(self):
        _positive("data.synthetic.sentences", self.sentences, "use 1 (one sentence per example) or more.")
        _positive("data.synthetic.n_train", self.n_train)
        _positive("data.synthetic.n_eval", self.n_eval)
        require(0.0 <= self.label_noise < 1.0, "data.synthetic.label_noise", self.label_noise,
                "is outside [0, 1).", "use a fraction such as 0.1 (0 = clean labels).")


@dataclass
class DataConfig:
    name: str = "synthetic"
    source: str = "synthetic"  # synthetic | hub | local
    path: Optional[str] = None  # hub dataset name or local dataset directory (source=hub)
    config_name: Optional[str] = None
    train_file: Optional[str] = None  # source=local
    eval_file: Optional[str] = None
    train_split: str = "train"
    eval_split: str = "validation"
    text_field: str = "text"
    text_pair_field: Optional[str] = None
    label_field: str = "label"
    # The eval split's own column names where they differ from the train split's (null = the same).
    eval_text_field: Optional[str] = None
    eval_text_pair_field: Optional[str] = None
    eval_label_field: Optional[str] = None
    label_names: Optional[list[str]] = None  # names of integer labels 0..C-1, or the order of string labels
    drop_missing: bool = False  # drop rows with an empty text or label (and log how many) instead of refusing
    max_length: int = 128
    max_train_samples: Optional[int] = None  # a random sample, stratified by label, drawn with sample_seed
    max_eval_samples: Optional[int] = None
    sample_seed: int = 0  # apart from the run's seed: a seed sweep samples the same rows
    synthetic: SyntheticDataConfig = field(default_factory=SyntheticDataConfig)

    def __post_init__(self):
        one_of("data.source", self.source, ["synthetic", "hub", "local"])
        require(8 <= self.max_length <= 8192, "data.max_length", self.max_length,
                "is out of range.", "use a sequence length between 8 and 8192 tokens.")
        for key in ("max_train_samples", "max_eval_samples"):
            value = getattr(self, key)
            require(value is None or value > 0, f"data.{key}", value, "must be positive.",
                    "use a positive count, or null for the whole split.")
        require(self.eval_text_pair_field is None or self.text_pair_field, "data.eval_text_pair_field",
                self.eval_text_pair_field, "is set but data.text_pair_field is not.", "set data.text_pair_field too.")
        names = self.label_names
        require(names is None or (len(names) >= 2 and len(set(names)) == len(names) and all(names)),
                "data.label_names", names, "must list at least two distinct, non-empty names.",
                "e.g. data.label_names=[negative,positive].")
        if self.source == "hub":
            require(bool(self.path), "data.path", self.path, "is required for a hub dataset.",
                    "add data.path=<hub dataset name or local dataset dir>, e.g. data.path=glue data.config_name=sst2.")
        if self.source == "local":
            for key in ("train_file", "eval_file"):
                path = getattr(self, key)
                require(bool(path), f"data.{key}", path, "is required for data=local.",
                        f"add data.{key}=PATH to a file ({', '.join(sorted(LOCAL_FORMATS))}).")
                require(os.path.isfile(path) and os.access(path, os.R_OK), f"data.{key}", path,
                        "is not a readable file.", "check the path (relative paths start at the directory you run from).")
                ext = os.path.splitext(path)[1].lower()
                require(ext in LOCAL_FORMATS, f"data.{key}", path, f"has an unsupported extension {ext!r}.",
                        f"use one of {', '.join(sorted(LOCAL_FORMATS))}.")


LOCAL_FORMATS = {".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}
