"""Schema dataclasses of the ``method`` group's classic families (logits, features, relations); the table
that maps each method's name to its schema and builder is ``distillkit/config/registry.py``.

Each ``conf/method/<name>.yaml`` extends its schema (``/schema/method_<name>@_here_``); ``__post_init__``
checks what can be checked from the values alone. Checks against the models (layer maps, widths, head
counts, hook paths) run in the builders (``distillkit/methods/``) at plan time, still before any weight is loaded.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Optional

from distillkit.errors import non_negative, one_of, positive, require, unit_interval


def _temperature(key: str, value: float) -> None:
    positive(key, value, "use a temperature > 0 (1 = plain softmax; 2-8 is usual).")


def _weights(prefix: str, obj, names: tuple[str, ...]) -> None:
    for name in names:
        non_negative(f"{prefix}.{name}", getattr(obj, name))


@dataclass
class LayerMapConfig:
    """Which student layer learns from which teacher layer (hidden-state numbering: 1 = first layer)."""

    strategy: str = "auto"  # auto (the pair group's map, else uniform) | uniform | skip | last | list
    layers: Optional[list[int]] = None  # strategy=list: the teacher layer of student layers 1, 2, ...
    final: bool = True  # false: leave the student's last layer out (PKD: the logit loss covers it)

    def __post_init__(self):
        one_of("method.layer_map.strategy", self.strategy, ["auto", "uniform", "skip", "last", "list"])
        if self.strategy != "list":
            require(
                self.layers is None,
                "method.layer_map.layers",
                self.layers,
                f"is only read with strategy=list (strategy={self.strategy}).",
                "add method.layer_map.strategy=list, or drop method.layer_map.layers.",
            )


@dataclass
class PhaseConfig:
    """The budget of one stage of a multi-stage method. ``share``: this fraction of the run's budget (train.epochs
    or train.max_steps, the whole distillation); null = an equal part of what the stages with a share leave.
    ``epochs``: pin the stage to this many epochs of its own data instead, on top of the split. ``learning_rate``:
    the stage's peak rate; null = train.learning_rate."""

    epochs: Optional[float] = None
    learning_rate: Optional[float] = None
    share: Optional[float] = None

    def check(self, key: str) -> None:
        for name in ("epochs", "learning_rate"):
            value = getattr(self, name)
            require(
                value is None or value > 0,
                f"{key}.{name}",
                value,
                "must be positive.",
                "use a positive value, or null for "
                + ("its part of train.epochs." if name == "epochs" else f"train.{name}."),
            )
        self._check_share(key, pinned=self.epochs is not None)

    def _check_share(self, key: str, pinned: bool) -> None:
        require(
            self.share is None or 0 < self.share <= 1,
            f"{key}.share",
            self.share,
            "is outside (0, 1]: it is the fraction of the run's budget (train.epochs / train.max_steps) the stage "
            "takes.",
            "use e.g. 0.5, or null for an equal part of what the other stages leave.",
        )
        require(
            self.share is None or not pinned,
            f"{key}.share",
            self.share,
            f"and {key}.epochs={self.epochs} both set the stage's budget.",
            f"keep one: {key}.share (a fraction of the run's budget) or {key}.epochs (a fixed budget on top of it).",
        )

    def _check_rate(self, key: str) -> None:
        require(
            self.learning_rate is None or self.learning_rate > 0,
            f"{key}.learning_rate",
            self.learning_rate,
            "must be positive.",
            "use a positive value, or null for train.learning_rate.",
        )


@dataclass
class GeneralPhaseConfig(PhaseConfig):
    """TinyBERT's general-distillation stage: left out while ``epochs`` is 0 and ``share`` null; ``epochs`` > 0 pins
    it to that many epochs of its text, on top of the run's budget; ``share`` gives it that part of the budget."""

    epochs: Optional[float] = 0.0
    text_file: Optional[str] = None  # plain text, one example per line; null = the training texts (labels unread)

    @property
    def enabled(self) -> bool:
        return bool(self.epochs) or self.share is not None

    def check(self, key: str) -> None:
        require(
            self.epochs is not None and self.epochs >= 0,
            f"{key}.epochs",
            self.epochs,
            "must be 0 (no general stage) or positive.",
            "use 0 or e.g. 1.",
        )
        self._check_rate(key)
        self._check_share(key, pinned=bool(self.epochs))
        if self.text_file is not None:
            require(
                os.path.isfile(self.text_file) and os.access(self.text_file, os.R_OK),
                f"{key}.text_file",
                self.text_file,
                "is not a readable file.",
                "give a plain-text file with one example per line (relative paths start where you run).",
            )


