"""Methods on the output logits alone: ``none`` (labels only, the baseline), ``kd`` (Hinton et al. 2015) and
``blackbox_label`` (a classifier from a teacher that only writes text: its answers as labels, its top log-probs as
soft labels)."""

from __future__ import annotations

from distillkit.config import blackbox as bc
from distillkit.config import method as mc
from distillkit.losses import logits as logit_losses
from distillkit.methods.common import ce_term, kd_objective, stage
from distillkit.recipe.objective import Dims, LossTerm, Objective
from distillkit.recipe.stage import DataView, GeneratedOptions, GenerationSpec, LabelSpec, Stage


def build_none(cfg: mc.NoneMethodConfig, dims: Dims | None = None) -> list[Stage]:
    """Labels only: L = CE(y, softmax(z_s)). The baseline, and how the teacher is prepared."""
    return [stage("distill", Objective(name=cfg.name, terms=[ce_term(1.0)], needs_teacher=False))]


def build_kd(cfg: mc.KDMethodConfig, dims: Dims | None = None) -> list[Stage]:
    """Hinton et al. 2015: L = α·CE(y, softmax(z_s)) + (1 − α)·T²·KL(softmax(z_t/T) ‖ softmax(z_s/T))."""
    return [stage("distill", kd_objective(cfg.name, cfg.temperature, cfg.ce_weight))]


def build_blackbox_label(cfg: bc.BlackboxLabelMethodConfig, dims: Dims | None = None) -> list[Stage]:
    """label → distill: a teacher that writes text (an endpoint) labels the training texts once through
    ``cfg.template`` and the verbaliser (``label``: no optimizer step, outside the budget), then the student learns
    them (``distill``: the whole budget). With soft labels (the endpoint's top log-probs):
    L = α·CE(ŷ, softmax(z_s)) + (1 − α)·T²·KL(p̂ ‖ softmax(z_s/T)); without, L = CE(ŷ, softmax(z_s)). The verbaliser
    is checked here against the task's classes (the student config's labels), before any work."""
    if dims is not None and dims.student_config is not None:
        names = [dims.student_config.id2label[i] for i in range(dims.student_config.num_labels)]
        bc.check_verbaliser(names, cfg.verbaliser)
    spec = LabelSpec(cfg.template, cfg.verbaliser, cfg.match, cfg.soft, cfg.floor, cfg.label_eval)
    label = Stage("label", None, teacher=None, generation=GenerationSpec("label", cfg.system_prompt, False, label=spec))
    if cfg.soft:
        terms = [ce_term(cfg.ce_weight), soft_label_term(1.0 - cfg.ce_weight, cfg.temperature)]
        notes = f"ŷ, p̂: the teacher's answer and soft label; T={cfg.temperature:g}, α=ce_weight={cfg.ce_weight:g}"
    else:
        terms, notes = [ce_term(1.0)], "ŷ: the teacher's answer mapped to a class (hard labels: no log-probs)"
    objective = Objective(name=cfg.name, terms=terms, needs_teacher=False, notes=notes)
    return [label, stage("distill", objective, data=DataView("generated", options=GeneratedOptions("label")))]


def soft_label_term(weight: float, temperature: float) -> LossTerm:
    """The teacher's soft labels (the batch's ``soft`` column, written by the label stage) as KD targets."""
    return LossTerm(
        "kd",
        weight,
        lambda x: logit_losses.soft_label_kl(x.student.logits, x.batch["soft"], temperature),
        "T²·KL(p̂^(1/T)/Z ‖ softmax(z_s/T))",
    )
