"""What a stage optimises: the inputs a loss term reads (``LossInputs``, with the training's ``Progress``), a
weighted term (``LossTerm``), a stage's objective (``Objective``: terms + the features they read + adapters) and
the two models' shapes builders check against (``Dims``). "Method" is the user's recipe (``method=kd``); a
method's builder in ``distillkit/methods/`` turns it into stages, each with its own objective."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from distillkit.models.features import Features, FeatureSpec


@dataclass(frozen=True)
class Progress:
    """How far a stage's training is when a batch's loss is computed, in the Trainer's own count: ``step``
    optimizer steps done (0 for the first batch), of the stage's ``steps``; ``steps_per_epoch`` optimizer steps make
    one pass over the stage's data view (the Trainer's ``num_update_steps_per_epoch``)."""

    step: int
    steps: int
    steps_per_epoch: int

    @property
    def epochs_done(self) -> int:
        """Whole epochs completed before this batch (0 during the first)."""
        return self.step // self.steps_per_epoch

    @property
    def epochs(self) -> float:
        """The stage's length in epochs, fractional when its budget is (``train.epochs=2.5``, a ``max_steps`` cap)."""
        return self.steps / self.steps_per_epoch


@dataclass
class LossInputs:
    """Everything a loss term may read for one batch."""

    student: Features
    teacher: Features | None
    labels: torch.Tensor  # (B,)
    attention_mask: torch.Tensor  # (B, S)
    adapters: torch.nn.ModuleDict
    batch: dict = field(default_factory=dict)  # the collated batch (e.g. "idx", the examples' dataset indices)
    label_mix: tuple | None = None  # mixup/cutmix: (w (B,), perm (B,)): row i's label is (1 − w)·y_i + w·y_perm(i)
    progress: Progress | None = None  # where the stage's training stands (set by the trainer; None outside it)


@dataclass
class LossTerm:
    """One weighted term of a method's loss; logged under ``name`` at every logging step."""

    name: str
    weight: float
    fn: Callable[[LossInputs], torch.Tensor]
    formula: str  # how the term reads in the printed loss, e.g. "CE(y, softmax(z_s))"
    on_data: bool = False  # on-policy objectives: read the dataset's batch even when the step samples its own


@dataclass
class Objective:
    """The loss of one training stage."""

    name: str
    terms: list[LossTerm]
    needs_teacher: bool
    student_features: FeatureSpec = field(default_factory=FeatureSpec)
    teacher_features: FeatureSpec = field(default_factory=FeatureSpec)
    adapters: torch.nn.ModuleDict = field(default_factory=torch.nn.ModuleDict)
    notes: str = ""  # symbols and hyper-parameters, printed under the formula
    reads_logits: bool = True  # False: parts of the student (its head) get no gradient; DDP must allow that
    rollout: Rollout | None = None  # on-policy objectives: the student samples the batch's responses itself
    uncacheable: str | None = None  # why the teacher's outputs must not be stored once and reused (teacher_cache)
    topk: float | None = None  # causal LMs: the loss has a top-k form at this temperature (topk_cache may serve it)

    def formula(self) -> str:
        """The composed loss as one line, e.g. ``L = 0.5·CE(y, softmax(z_s)) + 0.5·T²·KL(...)``."""
        parts = [f"{term.weight:g}·{term.formula}" for term in self.terms if term.weight != 0]
        text = "L = " + (" + ".join(parts) if parts else "0")
        return text + (f"    [{self.notes}]" if self.notes else "")

    @property
    def needs_attentions(self) -> bool:
        return bool(self.student_features.attentions or self.teacher_features.attentions)

    @property
    def data_terms(self) -> bool:
        """Whether a weighted term reads the dataset's batch on an on-policy step (``LossTerm.on_data``)."""
        return any(term.on_data and term.weight != 0 for term in self.terms)

    def __call__(
        self, inputs: LossInputs, data: LossInputs | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The weighted total and each term's unweighted value (detached, for logging). ``data``: on an on-policy
        step, the student's outputs on the dataset's batch that the samples replaced; ``on_data`` terms read it."""
        total, values = None, {}
        for term in self.terms:
            if term.weight == 0:
                continue
            value = term.fn(data if term.on_data and data is not None else inputs)
            values[term.name] = value.detach()
            total = term.weight * value if total is None else total + term.weight * value
        return total, values


@dataclass(frozen=True)
class Rollout:
    """On-policy batches (GKD, reverse KL, MiniLLM): with probability ``fraction`` a training batch's responses are
    replaced, inside the training step, by the student's own samples of at most ``max_new_tokens`` tokens.
    ``teacher_mix`` = α > 0 (MiniLLM): each token is drawn from α·p_teacher + (1 − α)·q_student instead, which
    runs the stage's teacher once per generated token."""

    fraction: float
    max_new_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    teacher_mix: float = 0.0


@dataclass
class Dims:
    """The shapes of the two models that methods are checked against (from their configs)."""

    student_layers: int
    teacher_layers: int
    student_hidden: int
    teacher_hidden: int
    student_heads: int
    teacher_heads: int
    train_examples: int
    pair_layers: list[int] | None = None  # the pair group's layer map, if any
    student_config: object = None
    teacher_config: object = None
    copied_layers: list[int] | None = None  # 0-based teacher layer each student layer was copied from (None: not)

    @classmethod
    def from_configs(
        cls, student_config, teacher_config, train_examples: int, pair_layers=None, copied_layers=None
    ) -> Dims:
        return cls(
            student_config.num_hidden_layers,
            teacher_config.num_hidden_layers,
            student_config.hidden_size,
            teacher_config.hidden_size,
            student_config.num_attention_heads,
            teacher_config.num_attention_heads,
            train_examples,
            pair_layers,
            student_config,
            teacher_config,
            copied_layers,
        )
