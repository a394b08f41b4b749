"""The ``augmentation`` group's schema (``AugmentationConfig``); re-exported by ``distillkit.config.schema``.

Options are selected one or several at a time (``augmentation=synonym``, ``augmentation=[synonym,mixup]``): each
option's YAML switches its own section on (``augmentation.synonym.enabled: true``) and sets it
(``augmentation.synonym.p``). Every section exists in every run, so a sweep can set one option's keys for the jobs
that select it (``-m augmentation=synonym,mixup augmentation.synonym.p=0.2``); setting the keys of an option that
no job selects is refused before anything runs (``preflight``). Keys common to all offline options (``copies``,
``keep_labels``, ``seed``, ``show``) sit at the top.

Offline options make new training examples before training (``distillkit/augment/offline.py``); online
options act on every batch inside training (``distillkit/augment/online.py``). Only config-level checks run
here; what needs files, models or the data (WordNet, an MLM, translation models, input embeddings) is
checked at plan time (``distillkit/augment/checks.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Optional

from distillkit.errors import one_of, require, unit_interval
from distillkit.errors import positive as _positive

OFFLINE = (
    "synonym",
    "token_perturbation",
    "mlm_replace",
    "back_translation",
    "sentence_shuffle",
    "teacher_pseudo_data",
)
ONLINE = ("consistency", "mixup", "cutmix")
# Options whose new examples keep their source's gold label by default; the others train on the teacher alone.
LABEL_PRESERVING = ("synonym", "token_perturbation", "back_translation", "sentence_shuffle")
SYNONYM_SOURCES = ("auto", "lexicon", "wordnet")


@dataclass
class SynonymOptions:
    enabled: bool = False  # set by conf/augmentation/<option>.yaml when the option is selected
    p: float = 0.1  # each eligible word replaced with this probability (EDA's α_sr)
    source: str = "auto"  # auto (the embedded task's lexicon for data=synthetic, else wordnet) | lexicon | wordnet

    def __post_init__(self):
        unit_interval("augmentation.synonym.p", self.p)
        one_of("augmentation.synonym.source", self.source, SYNONYM_SOURCES)


@dataclass
class TokenPerturbationOptions:
    enabled: bool = False  # set by conf/augmentation/<option>.yaml when the option is selected
    insert: float = 0.1  # EDA's random insertion: round(insert·words) synonyms inserted
    delete: float = 0.1  # each word deleted with this probability (never a negation)
    swap: float = 0.1  # round(swap·words) swaps of two words
    source: str = "auto"  # where inserted synonyms come from, as for synonym

    def __post_init__(self):
        for key in ("insert", "delete", "swap"):
            unit_interval(f"augmentation.token_perturbation.{key}", getattr(self, key))
        one_of("augmentation.token_perturbation.source", self.source, SYNONYM_SOURCES)


@dataclass
class MLMReplaceOptions:
    enabled: bool = False  # set by conf/augmentation/<option>.yaml when the option is selected
    p: float = 0.4  # each single-piece word replaced with this probability (TinyBERT's p_t)
    top_k: int = 15  # sampled among the MLM's K best candidates (TinyBERT's K)
    model: str = "auto"  # auto | teacher | embedded | a hub id or local directory of a model with an MLM head
    revision: Optional[str] = None
    batch_size: int = 64
    train_steps: int = 600  # model=embedded: steps of the small MLM trained on the task's texts

    def __post_init__(self):
        unit_interval("augmentation.mlm_replace.p", self.p)
        _positive("augmentation.mlm_replace.top_k", self.top_k, "use e.g. 15.")
        _positive("augmentation.mlm_replace.batch_size", self.batch_size)
        _positive("augmentation.mlm_replace.train_steps", self.train_steps)


@dataclass
class BackTranslationOptions:
    enabled: bool = False  # set by conf/augmentation/<option>.yaml when the option is selected
    forward: str = "Helsinki-NLP/opus-mt-en-de"  # source → pivot language (hub id or local directory)
    backward: str = "Helsinki-NLP/opus-mt-de-en"  # pivot → source language
    sample: bool = True  # sampling (diverse paraphrases) instead of beam search
    num_beams: int = 1
    top_p: float = 0.9
    temperature: float = 1.0
    batch_size: int = 32
    max_new_tokens: Optional[int] = None  # null: bounded by each batch's input length

    def __post_init__(self):
        unit_interval("augmentation.back_translation.top_p", self.top_p)
        _positive("augmentation.back_translation.temperature", self.temperature)
        _positive("augmentation.back_translation.num_beams", self.num_beams)
        _positive("augmentation.back_translation.batch_size", self.batch_size)


@dataclass
class SentenceShuffleOptions:
    enabled: bool = False  # set by conf/augmentation/<option>.yaml when the option is selected
    min_sentences: int = 2  # inputs with fewer sentences make no new example

    def __post_init__(self):
        require(
            self.min_sentences >= 2,
            "augmentation.sentence_shuffle.min_sentences",
            self.min_sentences,
            "must be at least 2: one sentence has no other order.",
            "use 2 or more.",
        )


@dataclass
class PseudoDataOptions:
    enabled: bool = False  # set by conf/augmentation/<option>.yaml when the option is selected
    source: str = "augment"  # augment: synonym + perturbation at `strength` | mlm: mlm_replace at `strength`
    strength: float = 0.3  # the rates of the ops that make each new input (higher: further from the data)
    size: Optional[int] = None  # candidate inputs to make; null = as many as training examples
    min_confidence: float = 0.0  # keep an input only when the teacher's top probability is at least this

    def __post_init__(self):
        one_of("augmentation.teacher_pseudo_data.source", self.source, ["augment", "mlm"])
        unit_interval("augmentation.teacher_pseudo_data.strength", self.strength)
        unit_interval("augmentation.teacher_pseudo_data.min_confidence", self.min_confidence)
        require(
            self.size is None or self.size >= 1,
            "augmentation.teacher_pseudo_data.size",
            self.size,
            "must be at least 1.",
            "use a positive count, or null for as many as training examples.",
        )


@dataclass
class ConsistencyOptions:
    enabled: bool = False  # set by conf/augmentation/<option>.yaml when the option is selected
    weight: float = 1.0  # λ of the added term
    noise: str = "mask"  # how the view x′ is made from x: mask | replace (tokens, each with probability p)
    p: float = 0.15
    temperature: float = 1.0
    on_view: bool = False  # also match the teacher on the view: + λ·T²·KL(p_t(x′) ‖ p_s(x′))

    def __post_init__(self):
        _positive("augmentation.consistency.weight", self.weight, "use a positive weight, e.g. 1.0.")
        one_of("augmentation.consistency.noise", self.noise, ["mask", "replace"])
        unit_interval("augmentation.consistency.p", self.p)
        _positive("augmentation.consistency.temperature", self.temperature)


@dataclass
class MixOptions:
    """mixup and cutmix: λ ~ Beta(α, α) for a random ``share`` of each batch's examples (the rest stay clean)."""

    enabled: bool = False
    alpha: float = 0.4
    share: float = 0.5
    targets: str = "teacher"  # teacher: the teacher on the mixed input | mixed: the λ-mix of the two soft targets

    def _check(self, option: str):
        _positive(f"augmentation.{option}.alpha", self.alpha, "use a positive α, e.g. 0.4.")
        unit_interval(f"augmentation.{option}.share", self.share)
        one_of(f"augmentation.{option}.targets", self.targets, ["teacher", "mixed"])


