"""The ``data`` group's schema (``DataConfig``, with the embedded task's ``SyntheticDataConfig``) and the local
file formats it accepts; re-exported by ``distillkit.config.schema``. Checks needing only the config run here; checks
that read the files run in ``distillkit.tasks.classification.data`` at plan time."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Optional

from distillkit.config.task import DATA_SOURCES
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
        require(
            0.0 <= self.label_noise < 1.0,
            "data.synthetic.label_noise",
            self.label_noise,
            "is outside [0, 1).",
            "use a fraction such as 0.1 (0 = clean labels).",
        )


# the embedded instruction task's kinds (distillkit/tasks/causal_lm/synthetic.py generates them)
LM_SYNTHETIC_KINDS: tuple[str, ...] = ("add", "sort", "reverse", "lookup", "count")


@dataclass
class LMSyntheticDataConfig:
    """The embedded instruction task of ``task=causal_lm`` (``distillkit/tasks/causal_lm/synthetic.py``)."""

    n_train: int = 16000
    n_eval: int = 500
    seed: int = 0
    kinds: Optional[list[str]] = None  # null = the generator's default kinds

    def __post_init__(self):
        _positive("data.lm_synthetic.n_train", self.n_train)
        _positive("data.lm_synthetic.n_eval", self.n_eval)
        if self.kinds is not None:
            bad = [k for k in self.kinds if k not in LM_SYNTHETIC_KINDS]
            require(
                self.kinds and not bad,
                "data.lm_synthetic.kinds",
                self.kinds,
                f"names kind(s) the generator does not have ({', '.join(bad) or 'none given'}).",
                f"pick from {', '.join(LM_SYNTHETIC_KINDS)}, or null for the default.",
            )


@dataclass
class DataConfig:
    name: str = "synthetic"
    source: str = "synthetic"  # synthetic | hub | local | lm_synthetic (task=causal_lm's embedded task): DATA_SOURCES
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
    # task=causal_lm: prompt/response fields, or chat messages rendered with the tokenizer's chat template, or a
    # preset mapping of a known instruction dataset (alpaca | dolly); the text written before each response.
    prompt_field: str = "prompt"
    response_field: str = "response"
    messages_field: Optional[str] = None
    preset: Optional[str] = None
    prompt_template: str = "{prompt}\n"
    lm_synthetic: LMSyntheticDataConfig = field(default_factory=LMSyntheticDataConfig)

    def __post_init__(self):
        one_of("data.source", self.source, DATA_SOURCES)
        one_of("data.preset", self.preset, [None, "alpaca", "dolly"])
        require(
            "{prompt}" in self.prompt_template,
            "data.prompt_template",
            self.prompt_template,
            "has no {prompt} placeholder, so the instruction would never reach the model.",
            "write the prompt's place as {prompt}, e.g. data.prompt_template='Q: {prompt}\\nA: '.",
        )
        require(
            8 <= self.max_length <= 8192,
            "data.max_length",
            self.max_length,
            "is out of range.",
            "use a sequence length between 8 and 8192 tokens.",
        )
        for key in ("max_train_samples", "max_eval_samples"):
            value = getattr(self, key)
            require(
                value is None or value > 0,
                f"data.{key}",
                value,
                "must be positive.",
                "use a positive count, or null for the whole split.",
            )
        require(
            self.eval_text_pair_field is None or self.text_pair_field,
            "data.eval_text_pair_field",
            self.eval_text_pair_field,
            "is set but data.text_pair_field is not.",
            "set data.text_pair_field too.",
        )
        names = self.label_names
        require(
            names is None or (len(names) >= 2 and len(set(names)) == len(names) and all(names)),
            "data.label_names",
            names,
            "must list at least two distinct, non-empty names.",
            "e.g. data.label_names=[negative,positive].",
        )
        if self.source == "hub":
            require(
                bool(self.path),
                "data.path",
                self.path,
                "is required for a hub dataset.",
                "add data.path=<hub dataset name or local dataset dir>, e.g. data.path=glue data.config_name=sst2.",
            )
        if self.source == "local":
            for key in ("train_file", "eval_file"):
                path = getattr(self, key)
                require(
                    bool(path),
                    f"data.{key}",
                    path,
                    "is required for data=local.",
                    f"add data.{key}=PATH to a file ({', '.join(sorted(LOCAL_FORMATS))}).",
                )
                require(
                    os.path.isfile(path) and os.access(path, os.R_OK),
                    f"data.{key}",
                    path,
                    "is not a readable file.",
                    "check the path (relative paths start at the directory you run from).",
                )
                ext = os.path.splitext(path)[1].lower()
                require(
                    ext in LOCAL_FORMATS,
                    f"data.{key}",
                    path,
                    f"has an unsupported extension {ext!r}.",
                    f"use one of {', '.join(sorted(LOCAL_FORMATS))}.",
                )


LOCAL_FORMATS = {".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}
