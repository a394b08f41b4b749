"""Self-distillation: the student learns from itself (its earlier generations, its own moving average, its
own snapshots) or from a teacher's pseudo-labels on unlabeled text. ``born_again`` (Furlanello et al. 2018),
``self_kd`` (KL to the previous self), ``snapshot_ensemble``, ``ps_kd`` (Kim et al. 2021, progressively refined
targets), ``ema_teacher`` (mean teacher / DINO), ``noisy_student`` (Xie et al. 2020). Each is a list of stages
over the teacher sources of ``distillkit/teachers/sources.py``; the trainer is the one every method uses."""

from __future__ import annotations

from distillkit.config import self_distill as sc
from distillkit.losses import IGNORE_INDEX
from distillkit.losses import logits as logit_losses
from distillkit.losses import self_distill as self_losses
from distillkit.methods.common import ce_term, link_stages, stage, without_teacher_yet
from distillkit.recipe.objective import Dims, LossInputs, LossTerm, Objective, Progress
from distillkit.recipe.stage import PREPARED, DataView, EMAOptions, SnapshotOptions, Stage, StudentSpec, TeacherSpec


def _same_architecture(dims: Dims) -> Dims:
    """Shapes for distilling a model into another of the student's architecture (generation k → k+1)."""
    return Dims.from_configs(dims.student_config, dims.student_config, dims.train_examples)


def build_born_again(cfg: sc.BornAgainMethodConfig, dims: Dims) -> list[Stage]:
    """gen0 (labels, or the prepared teacher) → gen1 → … → genN, each a fresh student distilled from the one
    before with ``cfg.inner``; ``final=ensemble`` adds a student distilled from the mean of all generations."""
    if cfg.gen0 == "labels":
        gen0 = Objective(name=f"{cfg.name}/gen0", terms=[ce_term(1.0)], needs_teacher=False)
        stages = [stage("gen0", gen0, student=StudentSpec("gen0"), group="generation", produces=True)]
    else:
        stages = link_stages(cfg.inner, dims, "gen0", StudentSpec("gen0"), PREPARED, "generation")
    same = _same_architecture(dims)
    for k in range(1, cfg.generations + 1):
        previous = f"gen{k - 1}"
        student = (
            StudentSpec(f"gen{k}", "copy", seed_offset=k, copy_of=previous)
            if cfg.init == "previous"
            else StudentSpec(f"gen{k}", seed_offset=k)
        )
        stages += link_stages(cfg.inner, same, f"gen{k}", student, TeacherSpec("stage", (previous,)), "generation")
    if cfg.final == "ensemble":
        members = tuple(f"gen{k}" for k in range(cfg.generations + 1))
        stages += link_stages(
            cfg.inner,
            same,
            "ensemble",
            StudentSpec("ensemble", seed_offset=cfg.generations + 1),
            TeacherSpec("ensemble", members),
            "ensemble",
        )
    return stages


def _self_kl_term(cfg, target: str) -> LossTerm:
    """λ·T²·KL between the current student and ``target`` (its earlier self), in the configured direction."""
    t = cfg.temperature
    if cfg.direction == "current_previous":
        fn = lambda x: self_losses.reverse_soft_kl(x.student.logits, x.teacher.logits, t)  # noqa: E731 (a one-line local function)
        formula = f"T²·KL(softmax(z_s/T) ‖ softmax({target}/T))"
    else:
        fn = lambda x: logit_losses.soft_target_kl(x.student.logits, x.teacher.logits, t)  # noqa: E731 (a one-line local function)
        formula = f"T²·KL(softmax({target}/T) ‖ softmax(z_s/T))"
    return LossTerm("self_kd", cfg.kd_weight, without_teacher_yet(fn), formula)