@dataclass
class NoneMethodConfig:
    name: str = "none"


@dataclass
class KDMethodConfig:
    name: str = "kd"
    temperature: float = 4.0
    ce_weight: float = 0.5  # α: the weight of the hard-label CE term; the soft KD term gets 1 − α

    def __post_init__(self):
        _temperature("method.temperature", self.temperature)
        unit_interval("method.ce_weight", self.ce_weight)


@dataclass
class FitNetsMethodConfig:
    """Romero et al. 2015: stage ``hints`` trains the student's mapped layers to regress the teacher's
    (through a learned projection W_s when widths differ); stage ``distill`` is KD on the whole student."""

    name: str = "fitnets"
    layer_map: LayerMapConfig = field(default_factory=LayerMapConfig)
    hint_weight: float = 1.0
    hints: PhaseConfig = field(default_factory=PhaseConfig)
    temperature: float = 4.0  # the KD stage
    ce_weight: float = 0.5

    def __post_init__(self):
        _weights("method", self, ("hint_weight",))
        self.hints.check("method.hints")
        _temperature("method.temperature", self.temperature)
        unit_interval("method.ce_weight", self.ce_weight)


@dataclass
class AttentionTransferMethodConfig:
    """Zagoruyko & Komodakis 2017: L = ce_weight·CE + at_weight·Σ_l ‖A_s/‖A_s‖₂ − A_t/‖A_t‖₂‖₂ (+ kd_weight·KD)."""

    name: str = "attention_transfer"
    layer_map: LayerMapConfig = field(default_factory=LayerMapConfig)
    p: float = 2.0  # A = Σ_c |F_c|^p
    at_weight: float = 1.0
    ce_weight: float = 1.0
    kd_weight: float = 0.0  # the paper's AT+KD variant uses > 0
    temperature: float = 4.0

    def __post_init__(self):
        positive("method.p", self.p, "use p > 0 (the paper uses 2).")
        _weights("method", self, ("at_weight", "ce_weight", "kd_weight"))
        _temperature("method.temperature", self.temperature)


EMBEDDINGS = ["cls", "mean"]


@dataclass
class RKDMethodConfig:
    """Park et al. 2019: distance and angle potentials between a batch's embeddings (Huber loss)."""

    name: str = "rkd"
    embedding: str = "cls"  # the final layer's [CLS] vector, or the mean over tokens
    distance_weight: float = 25.0
    angle_weight: float = 50.0
    ce_weight: float = 1.0
    kd_weight: float = 0.0
    temperature: float = 4.0

    def __post_init__(self):
        one_of("method.embedding", self.embedding, EMBEDDINGS)
        _weights("method", self, ("distance_weight", "angle_weight", "ce_weight", "kd_weight"))
        _temperature("method.temperature", self.temperature)


@dataclass
class CRDMethodConfig:
    """Tian et al. 2020: contrastive representation distillation with a momentum memory bank."""

    name: str = "crd"
    embedding: str = "cls"
    feat_dim: int = 128
    num_negatives: Optional[int] = None  # null = the paper's 16384 scaled to the training set (16384·N/50000)
    nce_temperature: float = 0.07
    momentum: float = 0.5
    crd_weight: float = 0.8  # the paper's β
    ce_weight: float = 1.0
    kd_weight: float = 0.0
    temperature: float = 4.0

    def __post_init__(self):
        one_of("method.embedding", self.embedding, EMBEDDINGS)
        positive("method.feat_dim", self.feat_dim, "use an embedding size such as 128.")
        require(
            self.num_negatives is None or self.num_negatives >= 1,
            "method.num_negatives",
            self.num_negatives,
            "must be at least 1.",
            "use null (scaled to the data) or a count such as 4096.",
        )
        positive("method.nce_temperature", self.nce_temperature, "use a temperature such as 0.07.")
        require(
            0.0 <= self.momentum < 1.0,
            "method.momentum",
            self.momentum,
            "is outside [0, 1).",
            "use a momentum such as 0.5 (the paper's).",
        )
        _weights("method", self, ("crd_weight", "ce_weight", "kd_weight"))
        _temperature("method.temperature", self.temperature)


@dataclass
class PKDMethodConfig:
    """Sun et al. 2019: L = (1 − α)·CE + α·T²·KL + β·Σ ‖h_s/‖h_s‖ − h_t/‖h_t‖‖² on mapped [CLS] states."""

    name: str = "pkd"
    layer_map: LayerMapConfig = field(default_factory=lambda: LayerMapConfig(strategy="skip", final=False))
    alpha: float = 0.5
    temperature: float = 5.0
    beta: float = 100.0

    def __post_init__(self):
        unit_interval("method.alpha", self.alpha)
        _temperature("method.temperature", self.temperature)
        non_negative("method.beta", self.beta)


