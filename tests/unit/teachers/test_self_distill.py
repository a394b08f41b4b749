"""Self-distillation and teacher chains: the teacher sources (EMA, snapshots, ensembles), the methods' stage
plans and losses, their start-up errors, and end to end: generations learn from the generation before,
chains run in order, and a run interrupted inside a generation resumes there."""

import math

import pytest
import torch

from distillkit.config.schema import validate
from distillkit.config.self_distill import SelfKDMethodConfig
from distillkit.errors import ConfigError
from distillkit.methods import build_stages
from distillkit.models.features import FeatureSpec
from distillkit.recipe.objective import LossInputs
from distillkit.teachers.sources import EMATeacher, Ensemble, Snapshots
from tests.conftest import TINY, compose_config


class Tiny(torch.nn.Module):
    """A model with a ``.logits`` output, as the sources expect from a transformers classifier."""

    def __init__(self, weight):
        super().__init__()
        self.linear = torch.nn.Linear(2, 3, bias=False)
        with torch.no_grad():
            self.linear.weight.copy_(torch.as_tensor(weight, dtype=torch.float32))

    def forward(self, input_ids=None, attention_mask=None, **kwargs):
        class Out:
            pass

        out = Out()
        out.logits = self.linear(input_ids.float())
        out.hidden_states = out.attentions = None
        return out


BATCH = {"input_ids": torch.tensor([[1.0, 0.0], [0.5, -1.0]]), "attention_mask": torch.ones(2, 2)}


def _set(model, weight):
    with torch.no_grad():
        model.linear.weight.copy_(torch.as_tensor(weight, dtype=torch.float32))


# ------------------------------------------------------------------------------------------------ EMA
def test_ema_update_follows_the_hand_computation_with_the_cosine_schedule():
    student = Tiny(torch.zeros(3, 2))
    ema = EMATeacher(0.5, schedule="cosine", final_momentum=1.0)
    ema.setup(student, "cpu")
    ema.total_steps = 4  # set by the trainer when training begins
    expected = torch.zeros(3, 2)
    for step, value in enumerate([1.0, 2.0, 3.0], start=1):
        _set(student, torch.full((3, 2), value))
        ema.after_step(student, step)
        k = step - 1  # the k-th update uses τ_k = 1 − (1 − 0.5)·(cos(πk/4) + 1)/2
        tau = 1 - 0.5 * (math.cos(math.pi * k / 4) + 1) / 2
        expected = tau * expected + (1 - tau) * value
    # τ_0 = 0.5, τ_1 = 1 − 0.5·(√2/2 + 1)/2 ≈ 0.57322, τ_2 = 0.75: by hand 0 → 0.5 → 1.14016 → 1.60512
    assert ema.model.linear.weight[0, 0].item() == pytest.approx(1.60512, abs=1e-4)
    assert torch.allclose(ema.model.linear.weight, expected)
    assert not any(p.requires_grad for p in ema.model.parameters())  # the teacher is never trained


def test_the_trainer_hands_the_source_its_step_count_and_step_hooks():
    from types import SimpleNamespace

    from distillkit.training.trainer import SourceCallback

    student, ema = Tiny(torch.zeros(3, 2)), EMATeacher(0.5, schedule="cosine")
    ema.setup(student, "cpu")
    callback = SourceCallback(ema)
    callback.on_train_begin(None, SimpleNamespace(max_steps=4), None)
    assert ema.total_steps == 4 and ema.momentum_at(2) == pytest.approx(0.75)
    _set(student, torch.ones(3, 2))
    callback.on_step_end(None, SimpleNamespace(global_step=1), None, model=student)
    assert torch.allclose(ema.model.linear.weight, torch.full((3, 2), 0.5))  # τ_0 = 0.5


def test_ema_constant_momentum_and_state_round_trip():
    student = Tiny(torch.ones(3, 2))
    ema = EMATeacher(0.9)
    ema.setup(student, "cpu")
    _set(student, torch.full((3, 2), 11.0))
    ema.after_step(student, 1)
    assert torch.allclose(ema.model.linear.weight, torch.full((3, 2), 0.9 * 1 + 0.1 * 11))  # 2.0
    restored = EMATeacher(0.9)
    restored.setup(Tiny(torch.zeros(3, 2)), "cpu")  # a resumed run starts from a fresh copy
    restored.load_state_dict(ema.state_dict())
    assert torch.equal(restored.model.linear.weight, ema.model.linear.weight)


