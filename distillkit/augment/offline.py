"""Offline augmentation: new training examples made once, before any stage trains, and cached.

Each selected offline option makes ``augmentation.copies`` new texts per training example (copy c seeded by
(seed, option, c, the example's index)), cached content-addressed under ``<cache>/augmented/<key>/`` (key: the
input texts, the option's settings, the seed, the models it runs) with each new example's source index. Then
the options' outputs are pooled in option order and exact duplicates dropped (of a training text or of an
earlier new text). A new example keeps its source's gold label when ``keep_labels`` says so (label-preserving
options by default), else its label is IGNORE_INDEX and it trains on the distillation terms alone.

Stages see the pool through their data view (``Workspace.train_data``): a stage with a teacher gets every new
example; a stage without one (``method=none``, born-again's gen0 from labels) gets only those with a label.
``teacher_prep`` never does: the teacher is prepared (and cached) on the task's own data. The eval split is
never augmented. The teacher is always run on the new input itself (its targets are computed per batch);
``teacher_pseudo_data`` candidates are also filtered once by the teacher's confidence before training.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass, field

from distillkit import store as cache
from distillkit.config.augment import AugmentationConfig
from distillkit.losses import IGNORE_INDEX

log = logging.getLogger("distillkit")
FORMAT = 2  # bump when an op's output for the same settings changes (2: synonym replaces at least one word)


@dataclass
class AugmentedSet:
    """The new examples of a run: rows of ``text`` [``text_pair``], ``label`` (gold or IGNORE_INDEX),
    ``source`` (the training example's index) and ``how`` (the option)."""

    rows: list[dict]
    seconds: float
    made: dict = field(default_factory=dict)  # option → new texts made
    kept: dict = field(default_factory=dict)  # option → new examples kept (after duplicates, filters)
    duplicates: int = 0
    cached: dict = field(default_factory=dict)  # option → read from the cache
    filtered: int = 0  # teacher_pseudo_data inputs dropped by min_confidence

    def summary(self) -> dict:
        return {
            "examples": len(self.rows),
            "with_labels": sum(r["label"] != IGNORE_INDEX for r in self.rows),
            "made": self.made,
            "kept": self.kept,
            "duplicates_dropped": self.duplicates,
            "low_confidence_dropped": self.filtered,
            "from_cache": self.cached,
            "seconds": round(self.seconds, 2),
        }


def seed_of(aug: AugmentationConfig, run_seed: int) -> int:
    return run_seed if aug.seed is None else aug.seed


def build(cfg, plan) -> AugmentedSet | None:
    """Make (or read from the cache) every offline option's new texts and pool them; None without any."""
    aug = cfg.augmentation
    if not aug.offline:
        return None
    started = time.time()
    train = plan.task.train
    texts = list(train["text"])
    result = AugmentedSet([], 0.0)
    seen = {_norm(t, p) for t, p in zip(texts, _pairs(plan.task))}
    for name in aug.offline:
        made, from_cache = _made(cfg, plan, name, texts)
        result.made[name], result.cached[name] = len(made), from_cache
        rows = _rows(plan.task, made, name, aug.keeps_labels(name))
        fresh = [r for r in rows if _norm(r["text"], r.get("text_pair")) not in seen]
        result.duplicates += len(rows) - len(fresh)
        unique = {}
        for r in fresh:
            unique.setdefault(_norm(r["text"], r.get("text_pair")), r)
        result.duplicates += len(fresh) - len(unique)
        seen.update(unique)
        result.rows += list(unique.values())
        result.kept[name] = len(unique)
    result.seconds = time.time() - started
    log.info(
        "augmentation (%s): %d new examples from %d training examples in %.1f s (%s; %d exact duplicates dropped)",
        aug.name,
        len(result.rows),
        len(texts),
        result.seconds,
        ", ".join(f"{k}: {v}" for k, v in result.kept.items()),
        result.duplicates,
    )
    return result


def _pairs(task) -> list:
    return list(task.train["text_pair"]) if task.has_pair else [None] * len(task.train)


def _norm(text: str, pair: str | None = None) -> tuple:
    return " ".join(text.split()), pair


def _rows(task, made: list[dict], name: str, keep_labels: bool) -> list[dict]:
    labels, pairs = list(task.train["label"]), _pairs(task)
    rows = []
    for m in made:
        row = {
            "text": m["text"],
            "label": labels[m["source"]] if keep_labels else IGNORE_INDEX,
            "source": m["source"],
            "how": name,
        }
        if task.has_pair:
            row["text_pair"] = pairs[m["source"]]
        rows.append(row)
    return rows


def _made(cfg, plan, name: str, texts: list[str]) -> tuple[list[dict], bool]:
    """The option's new texts as [{"source": i, "copy": c, "text": t}], from the cache or made now and cached.
    Of several processes (DDP) or runs that need the same entry, the first to take its lock makes it and the
    others wait and read it, so every process trains on the same examples whatever the process count."""
    aug = cfg.augmentation
    spec = entry_spec(cfg, plan, name, texts)
    sources = _sources(aug, name, len(texts), spec["seed"])

    def make(tmp) -> list[dict]:
        op = make_op(cfg, plan, name, texts)
        started = time.time()
        made = []
        for copy, picked in sources:
            inputs = [texts[i] for i in picked]
            outputs = _progress(op, inputs, f"{spec['seed']}/{name}/{copy}", name, copy, aug.copies)
            made += [{"source": i, "copy": copy, "text": t} for i, t in zip(picked, outputs) if t]
        log.info("augmentation: %s made %d new texts in %.1f s", name, len(made), time.time() - started)
        (tmp / "rows.jsonl").write_text("".join(json.dumps(m) + "\n" for m in made))
        return made

    entry = cache.find_or_build(plan.cache_root, "augmented", spec, make)
    if entry.built:
        return entry.value, False
    log.info("augmentation: %s read from the cache (%s)", name, entry.path)
    return _read(entry.path), True


def entry_spec(cfg, plan, name: str, texts: list[str]) -> dict:
    """Everything that determines the option's new texts: its cache key."""
    aug = cfg.augmentation
    op = make_op(cfg, plan, name, texts, identity_only=True)
    seed = seed_of(aug, cfg.seed)
    return {
        "option": name,
        "settings": op.identity,
        "copies": aug.copies,
        "seed": seed,
        "texts": cache.entry_key({"texts": texts}),
        "sources": cache.entry_key({"s": _sources(aug, name, len(texts), seed)}),
        "format": FORMAT,
    }


def _sources(aug: AugmentationConfig, name: str, n: int, seed: int) -> list[tuple[int, list[int]]]:
    """(copy, training indices) per copy: every example once per copy; teacher_pseudo_data makes ``size``
    candidates from examples drawn in a seeded order."""
    if name != "teacher_pseudo_data":
        return [(c, list(range(n))) for c in range(aug.copies)]
    import random

    size = aug.teacher_pseudo_data.size or n
    order = list(range(n))
    picked = []
    rng = random.Random(f"{seed}/pseudo-sources")
    while len(picked) < size:
        rng.shuffle(order)
        picked += order[: size - len(picked)]
    return [(0, picked)]


def _progress(op, inputs: list[str], seed: str, name: str, copy: int, copies: int) -> list:
    """Run ``op`` over ``inputs`` in chunks with a progress bar (model ops are slow on big data)."""
    from tqdm.auto import tqdm

    chunk = 512
    out = []
    with tqdm(total=len(inputs), desc=f"augment {name} {copy + 1}/{copies}", unit="ex", leave=False) as bar:
        for start in range(0, len(inputs), chunk):
            out += op.make(inputs[start : start + chunk], f"{seed}/{start}")
            bar.update(min(chunk, len(inputs) - start))
    return out


def _read(final) -> list[dict]:
    with open(final / "rows.jsonl", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def make_op(cfg, plan, name: str, texts: list[str], identity_only: bool = False):
    """The option's ``Op``. ``identity_only``: just what its cache key needs, with no model loaded."""
    from distillkit.augment import ops

    aug, device = cfg.augmentation, plan.device
    opts = getattr(aug, name)
    if name == "synonym":
        return ops.synonym_op(opts, cfg)
    if name == "token_perturbation":
        return ops.perturbation_op(opts, cfg)
    if name == "sentence_shuffle":
        return ops.shuffle_op(opts, cfg)
    if name == "back_translation":
        return ops.Op(name, None, dataclasses.asdict(opts)) if identity_only else ops.back_translation_op(opts, device)
    mlm_opts = aug.get("mlm_replace") if name == "mlm_replace" else None
    choice = ops.resolve_mlm(
        mlm_opts.model if mlm_opts else "auto",
        mlm_opts.revision if mlm_opts else None,
        cfg,
        "augmentation.mlm_replace.model",
    )
    if name == "teacher_pseudo_data" and opts.source == "augment":
        return ops.pseudo_op(opts, cfg, None)
    if identity_only:
        return ops.Op(
            name,
            None,
            {
                **dataclasses.asdict(opts),
                "mlm": choice,
                "teacher": [cfg.teacher.path, cfg.teacher.revision] if choice == "teacher" else None,
            },
        )
    steps = mlm_opts.train_steps if mlm_opts else 600
    mlm = ops.load_mlm(choice, mlm_opts.revision if mlm_opts else None, cfg, plan, texts, steps, device)
    if name == "mlm_replace":
        return ops.mlm_op(opts.p, opts.top_k, opts.batch_size, mlm)
    return ops.pseudo_op(opts, cfg, mlm)


# ---------------------------------------------------------------------------------- into training
def filter_confident(
    augmented: AugmentedSet, threshold: float, teacher, tokenizer, max_length: int, device, batch_size: int
) -> None:
    """Drop the teacher_pseudo_data rows whose teacher top probability is below ``threshold`` (in place)."""
    import torch

    rows = [r for r in augmented.rows if r["how"] == "teacher_pseudo_data"]
    if threshold <= 0 or not rows:
        return
    teacher.to(device).eval()
    keep = []
    with torch.no_grad():
        for start in range(0, len(rows), batch_size):
            chunk = rows[start : start + batch_size]
            pairs = [r["text_pair"] for r in chunk] if "text_pair" in chunk[0] else None
            enc = tokenizer(
                [r["text"] for r in chunk],
                pairs,
                truncation=True,
                max_length=max_length,
                padding=True,
                return_tensors="pt",
            ).to(device)
            probs = teacher(**enc).logits.float().softmax(-1).amax(-1)
            keep += probs.ge(threshold).tolist()
    dropped = {id(r) for r, k in zip(rows, keep) if not k}
    augmented.rows = [r for r in augmented.rows if id(r) not in dropped]
    augmented.filtered = len(dropped)
    augmented.kept["teacher_pseudo_data"] = len(rows) - len(dropped)
    log.info(
        "augmentation: teacher_pseudo_data kept %d of %d inputs (teacher confidence >= %g)",
        len(rows) - len(dropped),
        len(rows),
        threshold,
    )


def as_dataset(augmented: AugmentedSet, tokenizer, max_length: int, labels_only: bool, features):
    """The new examples tokenised like the training split (``idx`` = the source example's index, so per-example
    memories such as CRD's bank treat a new example as a view of its source). ``labels_only``: only those that
    keep a gold label (for stages without a teacher)."""
    import datasets

    rows = [r for r in augmented.rows if not labels_only or r["label"] != IGNORE_INDEX]
    if not rows:
        return None
    pairs = [r["text_pair"] for r in rows] if "text_pair" in rows[0] else None
    enc = tokenizer([r["text"] for r in rows], pairs, truncation=True, max_length=max_length)
    data = datasets.Dataset.from_dict({**enc, "labels": [r["label"] for r in rows], "idx": [r["source"] for r in rows]})
    return data.select_columns(list(features)).cast(features)


def show(augmented: AugmentedSet, texts: list[str], n: int, wandb_run=None) -> None:
    """Log ``n`` new examples beside their sources (spread over the options); all go to W&B as a table."""
    by_option = {}
    for r in augmented.rows:
        by_option.setdefault(r["how"], []).append(r)
    picked = []
    while len(picked) < n and any(by_option.values()):
        for rows in by_option.values():
            if rows and len(picked) < n:
                picked.append(rows.pop(0) if len(picked) % 2 == 0 else rows.pop(len(rows) // 2))
    for r in picked:
        label = "teacher only" if r["label"] == IGNORE_INDEX else f"label {r['label']}"
        log.info(
            "augmentation example (%s, %s):\n    source: %s\n    new:    %s",
            r["how"],
            label,
            texts[r["source"]],
            r["text"],
        )
    if wandb_run is not None and augmented.rows:
        import wandb

        table = wandb.Table(columns=["option", "source_index", "source", "augmented", "label"])
        for r in augmented.rows[:200]:
            table.add_data(r["how"], r["source"], texts[r["source"]], r["text"], r["label"])
        wandb_run.log({"augmentation/examples": table})
