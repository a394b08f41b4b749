"""Schema dataclasses of the self-distillation and teacher-chain methods (``born_again``, ``self_kd``,
``snapshot_ensemble``, ``ps_kd``, ``ema_teacher``, ``noisy_student``, ``takd``). Checks on values alone run in
``__post_init__``; checks that need the models (assistant depths) or the budget (snapshots a stage can take)
run at plan time, still before any weight is loaded.

``inner`` (born_again, takd) is a whole method config, e.g. ``{name: kd, temperature: 4.0, ce_weight: 0.5}``,
validated against that method's own schema: each link or generation is distilled with it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Optional

from distillkit.errors import non_negative, one_of, positive, require, unit_interval

# Methods an inner link may use: one stage per model, reading a teacher (the single-stage methods of the table,
# and the multi-stage ones whose stages all train the same model).
INNER_EXCLUDED = ("born_again", "self_kd", "snapshot_ensemble", "ps_kd", "ema_teacher", "noisy_student", "takd")


def _snapshot_every(key: str, value) -> None:
    require(
        value == "epoch" or (isinstance(value, int) and not isinstance(value, bool) and value >= 1),
        key,
        value,
        "must be epoch or a step count >= 1.",
        f"use {key}=epoch or e.g. {key}=100.",
    )


def _kl(obj, prefix: str = "method") -> None:
    positive(f"{prefix}.temperature", obj.temperature, "use a temperature > 0 (1 = plain softmax).")
    non_negative(f"{prefix}.kd_weight", obj.kd_weight)
    non_negative(f"{prefix}.ce_weight", obj.ce_weight)


def _kd_inner() -> dict:
    return {"name": "kd", "temperature": 4.0, "ce_weight": 0.5}


@dataclass
class BornAgainMethodConfig:
    """Furlanello et al. 2018: generation 0 is trained on the labels (or distilled from the prepared teacher);
    generation k+1, a fresh student, is distilled from generation k with ``inner``."""

    name: str = "born_again"
    generations: int = 3  # born-again generations after generation 0 (3: gen0 → gen1 → gen2 → gen3)
    gen0: str = "labels"  # labels | teacher (generation 0 distilled from the prepared teacher with `inner`)
    init: str = "student"  # student: each generation starts as the student group says (seed + k) | previous
    final: str = "last"  # last | ensemble (also evaluate the BAN ensemble) | distil (distil the ensemble into a
    #                      fresh student, which is then the run's student)
    inner: Any = field(default_factory=lambda: {"name": "kd", "temperature": 1.0, "ce_weight": 0.0})

    def __post_init__(self):
        require(
            isinstance(self.generations, int) and self.generations >= 1,
            "method.generations",
            self.generations,
            "must be at least 1 (generation 0, then at least one born-again generation).",
            "use e.g. method.generations=3.",
        )
        one_of("method.gen0", self.gen0, ["labels", "teacher"])
        one_of("method.init", self.init, ["student", "previous"])
        one_of("method.final", self.final, ["last", "ensemble", "distil"])


@dataclass
class SelfKDMethodConfig:
    """KL to the previous self: L = ce_weight·CE(y, p) + kd_weight·T²·KL between the current student and its
    own snapshot from the previous epoch (or the previous ``every`` steps)."""

    name: str = "self_kd"
    direction: str = "current_previous"  # current_previous: KL(p_current ‖ p_previous) (the seed formula) |
    #                                      previous_current: KL(p_previous ‖ p_current) (progressive self-KD)
    every: Any = "epoch"  # snapshot every epoch, or every N optimizer steps
    temperature: float = 4.0
    kd_weight: float = 1.0  # λ
    ce_weight: float = 1.0

    def __post_init__(self):
        one_of("method.direction", self.direction, ["current_previous", "previous_current"])
        _snapshot_every("method.every", self.every)
        _kl(self)


@dataclass
class SnapshotEnsembleMethodConfig(SelfKDMethodConfig):
    """Ensemble-based self-distillation: the same loss, the teacher the mean prediction of the student's last
    K snapshots."""

    name: str = "snapshot_ensemble"
    k: int = 2
    direction: str = "previous_current"  # the ensemble is the target: KL(p_ensemble ‖ p_current)
    every: Any = "epoch"

    def __post_init__(self):
        super().__post_init__()
        require(
            isinstance(self.k, int) and self.k >= 2,
            "method.k",
            self.k,
            "must be at least 2 snapshots (k = 1 is method=self_kd).",
            "use e.g. method.k=3, or method=self_kd.",
        )


@dataclass
class PSKDMethodConfig:
    """PS-KD (Kim, Ji, Yoon & Hwang 2021): L = CE((1 − α_t)·y + α_t·p_prev, softmax(z_s)), p_prev the student's own
    prediction from its snapshot at the end of the previous epoch (or ``every`` steps), α_t = α_T · progress, the
    progress the share of the stage's optimizer steps done when that snapshot was taken (every=epoch: completed
    epochs / the stage's epochs)."""

    name: str = "ps_kd"
    alpha_T: float = 0.8  # α_T, the weight of the previous prediction at the end of training (the paper's 0.8)
    every: Any = "epoch"  # snapshot (and α step) each epoch (the paper's), or every N optimizer steps

    def __post_init__(self):
        require(
            isinstance(self.alpha_T, (int, float)) and not isinstance(self.alpha_T, bool) and 0 <= self.alpha_T <= 1,
            "method.alpha_T",
            self.alpha_T,
            "is outside [0, 1]: it is the weight of the previous prediction in the target, (1 − α)·y + α·p_prev.",
            "use a weight between 0 and 1, e.g. method.alpha_T=0.8 (the paper's); 0 trains on the labels alone.",
        )
        _snapshot_every("method.every", self.every)