def test_ema_centering_subtracts_the_running_mean_of_its_outputs():
    student = Tiny([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    ema = EMATeacher(0.9, center_momentum=0.5)
    ema.setup(student, "cpu")
    raw = student(**BATCH).logits.detach()
    first = ema.outputs(BATCH, FeatureSpec()).logits
    assert torch.allclose(first, raw)  # c starts at 0
    second = ema.outputs(BATCH, FeatureSpec()).logits
    assert torch.allclose(second, raw - 0.5 * raw.mean(0))  # c = 0.5·0 + 0.5·mean
    ema.outputs(BATCH, FeatureSpec(), training=False)  # an evaluation leaves the center alone
    assert torch.allclose(ema.center, 0.75 * raw.mean(0))  # 0.5·(0.5·mean) + 0.5·mean, from the 2 training calls


# ---------------------------------------------------------------------------------------- snapshots
def test_snapshot_source_averages_the_last_k_snapshots_probabilities():
    student = Tiny(torch.zeros(3, 2))
    source = Snapshots(k=2, every=1)
    source.setup(student, "cpu")
    assert source.outputs(BATCH, FeatureSpec()) is None  # nothing before the first snapshot
    weights = [torch.randn(3, 2) for _ in range(3)]
    for step, w in enumerate(weights, start=1):
        _set(student, w)
        source.after_step(student, step)
    assert source.steps == [2, 3]  # the oldest dropped
    x = BATCH["input_ids"]
    probs = [torch.softmax(x @ w.T, -1) for w in weights[1:]]
    expected = torch.log((probs[0] + probs[1]) / 2)
    assert torch.allclose(source.outputs(BATCH, FeatureSpec()).logits, expected, atol=1e-6)
    restored = Snapshots(k=2, every=1)
    restored.setup(Tiny(torch.zeros(3, 2)), "cpu")
    restored.load_state_dict(source.state_dict())
    assert torch.allclose(restored.outputs(BATCH, FeatureSpec()).logits, expected, atol=1e-6)


def test_epoch_snapshots_are_taken_at_epoch_ends_only():
    student = Tiny(torch.zeros(3, 2))
    source = Snapshots(k=1, every="epoch")
    source.setup(student, "cpu")
    source.after_step(student, 1)
    assert not source.taken
    source.after_epoch(student, 5)
    assert source.steps == [5]
    source.total_steps = 10
    source.after_epoch(student, 10)  # the last epoch's end: the student would be its own teacher in the report
    assert source.steps == [5]


def test_ensemble_is_the_mean_prediction_of_its_members():
    a, b = Tiny(torch.randn(3, 2)), Tiny(torch.randn(3, 2))
    source = Ensemble({"gen0": a, "gen1": b})
    source.setup(None, "cpu")
    expected = torch.log((torch.softmax(a(**BATCH).logits, -1) + torch.softmax(b(**BATCH).logits, -1)) / 2)
    assert torch.allclose(source.outputs(BATCH, FeatureSpec()).logits, expected, atol=1e-6)


# ---------------------------------------------------------------------------- self_kd's two directions
@pytest.mark.parametrize("direction", ["current_previous", "previous_current"])
def test_self_kd_kl_directions_against_hand_values(direction):
    (stage,) = build_stages(SelfKDMethodConfig(direction=direction, temperature=1.0, ce_weight=0.0), None)
    current, previous = torch.tensor([[2.0, 0.0]]), torch.tensor([[0.0, 0.0]])
    p = [1 / (1 + math.exp(-2)), math.exp(-2) / (1 + math.exp(-2))]  # softmax([2, 0])
    q = [0.5, 0.5]
    kl = lambda a, b: sum(x * math.log(x / y) for x, y in zip(a, b))  # noqa: E731 (a one-line local function)
    expected = kl(p, q) if direction == "current_previous" else kl(q, p)  # 0.3808 vs 0.4338
    student, teacher = type("F", (), {"logits": current})(), type("F", (), {"logits": previous})()
    loss, terms = stage.objective(
        LossInputs(student, teacher, torch.tensor([0]), torch.ones(1, 2), stage.objective.adapters)
    )
    assert terms["self_kd"].item() == pytest.approx(expected, rel=1e-5)
    assert ("KL(softmax(z_s/T) ‖ softmax(z_prev/T))" in stage.objective.formula()) == (direction == "current_previous")
    _, none_yet = stage.objective(
        LossInputs(student, None, torch.tensor([0]), torch.ones(1, 2), stage.objective.adapters)
    )
    assert none_yet["self_kd"].item() == 0.0  # no snapshot yet: the term waits


# ------------------------------------------------------------------------------------------ the plans
def _cfg(overrides, cache_dir=None):
    extra = [f"cache_dir={cache_dir}"] if cache_dir else []
    return validate(compose_config(TINY + extra + list(overrides)))


def _plan(overrides, cache_dir):
    from distillkit.plan import make_plan

    return make_plan(_cfg(overrides, cache_dir))


def test_born_again_plan_chains_each_generation_to_the_one_before(cache_dir):
    plan = _plan(["method=born_again", "method.generations=2", "method.final=ensemble"], cache_dir)
    stages = plan.method_stages
    assert [s.name for s in stages] == ["gen0", "gen1", "gen2", "ensemble"]
    assert stages[0].teacher is None and stages[1].teacher.models == ("gen0",) and stages[2].teacher.models == ("gen1",)
    assert stages[3].teacher.kind == "ensemble" and stages[3].teacher.models == ("gen0", "gen1", "gen2")
    assert [s.student.seed_offset for s in stages] == [0, 1, 2, 3]  # fresh students, each its own init
    assert all(s.produces for s in stages)


def test_takd_chain_order_and_shapes(cache_dir):
    plan = _plan(["method=takd", "student=bert-2l", "method.assistants=[3]"], cache_dir)
    names = [s.name for s in plan.stages]
    assert names == ["teacher_prep", "assistant3", "student"]
    assistant, student = plan.method_stages
    assert assistant.teacher.kind == "prepared" and student.teacher.models == ("assistant3",)
    assert plan.model_configs["assistant3"][0].num_hidden_layers == 3
    assert plan.model_configs["student"][0].num_hidden_layers == 2


@pytest.mark.parametrize(
    "overrides,key",
    [
        (["method=born_again", "method.generations=0"], "method.generations"),
        (["method=noisy_student", "method.rounds=0"], "method.rounds"),
        (["method=ema_teacher", "method.momentum=1.0"], "method.momentum"),
        (["method=ema_teacher", "method.momentum=-0.1"], "method.momentum"),
        (["method=snapshot_ensemble", "method.k=1"], "method.k"),
        (["method=noisy_student", "method.unlabeled=/nonexistent/unlabeled.txt"], "method.unlabeled"),
        (["method=takd", "method.assistants=[2,3]"], "method.assistants"),
        (["method=born_again", "method.inner={name: none}"], "method.inner.name"),
        (["method=takd", "method.inner.temperature=0"], "method.inner.temperature"),
    ],
)
def test_bad_values_fail_at_validation(overrides, key):
    with pytest.raises(ConfigError) as info:
        _cfg(overrides)
    assert info.value.key == key, str(info.value)


@pytest.mark.parametrize(
    "overrides,key,words",
    [
        (["method=takd", "student=bert-2l", "method.assistants=[5]"], "method.assistants", "deeper than the teacher"),
        (
            ["method=takd", "student=bert-2l", "method.assistants=[2]"],
            "method.assistants",
            "shallower than the student",
        ),
        (["method=snapshot_ensemble", "method.k=3", "method.every=2"], "method.k", "leave room for 2"),
        (["method=self_kd"], "method.every", "leave room for 0"),  # 6 steps, 16 a epoch: no epoch ends in time
        (["teacher=none", "method=kd"], "teacher", "distils from the prepared teacher"),
        (["teacher=none", "method=born_again", "method.gen0=teacher"], "teacher", "prepared teacher"),
        (["teacher=none", "method=self_kd", "method.every=2", "student.init=uniform"], "teacher", "teacher layers"),
        (
            [
                "method=noisy_student",
                "method.unlabeled=generated",
                "data=local",
                "data.train_file=x.csv",
                "data.eval_file=x.csv",
            ],
            "method.unlabeled",
            "no generator",
        ),
    ],
)
def test_plan_errors_before_any_weight_is_loaded(overrides, key, words, cache_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x.csv").write_text("text,label\na b c,0\nd e f,1\n")
    with pytest.raises(ConfigError) as info:
        _plan(overrides, cache_dir)
    assert info.value.key == key and words in str(info.value), str(info.value)


def test_noisy_student_auto_unlabeled_is_the_training_texts_on_local_data(cache_dir, tmp_path, monkeypatch):
    """method.unlabeled=auto (the default) means the training texts with their labels hidden when the data has no
    generator, as its config says: the plan accepts it on local files (it used to refuse it as 'generated')."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x.csv").write_text("text,label\na b c,0\nd e f,1\n" * 8)
    plan = _plan(["method=noisy_student", "data=local", "data.train_file=x.csv", "data.eval_file=x.csv"], cache_dir)
    (round1,) = plan.method_stages
    assert round1.data.kind == "train+unlabeled" and round1.data.unlabeled == "auto"
