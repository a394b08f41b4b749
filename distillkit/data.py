"""The task's data: train/eval splits with text (and text pair) and integer labels, tokenised.

Three sources, one result (``TaskData``): the embedded synthetic task, a dataset from the hub (or a
local dataset directory) by name/config, and local csv/jsonl/parquet files. Field names are mapped to
the canonical ``text`` / ``text_pair`` / ``label`` columns and checked before anything is tokenised.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from distillkit.config import LOCAL_FORMATS, DataConfig
from distillkit.errors import ConfigError, require



@dataclass
class TaskData:
    train: "datasets.Dataset"  # columns: text, [text_pair], label (int)  # noqa: F821
    eval: "datasets.Dataset"  # noqa: F821
    label_names: list[str]
    has_pair: bool

    @property
    def num_labels(self) -> int:
        return len(self.label_names)


def load_task(cfg: DataConfig) -> TaskData:
    """Load, map and check the splits named by ``cfg`` (no tokenisation yet)."""
    if cfg.source == "synthetic":
        task = _synthetic(cfg)
    else:
        train, evals = _load_raw(cfg)
        task = _canonical(cfg, train, evals)
    if cfg.max_train_samples:
        task.train = task.train.select(range(min(cfg.max_train_samples, len(task.train))))
    if cfg.max_eval_samples:
        task.eval = task.eval.select(range(min(cfg.max_eval_samples, len(task.eval))))
    require(len(task.train) > 0 and len(task.eval) > 0, "data", cfg.name, "has an empty train or eval split.",
            "check the split names and files.")
    return task


def _synthetic(cfg: DataConfig) -> TaskData:
    import datasets

    from distillkit.synthetic import generate

    s = cfg.synthetic
    splits = generate(seed=s.seed, n_train=s.n_train, n_eval=s.n_eval, label_noise=s.label_noise)
    keep = lambda rows: [{"text": r["text"], "label": r["label"]} for r in rows]  # noqa: E731
    return TaskData(datasets.Dataset.from_list(keep(splits.train)), datasets.Dataset.from_list(keep(splits.eval)),
                    list(splits.label_names), has_pair=False)


def _load_raw(cfg: DataConfig):
    import datasets

    try:
        if cfg.source == "local":
            builder = LOCAL_FORMATS[os.path.splitext(cfg.train_file)[1].lower()]
            kwargs = {"delimiter": "\t"} if cfg.train_file.lower().endswith(".tsv") else {}
            raw = datasets.load_dataset(builder, data_files={"train": cfg.train_file, "eval": cfg.eval_file}, **kwargs)
            return raw["train"], raw["eval"]
        if Path(cfg.path).is_dir() and any(Path(cfg.path).glob("dataset_dict.json")):
            raw = datasets.load_from_disk(cfg.path)  # a DatasetDict saved with save_to_disk
            return _split(raw, cfg.train_split, "data.train_split"), _split(raw, cfg.eval_split, "data.eval_split")
        raw = datasets.load_dataset(cfg.path, cfg.config_name)
        return _split(raw, cfg.train_split, "data.train_split"), _split(raw, cfg.eval_split, "data.eval_split")
    except ConfigError:
        raise
    except Exception as err:  # datasets raises many types for "not found" / "offline"
        where = cfg.train_file if cfg.source == "local" else cfg.path
        offline = os.environ.get("HF_DATASETS_OFFLINE") == "1" or os.environ.get("HF_HUB_OFFLINE") == "1"
        hint = ("the hub is switched off here (HF_DATASETS_OFFLINE/HF_HUB_OFFLINE=1) and no cached copy exists"
                if offline else "it is neither a readable local dataset nor reachable on the hub")
        raise ConfigError("data.path" if cfg.source == "hub" else "data.train_file", where,
                          f"could not be loaded: {hint} ({type(err).__name__}: {str(err).splitlines()[0][:200]}).",
                          "download it once with network, or save it with Dataset.save_to_disk / as csv, jsonl or "
                          "parquet files and use data=local data.train_file=... data.eval_file=....") from None


def _split(raw, name: str, key: str):
    require(name in raw, key, name, "is not a split of this dataset.", f"use one of {', '.join(raw.keys())}.")
    return raw[name]


def _canonical(cfg: DataConfig, train, evals) -> TaskData:
    """Rename the configured fields to text/text_pair/label and map labels to 0..C-1."""
    fields = {"text_field": cfg.text_field, "label_field": cfg.label_field}
    if cfg.text_pair_field:
        fields["text_pair_field"] = cfg.text_pair_field
    for split_name, split in (("train", train), ("eval", evals)):
        for key, column in fields.items():
            require(column in split.column_names, f"data.{key}", column,
                    f"is not a column of the {split_name} split.", f"use one of {', '.join(split.column_names)}.")
    label_feature = train.features[cfg.label_field]
    if hasattr(label_feature, "names"):  # a ClassLabel: ids are already 0..C-1
        names = list(label_feature.names)
        to_id = None
    else:
        values = sorted(set(train[cfg.label_field]) | set(evals[cfg.label_field]), key=str)
        names = [str(v) for v in values]
        to_id = {v: i for i, v in enumerate(values)}
    require(len(names) >= 2, "data.label_field", cfg.label_field, f"has {len(names)} distinct label(s).",
            "a classification task needs at least two classes; check the field.")

    def convert(split):
        rename = {cfg.text_field: "text", cfg.label_field: "label"}
        if cfg.text_pair_field:
            rename[cfg.text_pair_field] = "text_pair"
        keep = list(rename)
        split = split.remove_columns([c for c in split.column_names if c not in keep])
        split = split.rename_columns({k: v for k, v in rename.items() if k != v})
        if to_id is not None:
            split = split.map(lambda row: {"label_id": to_id[row["label"]]}, remove_columns=["label"])
            return split.rename_column("label_id", "label")
        # GLUE-style test splits carry label -1: keep only labelled rows.
        return split.filter(lambda row: row["label"] is not None and row["label"] >= 0)

    return TaskData(convert(train), convert(evals), names, has_pair=bool(cfg.text_pair_field))


def train_wordpiece(texts, vocab_size: int, out_dir: Path):
    """Build a BERT-style WordPiece tokenizer for ``texts`` and save it (tokenizer.json + config) in
    ``out_dir``, loadable by ``AutoTokenizer.from_pretrained``.

    The vocabulary is the special tokens, every character seen (alone and as a ``##`` continuation, so
    no word is ever [UNK]), then whole words by descending frequency (ties alphabetical) up to
    ``vocab_size``. Unlike the ``tokenizers`` WordPiece trainer, whose tie-breaking follows hash order,
    this is identical for the same texts on every machine, which the teacher cache key relies on.
    """
    from collections import Counter

    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    normalizer, splitter = normalizers.BertNormalizer(lowercase=True), pre_tokenizers.BertPreTokenizer()
    counts = Counter()
    for text in texts:
        counts.update(w for w, _ in splitter.pre_tokenize_str(normalizer.normalize_str(text)))
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    chars = sorted({c for word in counts for c in word})
    vocab = special + chars + [f"##{c}" for c in chars]
    words = sorted((w for w in counts if len(w) > 1), key=lambda w: (-counts[w], w))
    vocab += words[: max(0, vocab_size - len(vocab))]
    tok = Tokenizer(models.WordPiece({t: i for i, t in enumerate(vocab)}, unk_token="[UNK]"))
    tok.normalizer, tok.pre_tokenizer, tok.decoder = normalizer, splitter, decoders.WordPiece()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]",
                                   model_input_names=["input_ids", "token_type_ids", "attention_mask"])
    fast.save_pretrained(out_dir)
    return fast


def tokenize(task: TaskData, tokenizer, max_length: int):
    """Tokenised train and eval datasets (input_ids, attention_mask, [token_type_ids], labels, idx); padding
    is left to the collator, so batches are only as long as their longest example. ``idx`` is each
    example's position in its split (CRD's memory bank is indexed by it)."""

    def encode(batch, indices):
        pair = batch["text_pair"] if task.has_pair else None
        enc = tokenizer(batch["text"], pair, truncation=True, max_length=max_length)
        enc["labels"] = batch["label"]
        enc["idx"] = indices
        return enc

    def apply(split):
        return split.map(encode, batched=True, with_indices=True, remove_columns=split.column_names, desc=None)

    return apply(task.train), apply(task.eval)


def tokenize_text_file(path: str, tokenizer, max_length: int):
    """A plain-text file (one example per line, blank lines skipped) as a tokenised dataset for stages that
    read no labels (TinyBERT's general distillation); ``labels`` are -100 (ignored), ``idx`` the line order."""
    import datasets

    with open(path, encoding="utf-8") as f:
        texts = [line.strip() for line in f if line.strip()]
    enc = tokenizer(texts, truncation=True, max_length=max_length)
    columns = {**enc, "labels": [-100] * len(texts), "idx": list(range(len(texts)))}
    return datasets.Dataset.from_dict(columns)