@dataclass
class MixupOptions(MixOptions):
    def __post_init__(self):
        self._check("mixup")


@dataclass
class CutmixOptions(MixOptions):
    alpha: float = 1.0

    def __post_init__(self):
        self._check("cutmix")


@dataclass
class AugmentationConfig:
    copies: int = 1  # new examples per training example, per offline option
    keep_labels: Optional[bool] = None  # null: label-preserving options keep the gold label, others use the teacher
    seed: Optional[int] = None  # null: the run's seed
    show: int = 3  # augmented examples logged beside their sources
    synonym: SynonymOptions = field(default_factory=SynonymOptions)
    token_perturbation: TokenPerturbationOptions = field(default_factory=TokenPerturbationOptions)
    mlm_replace: MLMReplaceOptions = field(default_factory=MLMReplaceOptions)
    back_translation: BackTranslationOptions = field(default_factory=BackTranslationOptions)
    sentence_shuffle: SentenceShuffleOptions = field(default_factory=SentenceShuffleOptions)
    teacher_pseudo_data: PseudoDataOptions = field(default_factory=PseudoDataOptions)
    consistency: ConsistencyOptions = field(default_factory=ConsistencyOptions)
    mixup: MixupOptions = field(default_factory=MixupOptions)
    cutmix: CutmixOptions = field(default_factory=CutmixOptions)

    def __post_init__(self):
        require(
            self.copies >= 1,
            "augmentation.copies",
            self.copies,
            "must be at least 1.",
            "use 1 (one new example per training example and option) or more.",
        )
        require(self.show >= 0, "augmentation.show", self.show, "must not be negative.", "use 0 to log none.")
        require(
            not (self.mixup.enabled and self.cutmix.enabled),
            "augmentation",
            "[mixup, cutmix]",
            "mixes every batch twice: both options replace the batch's inputs.",
            "pick one of mixup and cutmix.",
        )

    @property
    def selected(self) -> list[str]:
        return [f.name for f in fields(self) if f.name in OFFLINE + ONLINE and getattr(self, f.name).enabled]

    def get(self, option: str):
        """The option's settings when it is selected, else None."""
        opts = getattr(self, option)
        return opts if opts.enabled else None

    @property
    def offline(self) -> list[str]:
        return [name for name in self.selected if name in OFFLINE]

    @property
    def online(self) -> list[str]:
        return [name for name in self.selected if name in ONLINE]

    @property
    def name(self) -> str:
        return "+".join(self.selected) or "none"

    def keeps_labels(self, option: str) -> bool:
        """Whether ``option``'s new examples train on their source's gold label (else on the teacher alone)."""
        if option == "teacher_pseudo_data":
            return False
        return option in LABEL_PRESERVING if self.keep_labels is None else self.keep_labels