@dataclass
class EMATeacherMethodConfig:
    """Mean teacher (Tarvainen & Valpola 2017), DINO's options (Caron et al. 2021): L = ce_weight·CE +
    kd_weight·KL(softmax((z_ema − c)/T_t) ‖ softmax(z_s/T_s)); the EMA teacher sees the clean input, the
    student a dropout-noised one."""

    name: str = "ema_teacher"
    momentum: float = 0.99  # τ: θ_ema ← τ·θ_ema + (1 − τ)·θ after every optimizer step
    schedule: str = "constant"  # constant | cosine (DINO: τ from `momentum` to `final_momentum`)
    final_momentum: float = 1.0
    teacher_temperature: float = 1.0  # DINO sharpens the teacher: lower than the student's
    temperature: float = 1.0  # the student's
    center_momentum: Optional[float] = None  # DINO's centering of the teacher's outputs (e.g. 0.9); null = off
    kd_weight: float = 1.0
    ce_weight: float = 1.0
    student_dropout: float = 0.1  # the student's noise (the teacher runs without dropout)

    def __post_init__(self):
        require(
            0.0 <= self.momentum < 1.0,
            "method.momentum",
            self.momentum,
            "is outside [0, 1).",
            "use a momentum such as 0.99 (the mean teacher's) or 0.996 (DINO's start).",
        )
        one_of("method.schedule", self.schedule, ["constant", "cosine"])
        require(
            self.momentum <= self.final_momentum <= 1.0,
            "method.final_momentum",
            self.final_momentum,
            f"must lie between method.momentum={self.momentum} and 1.",
            "use 1.0 (DINO's).",
        )
        positive("method.teacher_temperature", self.teacher_temperature)
        _kl(self)
        require(
            self.center_momentum is None or 0.0 <= self.center_momentum < 1.0,
            "method.center_momentum",
            self.center_momentum,
            "is outside [0, 1).",
            "use null (no centering) or e.g. 0.9 (DINO's).",
        )
        require(
            0.0 <= self.student_dropout < 1.0,
            "method.student_dropout",
            self.student_dropout,
            "is outside [0, 1).",
            "use e.g. 0.1, or 0 for no dropout noise.",
        )


@dataclass
class NoisyStudentMethodConfig:
    """Xie et al. 2020: the teacher pseudo-labels unlabeled text; a noised student (dropout) trains on labeled
    + pseudo-labeled data; for ``rounds`` > 1 the student of round k teaches round k+1."""

    name: str = "noisy_student"
    rounds: int = 1
    pseudo_labels: str = "soft"  # soft: KL to the teacher's distribution | hard: CE on its argmax
    threshold: float = 0.3  # unlabeled examples whose teacher confidence (max probability) is lower are dropped
    temperature: float = 1.0  # soft pseudo-labels
    unlabeled: str = "auto"  # auto (generated for data=synthetic, else train) | generated | train | <text file>
    unlabeled_size: Optional[int] = None  # generated: how many texts; null = as many as training examples
    pseudo_weight: float = 1.0
    ce_weight: float = 1.0
    student_dropout: float = 0.1  # the noise; the teacher labels without dropout

    def __post_init__(self):
        require(
            isinstance(self.rounds, int) and self.rounds >= 1,
            "method.rounds",
            self.rounds,
            "must be at least 1.",
            "use e.g. method.rounds=2.",
        )
        one_of("method.pseudo_labels", self.pseudo_labels, ["soft", "hard"])
        unit_interval("method.threshold", self.threshold)
        positive("method.temperature", self.temperature)
        non_negative("method.pseudo_weight", self.pseudo_weight)
        non_negative("method.ce_weight", self.ce_weight)
        require(
            0.0 <= self.student_dropout < 1.0,
            "method.student_dropout",
            self.student_dropout,
            "is outside [0, 1).",
            "use e.g. 0.1 (the noise the method needs).",
        )
        require(
            self.unlabeled_size is None or self.unlabeled_size >= 1,
            "method.unlabeled_size",
            self.unlabeled_size,
            "must be at least 1.",
            "use null (as many as the training examples) or a count.",
        )
        if self.unlabeled not in ("auto", "generated", "train"):
            require(
                os.path.isfile(self.unlabeled) and os.path.getsize(self.unlabeled) > 0,
                "method.unlabeled",
                self.unlabeled,
                "is not auto, generated or train, nor a non-empty text file: noisy student needs unlabeled data.",
                "give a plain-text file with one example per line, or use "
                "method.unlabeled=train (the training texts, labels hidden).",
            )


@dataclass
class TAKDMethodConfig:
    """Mirzadeh et al. 2020: teacher → assistant(s) → student, each link distilled with ``inner``."""

    name: str = "takd"
    assistants: Optional[list[int]] = None  # assistant depths, deepest first; null = one at the midpoint
    inner: Any = field(default_factory=_kd_inner)

    def __post_init__(self):
        if self.assistants is not None:
            require(
                len(self.assistants) >= 1 and all(isinstance(a, int) and a >= 1 for a in self.assistants),
                "method.assistants",
                self.assistants,
                "must list assistant depths (layers >= 1).",
                "use e.g. method.assistants=[6,4], or null for one assistant halfway.",
            )
            require(
                all(a > b for a, b in zip(self.assistants, self.assistants[1:])),
                "method.assistants",
                self.assistants,
                "must go from deep to shallow (teacher → assistants → student).",
                f"order them, e.g. method.assistants={sorted(set(self.assistants), reverse=True)}.",
            )