def _self_stage(cfg, k: int, target: str, what: str) -> Stage:
    direction = (
        "KL(p_current ‖ p_previous), the seed formula"
        if cfg.direction == "current_previous"
        else "KL(p_previous ‖ p_current), progressive self-KD's"
    )
    objective = Objective(
        name=cfg.name,
        terms=[ce_term(cfg.ce_weight), _self_kl_term(cfg, target)],
        needs_teacher=True,
        notes=f"T={cfg.temperature:g}, λ=kd_weight={cfg.kd_weight:g}; {target} = {what}; direction "
        f"{direction}; the KL term is 0 until the first snapshot",
    )
    return stage("distill", objective, teacher=TeacherSpec("snapshots", options=SnapshotOptions(k, cfg.every)))


def build_self_kd(cfg: sc.SelfKDMethodConfig, dims: Dims) -> list[Stage]:
    """L = ce_weight·CE(y, p) + λ·T²·KL between the student and its snapshot of the previous epoch/N steps."""
    when = "each epoch" if cfg.every == "epoch" else f"every {cfg.every} steps"
    return [_self_stage(cfg, 1, "z_prev", f"the student's own logits at its last snapshot (taken {when})")]


def build_snapshot_ensemble(cfg: sc.SnapshotEnsembleMethodConfig, dims: Dims) -> list[Stage]:
    """The same with the mean prediction of the last K snapshots as the target."""
    when = "each epoch" if cfg.every == "epoch" else f"every {cfg.every} steps"
    return [_self_stage(cfg, cfg.k, "z_ens", f"log of the mean softmax of the last {cfg.k} snapshots (taken {when})")]


