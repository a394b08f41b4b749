"""One budget for the whole distillation: ``stages.split_budget`` turns train.epochs / train.max_steps into each
stage's optimizer steps by its share; pinned stages (method.<stage>.epochs) stay outside the split."""

import pytest

from distillkit.config.schema import validate
from distillkit.errors import ConfigError
from distillkit.recipe.objective import Objective
from distillkit.recipe.stage import Budget, Stage
from distillkit.stages.planning import split_budget, total_steps
from tests.conftest import TINY, compose_config


def _cfg(*overrides):
    return validate(compose_config(TINY + list(overrides)))


def _stages(*budgets: Budget) -> list[Stage]:
    return [Stage(f"s{i}", Objective(name="o", terms=[], needs_teacher=False), budget=b) for i, b in enumerate(budgets)]


def test_total_is_epochs_of_the_training_split_or_max_steps():
    # 256 examples at batch 16: 16 optimizer steps an epoch
    assert total_steps(_cfg("train.max_steps=-1", "train.epochs=2.5"), 256) == (16, 40)
    assert total_steps(_cfg("train.max_steps=-1", "train.epochs=0.01"), 256) == (16, 1)  # never 0
    assert total_steps(_cfg("train.max_steps=7"), 256) == (16, 7)
    # a last, partial accumulation still makes an optimizer step (as the Trainer counts): 16 batches / 3 → 6
    accumulated = _cfg("train.max_steps=-1", "train.epochs=1", "hardware.gradient_accumulation_steps=3")
    assert total_steps(accumulated, 256) == (6, 6)


@pytest.mark.parametrize("total,count", [(7, 3), (6, 4), (100, 3), (5, 5), (41, 2)])
def test_equal_parts_sum_to_the_total_exactly(total, count):
    stages = _stages(*[Budget() for _ in range(count)])
    split_budget(_cfg(f"train.max_steps={total}"), stages, 256)
    steps = [s.budget.max_steps for s in stages]
    assert sum(steps) == total and min(steps) >= 1 and max(steps) - min(steps) <= 1
    assert [s.budget.share for s in stages] == pytest.approx([n / total for n in steps])  # what each got
    assert [s.budget.epochs for s in stages] == pytest.approx([n / 16 for n in steps])


def test_given_shares_first_then_the_rest_equally():
    stages = _stages(Budget(share=0.5), Budget(), Budget())
    split_budget(_cfg("train.max_steps=-1", "train.epochs=5"), stages, 256)  # 80 steps
    assert [s.budget.max_steps for s in stages] == [40, 20, 20]
    assert [s.budget.share for s in stages] == [0.5, 0.25, 0.25]


def test_a_pinned_stage_keeps_its_epochs_on_top_of_the_split():
    stages = _stages(Budget(epochs=2.0), Budget(), Budget())
    split_budget(_cfg("train.max_steps=10"), stages, 256)
    pinned, a, b = stages
    assert (pinned.budget.epochs, pinned.budget.max_steps, pinned.budget.share) == (2.0, -1, None)
    assert (a.budget.max_steps, b.budget.max_steps) == (5, 5)


def test_shares_that_leave_nothing_for_the_others_are_refused():
    with pytest.raises(ConfigError) as err:
        split_budget(_cfg(), _stages(Budget(share=0.6), Budget(share=0.4), Budget()), 256)
    assert "s0=0.6, s1=0.4" in str(err.value) and "s2" in str(err.value) and "method.<stage>.share" in str(err.value)
    with pytest.raises(ConfigError, match="sum 1.2"):
        split_budget(_cfg(), _stages(Budget(share=0.6), Budget(share=0.6)), 256)
    split_budget(_cfg(), _stages(Budget(share=0.6), Budget(share=0.4)), 256)  # every stage has one: fine
    short = _stages(Budget(share=0.3), Budget(share=0.3))  # summing below 1: the last takes what is left
    split_budget(_cfg("train.max_steps=10"), short, 256)
    assert [(s.budget.max_steps, s.budget.share) for s in short] == [(3, 0.3), (7, 0.7)]


def test_fewer_steps_than_stages_is_refused_naming_the_key():
    with pytest.raises(ConfigError) as err:
        split_budget(_cfg("train.max_steps=2"), _stages(Budget(), Budget(), Budget()), 256)
    assert "train.max_steps=2" in str(err.value) and "fewer than the 3 stages" in str(err.value)


def test_phase_share_and_epochs_are_checked():
    cfg = _cfg("method=tinybert", "method.intermediate.share=0.25", "train.max_steps=-1", "train.epochs=1")
    assert cfg.method.intermediate.share == 0.25
    with pytest.raises(ConfigError, match=r"method\.intermediate\.share"):
        _cfg("method=tinybert", "method.intermediate.share=1.5")
    with pytest.raises(ConfigError) as err:
        _cfg("method=tinybert", "method.prediction.share=0.5", "method.prediction.epochs=2")
    assert "both set the stage's budget" in str(err.value)
    general = _cfg("method=tinybert", "method.general.share=0.2").method.general
    assert general.enabled and not _cfg("method=tinybert").method.general.enabled


def test_the_tinybert_paper_recipe_is_three_stages_in_one_budget(tmp_path):
    """experiment=tinybert_paper: general distillation on unlabeled text, then intermediate and prediction on the
    task, with TinyBERT's MLM word replacement; its shares split the run's one budget."""
    from distillkit.plan import make_plan

    cfg = _cfg("experiment=tinybert_paper", "train.max_steps=20", f"cache_dir={tmp_path}")
    assert cfg.augmentation.selected == ["mlm_replace"] and cfg.augmentation.copies == 4
    assert (cfg.method.temperature, cfg.method.ce_weight, cfg.method.schedule) == (1.0, 0.0, "staged")
    stages = [s for s in make_plan(cfg).stages if s.name != "teacher_prep"]
    assert [s.name for s in stages] == ["general", "intermediate", "prediction"]
    assert [s.budget.max_steps for s in stages] == [6, 7, 7]
    # the general stage: the intermediate terms alone (its texts' labels are never read)
    assert {t.name for t in stages[0].objective.terms} == {"embedding", "attention", "hidden"}
