"""PS-KD (Kim, Ji, Yoon & Hwang 2021): its stage, its α schedule over the training progress, its loss term against
hand values, its settings' checks. The pure losses: tests/unit/losses/test_self_losses.py; a run end to end:
tests/integration/test_self_distill.py."""

import math

import pytest
import torch

from distillkit.config.schema import validate
from distillkit.config.self_distill import PSKDMethodConfig
from distillkit.errors import ConfigError
from distillkit.methods import build_stages
from distillkit.methods.self_distill import snapshot_progress
from distillkit.recipe.objective import LossInputs, Progress
from distillkit.recipe.stage import SnapshotOptions
from distillkit.run import make_plan
from tests.conftest import TINY, compose_config

LABELS = torch.tensor([0, 2])
PREVIOUS = [[0.5, 0.3, 0.2], [0.1, 0.6, 0.3]]  # the snapshot's softmax
STUDENT = [[0.6, 0.3, 0.1], [0.2, 0.2, 0.6]]  # the student's softmax
ln = math.log


class _Out:
    def __init__(self, rows):
        self.logits = torch.tensor(rows).log()  # softmax gives back exactly these rows


def _term_value(stage, teacher, progress, label_mix=None):
    x = LossInputs(_Out(STUDENT), teacher, LABELS, torch.ones(2, 4), stage.objective.adapters, {}, label_mix, progress)
    _, terms = stage.objective(x)
    return terms["ps_kd"].item()


# --------------------------------------------------------------------------------------------------- the stage
def test_ps_kd_is_one_stage_against_the_students_last_epoch_snapshot():
    (stage,) = build_stages(PSKDMethodConfig(), None)
    assert stage.name == "distill" and stage.student.model == "student" and stage.data.kind == "train"
    assert stage.teacher.kind == "snapshots" and stage.teacher.options == SnapshotOptions(1, "epoch")
    assert stage.objective.needs_teacher and stage.objective.reads_logits
    assert [(t.name, t.weight) for t in stage.objective.terms] == [("ps_kd", 1.0)]
    assert stage.budget.epochs is None and stage.budget.learning_rate is None  # the run's budget
    formula = stage.objective.formula()
    assert formula.startswith("L = 1·CE((1 − α_t)·y + α_t·softmax(z_prev), softmax(z_s))")
    assert "α_T=0.8" in formula and "(completed epochs + 1) / the stage's epochs" in formula
    (steps,) = build_stages(PSKDMethodConfig(alpha_T=0.5, every=25), None)
    assert steps.teacher.options == SnapshotOptions(1, 25) and "(⌊step/25⌋ + 1)·25 / steps" in steps.objective.formula()


def test_ps_kd_plan_needs_no_teacher(cache_dir):
    overrides = ["teacher=none", "method=ps_kd", "data.synthetic.n_train=48", "train.max_steps=7"]
    plan = make_plan(validate(compose_config(TINY + [f"cache_dir={cache_dir}"] + overrides)))
    assert [s.name for s in plan.stages] == ["distill"]  # no teacher_prep
    (stage,) = plan.stages
    assert stage.teacher.kind == "snapshots" and stage.budget.max_steps == 7


# --------------------------------------------------------------------------------------------- the α schedule
def test_progress_counts_whole_epochs_done_and_the_stages_fractional_length():
    p = Progress(step=9, steps=10, steps_per_epoch=4)  # a budget of 2.5 epochs (train.epochs=2.5, 4 steps each)
    assert (p.epochs_done, p.epochs) == (2, 2.5)
    assert [Progress(s, 10, 4).epochs_done for s in range(10)] == [0, 0, 0, 0, 1, 1, 1, 1, 2, 2]


@pytest.mark.parametrize(
    "step, steps, per_epoch, every, progress",
    [
        (0, 10, 4, "epoch", 0.4),  # the first epoch: 1 of 2.5 (no snapshot yet: the target is y alone)
        (3, 10, 4, "epoch", 0.4),  # its last batch
        (4, 10, 4, "epoch", 0.8),  # the second epoch, after the first snapshot: 2 of 2.5
        (7, 10, 4, "epoch", 0.8),
        (8, 10, 4, "epoch", 1.0),  # the half epoch at the end: α_T
        (9, 10, 4, "epoch", 1.0),
        (6, 9, 3, "epoch", 1.0),  # 3 whole epochs: (e+1)/T = 1/3, 2/3, 1, as the authors' code
        (3, 9, 3, "epoch", 2 / 3),
        (3, 7, 3, "epoch", 6 / 7),  # train.max_steps=7 stops 3-step epochs at 7/3 epochs
        (2, 10, 4, 3, 0.3),  # every=3 steps: the snapshot of step 3 is the first
        (5, 10, 4, 3, 0.6),
        (9, 10, 4, 3, 1.0),
    ],
)
def test_alpha_follows_the_progress_at_the_latest_snapshot(step, steps, per_epoch, every, progress):
    at = Progress(step, steps, per_epoch)
    assert snapshot_progress(at, every) == pytest.approx(progress, abs=1e-12)
    (stage,) = build_stages(PSKDMethodConfig(alpha_T=0.8, every=every), None)
    # α = 0.8·progress: the term's value against the target it implies (progress 0: CE(y) whatever the snapshot)
    alpha = 0.8 * progress
    target = [[(1 - alpha) * (c == y) + alpha * p for c, p in enumerate(row)] for y, row in zip((0, 2), PREVIOUS)]
    expected = -sum(t * ln(q) for trow, qrow in zip(target, STUDENT) for t, q in zip(trow, qrow)) / 2
    assert _term_value(stage, _Out(PREVIOUS), at) == pytest.approx(expected, rel=1e-6)