def snapshot_progress(progress: Progress, every) -> float:
    """PS-KD's t/T: the share of the stage's training done at the end of the current snapshot interval, as the
    authors' code counts it (α_T·(e+1)/T in epoch e from 0, so the last epoch trains at α_T): with ``every="epoch"``
    (completed epochs + 1) / the stage's epochs (fractional when its budget is), with ``every=N``
    (⌊step/N⌋ + 1)·N / steps; at most 1. Constant between two snapshots, so α steps when its target model does."""
    if every == "epoch":
        return min(1.0, (progress.epochs_done + 1) / progress.epochs)
    return min(1.0, (progress.step // every + 1) * every / progress.steps)


def build_ps_kd(cfg: sc.PSKDMethodConfig, dims: Dims) -> list[Stage]:
    """L = CE((1 − α_t)·y + α_t·softmax(z_prev), softmax(z_s)), z_prev the student's snapshot of the previous epoch
    (the ``snapshots`` source, k = 1), α_t = α_T · ``snapshot_progress``; y alone until the first snapshot."""

    def refined_target_ce(x: LossInputs):
        if x.progress is None:
            raise ValueError("ps_kd's α follows the training (LossInputs.progress), which the trainer sets")
        # no snapshot yet (the first interval): the target is y alone
        alpha = self_losses.ps_kd_alpha(cfg.alpha_T, snapshot_progress(x.progress, cfg.every)) if x.teacher else 0.0
        labels = x.labels
        if x.label_mix is not None:  # mixup/cutmix: row i's label is (1 − w)·y_i + w·y_perm(i)
            classes = x.student.logits.shape[-1]
            w, perm = (t.to(labels.device) for t in x.label_mix)
            one_hot = self_losses.label_distribution(labels, classes)
            labels = (1.0 - w.float())[:, None] * one_hot + w.float()[:, None] * one_hot[perm]
        previous = x.teacher.logits if x.teacher is not None else None
        return self_losses.ps_kd_loss(x.student.logits, labels, previous, alpha)

    when = "end of the previous epoch" if cfg.every == "epoch" else f"last multiple of {cfg.every} steps"
    progress = (
        "(completed epochs + 1) / the stage's epochs"
        if cfg.every == "epoch"
        else f"(⌊step/{cfg.every}⌋ + 1)·{cfg.every} / steps"
    )
    objective = Objective(
        name=cfg.name,
        terms=[
            LossTerm("ps_kd", 1.0, refined_target_ce, "CE((1 − α_t)·y + α_t·softmax(z_prev), softmax(z_s))"),
        ],
        needs_teacher=True,
        notes=f"α_t = α_T·t/T, α_T={cfg.alpha_T:g}, t/T = {progress}; z_prev = the student's own logits at its "
        f"snapshot ({when}); the target is y until the first snapshot",
    )
    return [stage("distill", objective, teacher=TeacherSpec("snapshots", options=SnapshotOptions(1, cfg.every)))]


def build_ema_teacher(cfg: sc.EMATeacherMethodConfig, dims: Dims) -> list[Stage]:
    """L = ce_weight·CE + λ·KL(softmax((z_ema − c)/T_t) ‖ softmax(z_s/T_s)); the student dropout-noised."""
    t_t, t_s = cfg.teacher_temperature, cfg.temperature

    def consistency(x: LossInputs):
        return self_losses.centered_kl(x.student.logits, x.teacher.logits, None, t_t, t_s)

    centered = "z_ema − c" if cfg.center_momentum is not None else "z_ema"
    objective = Objective(
        name=cfg.name,
        needs_teacher=True,
        terms=[
            ce_term(cfg.ce_weight),
            LossTerm("ema", cfg.kd_weight, consistency, f"KL(softmax(({centered})/T_t) ‖ softmax(z_s/T_s))"),
        ],
        notes=f"T_t={t_t:g}, T_s={t_s:g}, τ={cfg.momentum:g}"
        + (f"→{cfg.final_momentum:g} (cosine)" if cfg.schedule == "cosine" else "")
        + (f", centering m={cfg.center_momentum:g}" if cfg.center_momentum is not None else "")
        + f"; student dropout {cfg.student_dropout:g}, the EMA teacher none",
    )
    options = EMAOptions(cfg.momentum, cfg.schedule, cfg.final_momentum, cfg.center_momentum)
    return [
        stage(
            "distill",
            objective,
            teacher=TeacherSpec("ema", options=options),
            student=StudentSpec(dropout=cfg.student_dropout),
        )
    ]


def _labeled_ce(x: LossInputs):
    labeled = x.labels != IGNORE_INDEX
    if not bool(labeled.any()):
        return x.student.logits.float().sum() * 0.0
    return logit_losses.cross_entropy(x.student.logits[labeled], x.labels[labeled])


def build_noisy_student(cfg: sc.NoisyStudentMethodConfig, dims: Dims) -> list[Stage]:
    """Round k: a fresh, dropout-noised student trains on the labeled split (CE) and on unlabeled text the
    round's teacher (the prepared teacher, then round k−1's student) labels without noise."""
    hard = cfg.pseudo_labels == "hard"

    def pseudo(x: LossInputs):
        return self_losses.pseudo_label_loss(
            x.student.logits, x.teacher.logits, x.labels, cfg.threshold, hard, cfg.temperature
        )

    formula = (
        "CE(argmax z_t, softmax(z_s))" if hard else "T²·KL(softmax(z_t/T) ‖ softmax(z_s/T))"
    ) + f" on unlabeled rows with max p_t ≥ {cfg.threshold:g}"
    size = (
        ""
        if dims.student_layers >= dims.teacher_layers
        else f"; Xie et al. use an equal-or-larger student, this one has {dims.student_layers} layers to the "
        f"teacher's {dims.teacher_layers}"
    )
    stages, teacher = [], PREPARED
    for r in range(1, cfg.rounds + 1):
        objective = Objective(
            name=f"{cfg.name}/round{r}",
            needs_teacher=True,
            terms=[
                LossTerm("ce", cfg.ce_weight, _labeled_ce, "CE(y, softmax(z_s)) on labeled rows"),
                LossTerm("pseudo", cfg.pseudo_weight, pseudo, formula),
            ],
            notes=f"{cfg.pseudo_labels} pseudo-labels, T={cfg.temperature:g}; student dropout {cfg.student_dropout:g}, "
            f"the teacher none{size}",
        )
        stages.append(
            stage(
                f"round{r}",
                objective,
                teacher=teacher,
                group="round",
                produces=True,
                student=StudentSpec(f"round{r}", seed_offset=r - 1, dropout=cfg.student_dropout),
                data=DataView("train+unlabeled", unlabeled=cfg.unlabeled, unlabeled_size=cfg.unlabeled_size),
            )
        )
        teacher = TeacherSpec("stage", (f"round{r}",))
    return stages