@dataclass
class DistilBERTMethodConfig:
    """Sanh et al. 2019: L = ce_weight·CE + kd_weight·T²·KL + cos_weight·(1 − cos(h_s, h_t)) on the last layer."""

    name: str = "distilbert"
    ce_weight: float = 2.0
    kd_weight: float = 5.0
    cos_weight: float = 1.0
    temperature: float = 2.0

    def __post_init__(self):
        _weights("method", self, ("ce_weight", "kd_weight", "cos_weight"))
        _temperature("method.temperature", self.temperature)


@dataclass
class TinyBERTMethodConfig:
    """Jiao et al. 2020: stage ``intermediate`` (embedding, attention and hidden MSE on the layer map),
    then stage ``prediction`` (soft cross-entropy on logits); optionally a ``general`` stage first, on the
    training texts without their labels."""

    name: str = "tinybert"
    layer_map: LayerMapConfig = field(default_factory=LayerMapConfig)
    embedding_weight: float = 1.0
    attention_weight: float = 1.0
    attention_target: str = "scores"  # scores: QKᵀ/√d before softmax (the paper's) | probs: softmax output
    hidden_weight: float = 1.0
    temperature: float = 1.0  # the prediction stage; the paper uses 1
    ce_weight: float = 0.0  # hard labels in the prediction stage (the paper: none)
    general: GeneralPhaseConfig = field(default_factory=GeneralPhaseConfig)
    intermediate: PhaseConfig = field(default_factory=PhaseConfig)
    prediction: PhaseConfig = field(default_factory=PhaseConfig)
    query_path: Optional[str] = None  # attention_target=scores: module paths with {layer}; null = found for
    key_path: Optional[str] = None  # BERT/RoBERTa/DistilBERT layouts
    schedule: str = "staged"  # staged: intermediate → prediction | joint: one stage, both losses (prediction's budget)

    def __post_init__(self):
        one_of("method.schedule", self.schedule, ["staged", "joint"])
        _weights("method", self, ("embedding_weight", "attention_weight", "hidden_weight"))
        one_of("method.attention_target", self.attention_target, ["scores", "probs"])
        _temperature("method.temperature", self.temperature)
        unit_interval("method.ce_weight", self.ce_weight)
        self.general.check("method.general")
        self.intermediate.check("method.intermediate")
        self.prediction.check("method.prediction")


@dataclass
class MiniLMMethodConfig:
    """Wang et al. 2020: KL between last-layer self-attention distributions and value relations, per
    relation head; stage ``relations`` transfers them, stage ``finetune`` trains on the labels."""

    name: str = "minilm"
    teacher_layer: Optional[int] = None  # 1..N; null = the teacher's last layer
    relation_heads: Optional[int] = None  # null = the student's attention heads
    attention_weight: float = 1.0
    value_weight: float = 1.0
    relations: PhaseConfig = field(default_factory=PhaseConfig)
    finetune: PhaseConfig = field(default_factory=PhaseConfig)
    query_path: Optional[str] = None  # module path with {layer}; null = found for BERT/RoBERTa/DistilBERT
    key_path: Optional[str] = None
    value_path: Optional[str] = None
    schedule: str = "joint"  # joint: one stage, both losses (finetune's budget) | staged: relations → finetune
    kd_weight: float = 0.0  # the fine-tuning loss: (1 − λ)·CE + λ·T²·KL(p_t ‖ p_s); 0 = the paper's CE alone
    temperature: float = 4.0

    def __post_init__(self):
        one_of("method.schedule", self.schedule, ["staged", "joint"])
        unit_interval("method.kd_weight", self.kd_weight)
        _temperature("method.temperature", self.temperature)
        require(
            self.teacher_layer is None or self.teacher_layer >= 1,
            "method.teacher_layer",
            self.teacher_layer,
            "must be a 1-based layer number.",
            "use null (the last layer) or 1..N.",
        )
        require(
            self.relation_heads is None or self.relation_heads >= 1,
            "method.relation_heads",
            self.relation_heads,
            "must be at least 1.",
            "use null (the student's heads) or a positive count.",
        )
        _weights("method", self, ("attention_weight", "value_weight"))
        self.relations.check("method.relations")
        self.finetune.check("method.finetune")