# ------------------------------------------------------------------------------------------------- the term
def test_ps_kd_term_by_hand():
    # α_T = 0.625 in the first epoch of a 2.5-epoch stage: α = 0.625 · (0 + 1)/2.5 = 0.25, so the targets are
    # 0.75·[1, 0, 0] + 0.25·[0.5, 0.3, 0.2] = [0.875, 0.075, 0.05] and 0.75·[0, 0, 1] + 0.25·[0.1, 0.6, 0.3]
    (stage,) = build_stages(PSKDMethodConfig(alpha_T=0.625), None)
    one_epoch_in = Progress(step=3, steps=10, steps_per_epoch=4)
    expected = -0.5 * (
        0.875 * ln(0.6) + 0.075 * ln(0.3) + 0.05 * ln(0.1) + 0.025 * ln(0.2) + 0.15 * ln(0.2) + 0.825 * ln(0.6)
    )  # ≈ 0.677741
    assert _term_value(stage, _Out(PREVIOUS), one_epoch_in) == pytest.approx(expected, rel=1e-6)
    plain = -0.5 * (ln(0.6) + ln(0.6))  # CE(y, q) ≈ 0.510826
    assert _term_value(stage, None, one_epoch_in) == pytest.approx(plain, rel=1e-6)  # no snapshot: y alone
    # mixup: row 0's label is 0.6·y_0 + 0.4·y_perm(0) = 0.6·e_0 + 0.4·e_2; target 0.75·that + 0.25·P_prev
    mix = (torch.tensor([0.4, 0.0]), torch.tensor([1, 0]))
    mixed = -0.5 * (
        0.575 * ln(0.6) + 0.075 * ln(0.3) + 0.35 * ln(0.1) + 0.025 * ln(0.2) + 0.15 * ln(0.2) + 0.825 * ln(0.6)
    )
    assert _term_value(stage, _Out(PREVIOUS), one_epoch_in, mix) == pytest.approx(mixed, rel=1e-6)
    with pytest.raises(ValueError, match="progress"):
        _term_value(stage, _Out(PREVIOUS), None)


# --------------------------------------------------------------------------------------------------- settings
@pytest.mark.parametrize("value", [1.5, -0.1, float("nan")])
def test_alpha_T_outside_the_unit_interval_is_a_config_error(value):
    with pytest.raises(ConfigError) as info:
        PSKDMethodConfig(alpha_T=value)
    err = info.value
    assert err.key == "method.alpha_T" and "outside [0, 1]" in err.problem and "method.alpha_T=0.8" in err.fix
    assert str(value) in str(err)


@pytest.mark.parametrize(
    "overrides, key, words",
    [
        (["method.alpha_T=2"], "method.alpha_T", "outside [0, 1]"),
        (["method.every=0"], "method.every", "epoch or a step count"),
        (["method=born_again", "method.inner={name: ps_kd}"], "method.inner.name", "not a method a link"),
    ],
)
def test_bad_settings_fail_at_validation(overrides, key, words):
    method = [] if any(o.startswith("method=") for o in overrides) else ["method=ps_kd"]
    with pytest.raises(ConfigError) as info:
        validate(compose_config(TINY + method + overrides))
    assert info.value.key == key and words in str(info.value), str(info.value)


def test_a_stage_too_short_for_one_snapshot_fails_at_plan_time(cache_dir):
    # TINY: 6 steps, 16 an epoch: no epoch ends before the last step, so the target would stay y throughout
    with pytest.raises(ConfigError) as info:
        make_plan(validate(compose_config(TINY + [f"cache_dir={cache_dir}", "teacher=none", "method=ps_kd"])))
    assert info.value.key == "method.every" and "leave room for 0" in str(info.value)
