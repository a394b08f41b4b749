"""Each offline option as one function ``make(texts, seed) -> list[str | None]`` (None: no new text for that
input, e.g. a one-sentence input to sentence_shuffle), plus what identifies it in the cache key.

Text options draw from a ``random.Random`` seeded by (seed, option, input index), so an input's new text does
not depend on the other inputs, on batching or on the process count. Model options (mlm_replace,
back_translation, teacher_pseudo_data with source=mlm) run their model on the run's device and are seeded
per input the same way where the op allows (``distillkit/augment/generate.py``).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from distillkit import store as cache
from distillkit.errors import ConfigError

log = logging.getLogger("distillkit")

Make = Callable[[list, str], list]


@dataclass
class Op:
    name: str
    make: Make  # (texts, seed) → one new text or None per input
    identity: dict  # what, besides the inputs and the seed, determines its output (cache key)


def _rng(seed: str, i: int) -> random.Random:
    return random.Random(f"{seed}/{i}")


def synonyms(source: str, cfg, key: str):
    """The synonym table: the embedded task's lexicon, or WordNet (checked at plan time)."""
    if source == "auto":
        source = "lexicon" if cfg.data.source == "synthetic" else "wordnet"
    if source == "lexicon":
        from distillkit.augment.text import lexicon_synonyms

        return lexicon_synonyms(), "lexicon"
    from distillkit.augment.wordnet import check_wordnet, wordnet_synonyms

    check_wordnet(key)
    return wordnet_synonyms(), "wordnet"


def _per_text(fn) -> Make:
    return lambda texts, seed: [fn(text, _rng(seed, i)) for i, text in enumerate(texts)]


def synonym_op(opts, cfg) -> Op:
    from distillkit.augment.text import synonym_replace

    table, source = synonyms(opts.source, cfg, "augmentation.synonym.source")
    return Op(
        "synonym", _per_text(lambda t, rng: synonym_replace(t, rng, opts.p, table)), {**asdict(opts), "source": source}
    )


def perturbation_op(opts, cfg) -> Op:
    from distillkit.augment.text import perturb

    table, source = synonyms(opts.source, cfg, "augmentation.token_perturbation.source")
    return Op(
        "token_perturbation",
        _per_text(lambda t, rng: perturb(t, rng, opts.insert, opts.delete, opts.swap, table)),
        {**asdict(opts), "source": source},
    )


def shuffle_op(opts, cfg) -> Op:
    from distillkit.augment.text import shuffle_sentences, split_sentences

    def one(text, rng):
        return shuffle_sentences(text, rng) if len(split_sentences(text)) >= opts.min_sentences else None

    return Op("sentence_shuffle", _per_text(one), asdict(opts))


def pseudo_op(opts, cfg, mlm) -> Op:
    """New inputs for teacher pseudo-data, one per candidate: a training text pushed further from the data
    (synonyms at p = strength, then deletion, swap and insertion each at strength / 2; or the MLM resampling a
    ``strength`` share of the words)."""
    from distillkit.augment.text import perturb, synonym_replace

    if opts.source == "mlm":
        inner = mlm_op(opts.strength, 15, 64, mlm, "teacher_pseudo_data")
        return Op("teacher_pseudo_data", inner.make, {**asdict(opts), "mlm": inner.identity})
    table, source = synonyms("auto", cfg, "augmentation.teacher_pseudo_data.source")
    half = opts.strength / 2

    def one(text, rng):
        return perturb(synonym_replace(text, rng, opts.strength, table), rng, half, half, half, table)

    return Op("teacher_pseudo_data", _per_text(one), {**asdict(opts), "synonyms": source})


# ------------------------------------------------------------------------------------- model ops
def mlm_op(p: float, top_k: int, batch_size: int, mlm: tuple, name: str = "mlm_replace") -> Op:
    """TinyBERT's replacement with the MLM ``mlm`` = (model, tokenizer, identity)."""
    from distillkit.augment.generate import mlm_replace
    from distillkit.augment.text import NEGATIONS, STOP_WORDS

    model, tokenizer, identity = mlm

    def make(texts, seed):
        return mlm_replace(
            texts,
            model,
            tokenizer,
            seed=_int_seed(seed),
            p=p,
            top_k=top_k,
            batch_size=batch_size,
            device=model.device,
            protected=STOP_WORDS | NEGATIONS,
        )

    return Op(name, make, {"p": p, "top_k": top_k, "model": identity})


