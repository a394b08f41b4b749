"""The task's data: train/eval splits with text (and text pair) and integer labels, tokenised.

Three sources, one result (``TaskData``): the embedded synthetic task, a dataset from the hub (or a
local dataset directory) by name/config, and local csv/tsv/json/jsonl/parquet files, each read on its
own (``data_files.py``) so an error names the file at fault. Field names are mapped to the canonical
``text`` / ``text_pair`` / ``label`` columns and checked before anything is tokenised
(``data_fields.py``); then ``max_train_samples`` / ``max_eval_samples`` draw a seeded, stratified sample.
"""

from __future__ import annotations

import logging
from pathlib import Path

from distillkit.config.schema import DataConfig
from distillkit.errors import ConfigError, require
from distillkit.tasks.splits import TaskData, sample

log = logging.getLogger("distillkit")


def load_task(cfg: DataConfig) -> TaskData:
    """Load, map and check the splits named by ``cfg`` (no tokenisation yet)."""
    if cfg.source == "synthetic":
        stray = [
            k
            for k in ("eval_text_field", "eval_text_pair_field", "eval_label_field", "label_names")
            if getattr(cfg, k) is not None
        ]
        require(
            not stray,
            f"data.{stray[0] if stray else ''}",
            getattr(cfg, stray[0]) if stray else None,
            "does not apply to the synthetic task, which names its own columns and labels.",
            "drop it, or use data=local or data=hub.",
        )
        task = _synthetic(cfg)
    else:
        from distillkit.tasks.classification.fields import map_splits

        train, evals, names, dropped = map_splits(cfg, *_splits(cfg))
        task = TaskData(train, evals, names, has_pair=bool(cfg.text_pair_field), dropped=dropped)
    task.train = sample(task.train, cfg.max_train_samples, cfg.sample_seed, "train", stratify_by="label")
    task.eval = sample(task.eval, cfg.max_eval_samples, cfg.sample_seed, "eval", stratify_by="label")
    require(
        len(task.train) > 0 and len(task.eval) > 0,
        "data",
        cfg.name,
        "has an empty train or eval split.",
        "check the split names and files.",
    )
    return task


def _synthetic(cfg: DataConfig) -> TaskData:
    import datasets

    from distillkit.tasks.classification.synthetic import generate

    s = cfg.synthetic
    splits = generate(seed=s.seed, n_train=s.n_train, n_eval=s.n_eval, label_noise=s.label_noise, sentences=s.sentences)
    keep = lambda rows: [{"text": r["text"], "label": r["label"]} for r in rows]  # noqa: E731 (a one-line local function)
    return TaskData(
        datasets.Dataset.from_list(keep(splits.train)),
        datasets.Dataset.from_list(keep(splits.eval)),
        list(splits.label_names),
        has_pair=False,
    )


def _splits(cfg: DataConfig):
    """The raw train and eval splits, with the columns each is read by (the eval split's own keys where set)."""
    from distillkit.tasks.classification.fields import Split

    train_cols = {"text": ("data.text_field", cfg.text_field)}
    if cfg.text_pair_field:
        train_cols["text_pair"] = ("data.text_pair_field", cfg.text_pair_field)
    train_cols["label"] = ("data.label_field", cfg.label_field)
    eval_cols = {
        f: (f"data.eval_{f}_field", getattr(cfg, f"eval_{f}_field")) if getattr(cfg, f"eval_{f}_field") else pair
        for f, pair in train_cols.items()
    }
    if cfg.source == "local":
        from distillkit.tasks.files import read_local

        return (
            Split(
                "train", read_local("data.train_file", cfg.train_file), train_cols, "data.train_file", cfg.train_file
            ),
            Split("eval", read_local("data.eval_file", cfg.eval_file), eval_cols, "data.eval_file", cfg.eval_file),
        )
    train, evals = _load_hub(cfg)
    return Split("train", train, train_cols, source=cfg.train_split), Split(
        "eval", evals, eval_cols, source=cfg.eval_split
    )


def _load_hub(cfg: DataConfig):
    """A dataset by hub name/config, or a local directory saved with ``save_to_disk`` (``data=hub``)."""
    import datasets

    from distillkit.tasks.files import unloadable_dataset

    try:
        if Path(cfg.path).is_dir() and any(Path(cfg.path).glob("dataset_dict.json")):
            raw = datasets.load_from_disk(cfg.path)  # a DatasetDict saved with save_to_disk
            return _split(raw, cfg.train_split, "data.train_split"), _split(raw, cfg.eval_split, "data.eval_split")
        raw = datasets.load_dataset(cfg.path, cfg.config_name)
        return _split(raw, cfg.train_split, "data.train_split"), _split(raw, cfg.eval_split, "data.eval_split")
    except ConfigError:
        raise
    except Exception as err:  # datasets raises many types for "not found" / "offline"
        files = "use data=local data.train_file=... data.eval_file=..."
        raise unloadable_dataset("data.path", cfg.path, err, files) from None


def _split(raw, name: str, key: str):
    require(name in raw, key, name, "is not a split of this dataset.", f"use one of {', '.join(raw.keys())}.")
    return raw[name]


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
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_input_names=["input_ids", "token_type_ids", "attention_mask"],
    )
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


def unlabeled_texts(cfg: DataConfig, task: TaskData, source: str, size: int | None) -> list[str]:
    """An unlabeled pool: ``generated`` (more texts from the embedded task's generator: data=synthetic only),
    ``train`` (the training texts, their labels hidden), ``auto`` (generated for the synthetic task, else
    train), or a plain-text file (one example per line)."""
    if source == "auto":
        source = "generated" if cfg.source == "synthetic" else "train"
    if source == "generated":
        from distillkit.tasks.classification.synthetic import unlabeled

        require(
            cfg.source == "synthetic",
            "method.unlabeled",
            "generated",
            f"needs the embedded task's generator, and data={cfg.name} has none.",
            "use method.unlabeled=train or a text file of unlabeled examples.",
        )
        return unlabeled(cfg.synthetic.seed, size or len(task.train))
    if source == "train":
        return list(task.train["text"])
    with open(source, encoding="utf-8") as f:
        texts = [line.strip() for line in f if line.strip()]
    require(texts, "method.unlabeled", source, "holds no text.", "give a file with one example per line.")
    return texts[:size] if size else texts


def tokenize_texts(texts: list[str], tokenizer, max_length: int, first_idx: int = 0):
    """Unlabeled texts as a tokenised dataset: ``labels`` -100 (ignored by CE, "unlabeled" to pseudo-label
    losses), ``idx`` counting from ``first_idx`` (after the split they are appended to)."""
    import datasets

    enc = tokenizer(texts, truncation=True, max_length=max_length)
    return datasets.Dataset.from_dict(
        {**enc, "labels": [-100] * len(texts), "idx": list(range(first_idx, first_idx + len(texts)))}
    )


def tokenize_text_file(path: str, tokenizer, max_length: int):
    """A plain-text file (one example per line, blank lines skipped) as a tokenised dataset for stages that
    read no labels (TinyBERT's general distillation); ``labels`` are -100 (ignored), ``idx`` the line order."""
    with open(path, encoding="utf-8") as f:
        texts = [line.strip() for line in f if line.strip()]
    return tokenize_texts(texts, tokenizer, max_length)