def back_translation_op(opts, device) -> Op:
    from distillkit.augment.generate import back_translate, load_seq2seq

    key = "augmentation.back_translation"
    forward = load_seq2seq(opts.forward, f"{key}.forward")
    backward = load_seq2seq(opts.backward, f"{key}.backward")
    for model, _ in (forward, backward):
        model.to(device).eval()

    def make(texts, seed):
        return back_translate(
            texts,
            forward,
            backward,
            seed=_int_seed(seed),
            batch_size=opts.batch_size,
            num_beams=opts.num_beams,
            do_sample=opts.sample,
            top_p=opts.top_p,
            temperature=opts.temperature,
            max_new_tokens=opts.max_new_tokens,
            device=device,
        )

    return Op("back_translation", make, asdict(opts))


def _int_seed(seed: str) -> int:
    return int(cache.entry_key({"seed": seed}), 16) % (2**31)


def resolve_mlm(opts_model: str, revision, cfg, key: str) -> str:
    """Which MLM ``mlm_replace.model`` names: ``teacher`` (the teacher checkpoint's MLM head), ``embedded`` (a
    small MLM trained on the embedded task's texts), or a hub id / directory. ``auto``: the teacher's head if
    it has one, else the embedded MLM for data=synthetic; otherwise the user must name one."""
    from distillkit.augment.generate import has_mlm_head

    teacher = cfg.teacher.path
    if opts_model in ("auto", "teacher"):
        if teacher is not None and has_mlm_head(teacher, cfg.teacher.revision):
            return "teacher"
        if opts_model == "auto" and cfg.data.source == "synthetic":
            return "embedded"
        has = (
            f"the teacher ({teacher}) has no MLM head"
            if teacher
            else "the teacher is built from a config, with no MLM head"
        )
        raise ConfigError(
            key,
            opts_model,
            f"needs a masked language model: {has}"
            + (
                f" and data={cfg.data.name} is not the embedded task (whose MLM distillkit trains)."
                if opts_model == "auto"
                else "."
            ),
            f"name one: {key}=bert-base-uncased (any hub id or local directory of a model with an MLM "
            "head; it need not share the teacher's tokenizer).",
        )
    return opts_model


def load_mlm(choice: str, opts_revision, cfg, plan, texts: list, steps: int, device) -> tuple:
    """(model, tokenizer, identity) of the resolved MLM; the embedded one trained once and cached."""
    from distillkit.augment.generate import load_mlm as load
    from distillkit.augment.generate import train_mlm

    if choice == "teacher":
        model, tokenizer = load(cfg.teacher.path, "teacher.path", cfg.teacher.revision)
        identity = {"teacher": cfg.teacher.path, "revision": cfg.teacher.revision}
    elif choice == "embedded":
        spec = {
            "texts": cache.entry_key({"texts": texts}),
            "steps": steps,
            "tokenizer": cache.entry_key(plan.tokenizer.get_vocab()),
        }
        final = cache.entry_dir(plan.cache_root, "mlm", spec)  # the log line names it while it is built

        def train(tmp):
            log.info(
                "augmentation: training a small MLM on the task's %d texts (%d steps), cached at %s",
                len(texts),
                steps,
                final,
            )
            train_mlm(texts, plan.tokenizer, Path(tmp), seed=0, steps=steps)

        cache.find_or_build(plan.cache_root, "mlm", spec, train)
        model, tokenizer = load(str(final), "augmentation.mlm_replace.model")
        identity = {"embedded": final.name}
    else:
        model, tokenizer = load(choice, "augmentation.mlm_replace.model", opts_revision)
        identity = {"model": choice, "revision": opts_revision}
    return model.to(device).eval(), tokenizer, identity
