"""Layer maps, feature capture (outputs and hooks), method plans and their start-up checks."""

import pytest
import torch
from transformers import AutoModelForSequenceClassification, BertConfig

from distillkit.config.schema import validate
from distillkit.errors import ConfigError
from distillkit.methods import build_stages
from distillkit.models import features
from distillkit.models import loading as models
from distillkit.models.features import FeatureSpec, HookSpec, layer_pairs
from distillkit.recipe.objective import Dims
from distillkit.recipe.stage import EMAOptions, ResponsesOptions, SnapshotOptions
from distillkit.run import make_plan
from tests.conftest import TINY, compose_config


# ------------------------------------------------------------------------------------ layer maps
@pytest.mark.parametrize(
    "strategy,m,n,final,expected",
    [
        ("uniform", 4, 12, True, [3, 6, 9, 12]),  # TinyBERT: g(m) = m·N/M
        ("uniform", 6, 12, True, [2, 4, 6, 8, 10, 12]),
        ("uniform", 5, 12, True, [2, 5, 7, 10, 12]),  # not a divisor: rounded, still ends on the last layer
        ("skip", 6, 12, False, [2, 4, 6, 8, 10]),  # PKD-Skip
        ("skip", 5, 12, True, [2, 4, 6, 8, 10]),  # fixed stride 12 // 5 = 2
        ("last", 6, 12, False, [7, 8, 9, 10, 11]),  # PKD-Last
        ("last", 3, 12, True, [10, 11, 12]),
    ],
)
def test_layer_map_strategies(strategy, m, n, final, expected):
    pairs = layer_pairs("method.layer_map", strategy, m, n, final=final)
    assert [s for s, _ in pairs] == list(range(1, len(expected) + 1))
    assert [t for _, t in pairs] == expected


def test_layer_map_list_and_auto():
    assert layer_pairs("k", "list", 3, 12, [1, 6, 12]) == [(1, 1), (2, 6), (3, 12)]
    assert layer_pairs("k", "auto", 4, 12, pair_layers=[1, 5, 8, 12]) == [(1, 1), (2, 5), (3, 8), (4, 12)]
    assert layer_pairs("k", "auto", 4, 12, final=False, pair_layers=[1, 5, 8, 12]) == [(1, 1), (2, 5), (3, 8)]
    assert layer_pairs("k", "auto", 4, 12) == layer_pairs("k", "uniform", 4, 12)  # no pair file: uniform


def test_auto_layer_map_follows_the_layers_the_student_was_copied_from(caplog):
    # A 6-layer teacher, a 3-layer student copied from 0-based teacher layers 0, 2, 5 (1, 3, 6 counted from 1):
    # student hidden state m learns from the teacher hidden state its layer came from, not TinyBERT's 2, 4, 6.
    with caplog.at_level("INFO", logger="distillkit"):
        assert layer_pairs("k", "auto", 3, 6, copied_layers=[0, 2, 5]) == [(1, 1), (2, 3), (3, 6)]
    assert "copied from" in caplog.text and "[0, 2, 5]" in caplog.text
    assert layer_pairs("k", "uniform", 3, 6) == [(1, 2), (2, 4), (3, 6)]
    assert layer_pairs("k", "auto", 3, 6, final=False, copied_layers=[0, 2, 5]) == [(1, 1), (2, 3)]
    assert layer_pairs("k", "auto", 3, 12, copied_layers=[9, 10, 11]) == [(1, 10), (2, 11), (3, 12)]  # init=last
    # precedence: an explicit strategy > the pair file > the copied layers > uniform
    caplog.clear()
    with caplog.at_level("INFO", logger="distillkit"):
        assert layer_pairs("k", "auto", 3, 6, pair_layers=[2, 4, 5], copied_layers=[0, 2, 5]) == [
            (1, 2),
            (2, 4),
            (3, 5),
        ]
    assert "pair file" in caplog.text
    assert layer_pairs("k", "list", 3, 6, [1, 2, 3], pair_layers=[2, 4, 5], copied_layers=[0, 2, 5])[1] == (2, 2)
    assert layer_pairs("k", "uniform", 3, 6, copied_layers=[0, 2, 5]) == [(1, 2), (2, 4), (3, 6)]
    caplog.clear()
    with caplog.at_level("INFO", logger="distillkit"):
        assert layer_pairs("k", "auto", 3, 6) == [(1, 2), (2, 4), (3, 6)]
    assert "uniform" in caplog.text


def test_plan_maps_a_copied_student_to_its_source_layers(cache_dir):
    # TINY: a 4-layer teacher, a 2-layer student; init=uniform copies teacher layers 0 and 3 → hidden states 1, 4
    # (uniform would give 2, 4). init=random has nothing to follow: uniform.
    copied = _plan(["method=tinybert", "student.init=uniform"], cache_dir)
    assert copied.student_layers == [0, 3]
    assert "student→teacher layers [(1, 1), (2, 4)]" in copied.stages[-2].objective.notes
    first = _plan(["method=fitnets", "student.init=first"], cache_dir)
    assert "student→teacher layers [(1, 1), (2, 2)]" in first.stages[-2].objective.notes
    scratch = _plan(["method=tinybert", "student.init=random"], cache_dir)
    assert "student→teacher layers [(1, 2), (2, 4)]" in scratch.stages[-2].objective.notes


@pytest.mark.parametrize(
    "kwargs,key,text",
    [
        ({"strategy": "list", "layers": [1, 2]}, "method.layer_map.layers", "each of the 3 mapped student layers"),
        ({"strategy": "list", "layers": [1, 2, 13]}, "method.layer_map.layers", "outside the teacher's 1..12"),
        ({"strategy": "list", "layers": [0, 2, 3]}, "method.layer_map.layers", "outside the teacher's 1..12"),
        ({"strategy": "last", "n_student": 14}, "method.layer_map.strategy", "outside the teacher's 1..12"),
        ({"strategy": "uniform", "n_student": 1, "final": False}, "method.layer_map.final", "leaves no student layer"),
    ],
)
def test_layer_map_errors_name_key_and_range(kwargs, key, text):
    args = {"strategy": "uniform", "n_student": 3, "n_teacher": 12, "layers": None, "final": True, **kwargs}
    with pytest.raises(ConfigError) as info:
        layer_pairs("method.layer_map", **args)
    assert info.value.key == key and text in str(info.value) and "Fix:" in str(info.value)


# ------------------------------------------------------------------------------ feature capture
def _bert(layers=3, hidden=16, heads=2, attn="eager"):
    config = BertConfig(
        vocab_size=50,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=32,
        num_labels=3,
        attn_implementation=attn,
    )
    return models.build_from_config(config, seed=0, model_class=AutoModelForSequenceClassification).eval()


BATCH = {
    "input_ids": torch.tensor([[2, 5, 7, 9, 3], [2, 6, 3, 0, 0]]),
    "attention_mask": torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]),
    "labels": torch.tensor([0, 1]),
    "idx": torch.tensor([4, 7]),
}


def test_forward_features_keeps_only_what_the_spec_asks_for():
    model = _bert()
    f = features.forward_features(model, BATCH, FeatureSpec(hidden_states=(0, 2), attentions=(3,)))
    assert set(f.hidden) == {0, 2} and set(f.attentions) == {3} and f.captured == {}
    assert f.hidden[2].shape == (2, 5, 16) and f.attentions[3].shape == (2, 2, 5, 5)
    full = model(**features.model_inputs(BATCH), output_hidden_states=True, output_attentions=True)
    assert torch.equal(f.hidden[2], full.hidden_states[2]) and torch.equal(f.attentions[3], full.attentions[2])
    bare = features.forward_features(model, BATCH, FeatureSpec())
    assert bare.hidden == {} and bare.attentions == {} and torch.equal(bare.logits, f.logits)


def test_attentions_under_sdpa_fail_loudly_instead_of_returning_nothing():
    model = _bert(attn="sdpa")
    with pytest.raises(RuntimeError, match="eager"):
        features.forward_features(model, BATCH, FeatureSpec(attentions=(1,)))


def test_hooks_capture_projections_and_are_removed_even_when_the_forward_fails():
    model = _bert()
    model(**features.model_inputs(BATCH), output_hidden_states=True)  # transformers may keep hooks of its own

    def hooks():
        return {name: list(m._forward_hooks) for name, m in model.named_modules()}

    before = hooks()
    template = features.projection_template(model, "value", None, "method.value_path")
    assert template == "bert.encoder.layer.{layer}.attention.self.value"
    spec = FeatureSpec(hooks=(HookSpec("value", template, (1, 3), "method.value_path"),))
    f = features.forward_features(model, BATCH, spec)
    module = model.get_submodule(template.format(layer=2))
    assert set(f.captured["value"]) == {1, 3}
    expected = module(model(**features.model_inputs(BATCH), output_hidden_states=True).hidden_states[2])
    assert torch.allclose(f.captured["value"][3], expected, atol=1e-6)  # layer 3's value projection of its input
    assert hooks() == before
    with pytest.raises(AttributeError):
        features.forward_features(model, {"input_ids": "not a tensor"}, spec)
    assert hooks() == before


def test_hooks_find_their_modules_inside_a_data_parallel_wrapper():
    # The Trainer hands compute_loss the DDP-wrapped student; module paths name the wrapped model's modules.
    model = _bert()
    template = features.projection_template(model, "query", None, "method.query_path")
    spec = FeatureSpec(hooks=(HookSpec("query", template, (2,), "method.query_path"),))
    wrapped = features.forward_features(torch.nn.DataParallel(model), BATCH, spec).captured["query"][2]
    assert torch.equal(wrapped, features.forward_features(model, BATCH, spec).captured["query"][2])


def test_hook_path_override_is_checked_at_setup():
    model = features.meta_model(_bert().config)
    with pytest.raises(ConfigError, match="no {layer} placeholder") as info:
        features.projection_template(model, "query", "bert.encoder.layer.0.attention.self.query", "method.query_path")
    assert info.value.key == "method.query_path"
    with pytest.raises(ConfigError, match="is not a module of BertForSequenceClassification"):
        features.projection_template(model, "query", "bert.encoder.layer.{layer}.attn.q", "method.query_path")
    custom = "bert.encoder.layer.{layer}.attention.self.key"  # any module will do, e.g. keys as "queries"
    assert features.projection_template(model, "query", custom, "method.query_path") == custom


# ---------------------------------------------------------------------------------- method plans
def _plan(overrides, cache_dir):
    return make_plan(validate(compose_config(TINY + [f"cache_dir={cache_dir}"] + overrides)))


def _dims(**kw):
    base = dict(
        student_layers=4,
        teacher_layers=12,
        student_hidden=64,
        teacher_hidden=128,
        student_heads=4,
        teacher_heads=4,
        train_examples=100,
    )
    dims = Dims(**{**base, **kw})
    for who in ("student", "teacher"):  # hook paths are resolved on a weightless model of each config
        if getattr(dims, f"{who}_config") is None:
            setattr(
                dims,
                f"{who}_config",
                BertConfig(
                    vocab_size=50,
                    hidden_size=getattr(dims, f"{who}_hidden"),
                    intermediate_size=32,
                    num_hidden_layers=getattr(dims, f"{who}_layers"),
                    num_attention_heads=getattr(dims, f"{who}_heads"),
                ),
            )
    return dims


@pytest.mark.parametrize(
    "method,stages",
    [
        ("none", ["distill"]),
        ("kd", ["distill"]),
        ("fitnets", ["hints", "distill"]),
        ("attention_transfer", ["distill"]),
        ("rkd", ["distill"]),
        ("crd", ["distill"]),
        ("pkd", ["distill"]),
        ("distilbert", ["distill"]),
        ("tinybert", ["intermediate", "prediction"]),
        ("minilm", ["distill"]),  # joint by default; staged: relations → finetune
    ],
)
def test_every_method_plans_its_stages_with_budgets(method, stages, cache_dir):
    plan = _plan([f"method={method}", "train.epochs=2", "train.max_steps=-1", "train.learning_rate=3e-4"], cache_dir)
    planned = [s for s in plan.stages if s.name != "teacher_prep"]
    assert [s.name for s in planned] == stages
    # train.epochs is the whole distillation's budget: 2 epochs of 256 examples at batch 16 = 32 steps, split
    # equally between a method's stages (the shares sum to it exactly)
    assert [s.budget.max_steps for s in planned] == [32 // len(stages)] * len(stages)
    assert [s.budget.share for s in planned] == [1 / len(stages)] * len(stages)
    assert sum(s.budget.epochs for s in planned) == 2 and all(s.budget.learning_rate == 3e-4 for s in planned)
    assert all(s.objective.formula().startswith("L = ") for s in planned)
    for s in planned:  # a stage reading only features tells DDP that the head gets no gradient
        assert s.objective.reads_logits == any(t.name in ("ce", "kd") and t.weight for t in s.objective.terms), s.name


def test_stage_budgets_override_the_run_budget(cache_dir):
    plan = _plan(
        [
            "method=tinybert",
            "method.general.epochs=1",
            "method.intermediate.epochs=4",
            "method.prediction.learning_rate=5e-5",
        ],
        cache_dir,
    )
    by_name = {s.name: s for s in plan.stages}
    assert [s.name for s in plan.stages][-3:] == ["general", "intermediate", "prediction"]
    # pinned stages train their own epochs (max_steps -1), on top of the budget, which the free stage takes whole
    general, intermediate, prediction = by_name["general"], by_name["intermediate"], by_name["prediction"]
    assert (general.budget.epochs, general.budget.max_steps, general.budget.share) == (1, -1, None)
    assert (intermediate.budget.epochs, intermediate.budget.max_steps, intermediate.budget.share) == (4, -1, None)
    assert prediction.budget.learning_rate == 5e-5 and prediction.budget.share == 1.0
    assert prediction.budget.max_steps == 6  # the tiny config's train.max_steps


@pytest.mark.parametrize(
    "overrides,key",
    [
        (
            ["method=distilbert", "student.hidden_size=16", "student.num_heads=2", "student.init=random"],
            "student.hidden_size",
        ),
        (["method=pkd", "student.hidden_size=16", "student.num_heads=2", "student.init=random"], "student.hidden_size"),
        (["method=tinybert", "student.num_heads=4", "student.init=random"], "student.num_heads"),
        (["method=minilm", "method.relation_heads=3"], "method.relation_heads"),
        (["method=minilm", "method.teacher_layer=9"], "method.teacher_layer"),
        (["method=minilm", "method.value_path='bert.encoder.layer.{layer}.nope'"], "method.value_path"),
        (["method=tinybert", "method.key_path='bert.encoder.layer.{layer}.nope'"], "method.key_path"),
        (["method=pkd", "method.layer_map.strategy=list", "method.layer_map.layers=[9]"], "method.layer_map.layers"),
        (
            ["method=fitnets", "method.layer_map.strategy=list", "method.layer_map.layers=[1]"],
            "method.layer_map.layers",
        ),
        (["method=crd", "method.num_negatives=100000"], "method.num_negatives"),
    ],
)
def test_model_dependent_method_errors_come_from_the_plan(overrides, key, cache_dir):
    with pytest.raises(ConfigError) as info:
        _plan(overrides, cache_dir)
    assert info.value.key == key and "Fix:" in str(info.value)


@pytest.mark.parametrize(
    "overrides,key",
    [
        (["method=pkd", "method.layer_map.strategy=sideways"], "method.layer_map.strategy"),
        (["method=fitnets", "method.layer_map.layers=[1,2]"], "method.layer_map.layers"),
        (["method=rkd", "method.distance_weight=-1"], "method.distance_weight"),
        (["method=crd", "method.momentum=1.0"], "method.momentum"),
        (["method=tinybert", "method.general.epochs=-1"], "method.general.epochs"),
        (["method=tinybert", "method.attention_target=logits"], "method.attention_target"),
        (
            ["method=minilm", "method.schedule=staged", "method.relations.learning_rate=0"],
            "method.relations.learning_rate",
        ),
    ],
)
def test_value_errors_come_from_the_schema(overrides, key):
    with pytest.raises(ConfigError) as info:
        validate(compose_config(TINY + overrides))
    assert info.value.key == key


def test_pair_group_supplies_the_layer_map_for_its_teacher_and_student():
    cfg = validate(compose_config(["method=fitnets", "student=bert-4l"]))
    assert cfg.pair.layer_map == [1, 5, 8, 12]  # conf/pair/embedded-bert-12l_bert-4l.yaml
    stages = build_stages(cfg.method, _dims(student_hidden=128, pair_layers=cfg.pair.layer_map))
    assert "[(1, 1), (2, 5), (3, 8), (4, 12)]" in stages[0].objective.notes
    explicit = validate(compose_config(["method=fitnets", "student=bert-4l", "method.layer_map.strategy=uniform"]))
    stages = build_stages(explicit.method, _dims(student_hidden=128, pair_layers=explicit.pair.layer_map))
    assert "[(1, 3), (2, 6), (3, 9), (4, 12)]" in stages[0].objective.notes  # an explicit strategy wins
    assert validate(compose_config(["student=bert-2l"])).pair.layer_map is None  # its pair file has no map
    assert validate(compose_config(["student=hub", "student.path=x"])).pair.layer_map is None  # no pair file


def test_feature_specs_ask_only_for_mapped_layers():
    cfg = validate(
        compose_config(
            ["method=tinybert", "student=bert-4l", "method.layer_map.strategy=uniform", "method.attention_target=probs"]
        )
    )
    intermediate = build_stages(cfg.method, _dims(student_hidden=128))[0].objective
    assert intermediate.student_features.hidden_states == (0, 1, 2, 3, 4)
    assert intermediate.teacher_features.hidden_states == (0, 3, 6, 9, 12)
    assert intermediate.teacher_features.attentions == (3, 6, 9, 12) and intermediate.needs_attentions
    pkd = build_stages(
        validate(compose_config(["method=pkd", "student=bert-6l"])).method, _dims(student_layers=6, student_hidden=128)
    )[0].objective
    assert pkd.teacher_features.hidden_states == (2, 4, 6, 8, 10) and not pkd.needs_attentions


def test_projections_start_as_identity_when_widths_match_and_are_learned_otherwise():
    cfg = validate(compose_config(["method=tinybert", "student=bert-4l"]))
    same = build_stages(cfg.method, _dims(student_hidden=128))[0].objective.adapters["W_h"]
    assert torch.equal(same.weight, torch.eye(128)) and same.weight.requires_grad
    narrow = build_stages(cfg.method, _dims(student_hidden=64))[0].objective.adapters["W_h"]
    assert narrow.weight.shape == (128, 64)


def test_eager_attention_is_switched_on_only_when_a_stage_reads_attention_maps(cache_dir):
    teacher, student = _bert(attn="sdpa"), _bert(attn="sdpa")
    _plan(["method=kd"], cache_dir).attention.switch(student)
    assert student.config._attn_implementation == "sdpa"
    _plan(["method=tinybert"], cache_dir).attention.switch(student)  # scores come from hooks
    assert student.config._attn_implementation == "sdpa"
    attention = _plan(["method=tinybert", "method.attention_target=probs"], cache_dir).attention
    attention.switch(teacher)
    attention.switch(student)
    assert teacher.config._attn_implementation == "eager" and student.config._attn_implementation == "eager"
    assert features.forward_features(student, BATCH, FeatureSpec(attentions=(1,))).attentions[1].shape == (2, 2, 5, 5)
    attention.restore()  # evaluation times the models as they normally run
    assert teacher.config._attn_implementation == "sdpa" and student.config._attn_implementation == "sdpa"


def test_multi_stage_formulas_name_each_stage_loss():
    cfg = validate(compose_config(["method=pkd", "method.alpha=0.2", "method.beta=10"]))
    (stage,) = build_stages(cfg.method, _dims(student_hidden=128))
    assert stage.objective.formula().startswith("L = 0.8·CE(y, softmax(z_s)) + 0.2·T²·KL")
    assert "10·Σ ‖h_s/‖h_s‖ − h_t/‖h_t‖‖²" in stage.objective.formula()


def test_layer_learning_rate_splits_the_encoder_layers_into_their_own_groups():
    from distillkit.training.trainer import split_layer_groups

    model = _bert()
    decay = [p for n, p in model.named_parameters() if "bias" not in n and "LayerNorm" not in n]
    rest = [p for n, p in model.named_parameters() if "bias" in n or "LayerNorm" in n]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.01}, {"params": rest, "weight_decay": 0.0}], lr=3e-3
    )
    split_layer_groups(optimizer, model, 1e-4)
    rates = {id(p): (g["lr"], g["weight_decay"]) for g in optimizer.param_groups for p in g["params"]}
    named = dict(model.named_parameters())
    assert len(rates) == len(named)  # every parameter in exactly one group
    assert rates[id(named["bert.encoder.layer.2.attention.self.query.weight"])] == (1e-4, 0.01)
    assert rates[id(named["bert.encoder.layer.0.output.dense.bias"])] == (1e-4, 0.0)
    assert rates[id(named["bert.embeddings.word_embeddings.weight"])] == (3e-3, 0.01)
    assert rates[id(named["classifier.weight"])] == (3e-3, 0.01)


def test_stage_plan_gives_every_student_stage_the_layer_learning_rate():
    from distillkit.stages.planning import plan_stages

    cfg = validate(
        compose_config(["method=fitnets", "method.hints.learning_rate=1e-3", "train.layer_learning_rate=5e-5"])
    )
    stages = plan_stages(cfg, True, _dims(student_hidden=128, pair_layers=cfg.pair.layer_map))
    assert [s.name for s in stages] == ["teacher_prep", "hints", "distill"]
    prep, hints, distill = stages
    assert (prep.budget.learning_rate, prep.budget.layer_learning_rate) == (
        3e-3,
        1e-4,
    )  # the teacher's own preparation rates
    assert (hints.budget.learning_rate, hints.budget.layer_learning_rate) == (
        1e-3,
        5e-5,
    )  # a phase's rate, the run's layer rate
    assert (distill.budget.learning_rate, distill.budget.layer_learning_rate) == (3e-3, 5e-5)
    single = validate(compose_config(["train.layer_learning_rate=null"]))
    assert plan_stages(single, False, _dims(student_hidden=128))[0].budget.layer_learning_rate is None


def test_tinybert_attention_target_scores_reads_hooks_and_probs_reads_attention_maps():
    dims = _dims(student_hidden=128)
    scores = build_stages(
        validate(compose_config(["method=tinybert", "student=bert-4l", "method.layer_map.strategy=uniform"])).method,
        dims,
    )[0].objective
    assert scores.student_features.attentions == () and not scores.needs_attentions  # no eager attention needed
    hooks = {h.name: h for h in scores.teacher_features.hooks}
    assert set(hooks) == {"query", "key"} and hooks["key"].layers == (3, 6, 9, 12)
    assert hooks["query"].template == "bert.encoder.layer.{layer}.attention.self.query"
    assert {h.name: h.layers for h in scores.student_features.hooks} == {"query": (1, 2, 3, 4), "key": (1, 2, 3, 4)}
    assert "A = QKᵀ/√d" in scores.notes
    probs = build_stages(
        validate(compose_config(["method=tinybert", "student=bert-4l", "method.attention_target=probs"])).method, dims
    )[0].objective
    assert probs.student_features.hooks == () and probs.needs_attentions and "A = softmax(QKᵀ/√d)" in probs.notes


def test_hooked_scores_are_the_models_pre_softmax_attention():
    # softmax over the real keys of QKᵀ/√d built from the hooked projections is exactly the eager attention map.
    from distillkit.losses.features import attention_scores

    model = _bert(layers=2, hidden=16, heads=2)
    spec = FeatureSpec(
        attentions=(2,),
        hooks=tuple(
            HookSpec(p, features.projection_template(model, p, None, "k"), (2,), "k") for p in ("query", "key")
        ),
    )
    f = features.forward_features(model, BATCH, spec)
    scores = attention_scores(f.captured["query"][2], f.captured["key"][2], heads=2)  # (B, 2, 5, 5)
    keys = BATCH["attention_mask"].bool()[:, None, None, :]
    probs = torch.softmax(scores.masked_fill(~keys, float("-inf")), dim=-1)
    assert torch.allclose(probs, f.attentions[2], atol=1e-5)


def test_stage_options_are_typed_per_teacher_source_and_view():
    """A teacher source or data view gets the options dataclass of its kind, and nothing else: a dict (the old
    contract) or the wrong kind's options is refused when the stage is built, not when the source is."""
    from distillkit.recipe.stage import DataView, TeacherSpec

    assert TeacherSpec("ema", options=EMAOptions(0.99)).describe() == "ema(τ=0.99)"
    assert TeacherSpec("snapshots", options=SnapshotOptions(3, 50)).describe() == "snapshots(k=3, every 50)"
    for kind, options in [
        ("ema", {"momentum": 0.9}),
        ("ema", SnapshotOptions()),
        ("snapshots", None),
        ("prepared", EMAOptions(0.9)),
    ]:
        with pytest.raises(TypeError, match=kind):
            TeacherSpec(kind, options=options)
    assert DataView("teacher_responses", options=ResponsesOptions(2, 16, True)).options.num_beams == 2
    with pytest.raises(TypeError):
        DataView("teacher_responses")
    with pytest.raises(TypeError):
        DataView("train", options=ResponsesOptions())


def test_method_builders_give_their_sources_typed_options():
    """ema_teacher, self_kd/snapshot_ensemble and seq_kd carry their settings into the typed options."""
    from distillkit.config import llm as lc
    from distillkit.config import self_distill as sc
    from distillkit.methods.llm import build_seq_kd
    from distillkit.methods.self_distill import build_ema_teacher, build_snapshot_ensemble

    ema = build_ema_teacher(
        sc.EMATeacherMethodConfig(momentum=0.9, schedule="cosine", final_momentum=0.999, center_momentum=0.8), None
    )[0]
    assert ema.teacher.options == EMAOptions(0.9, "cosine", 0.999, 0.8)
    snap = build_snapshot_ensemble(sc.SnapshotEnsembleMethodConfig(k=4, every=25), None)[0]
    assert snap.teacher.options == SnapshotOptions(4, 25)
    seq = build_seq_kd(lc.SeqKDMethodConfig(num_beams=3, max_new_tokens=12, keep_original=True))[0]
    assert seq.data.options == ResponsesOptions(3, 12, True)


def test_joint_schedules_put_the_feature_terms_into_the_logit_stage(cache_dir):
    tinybert = _plan(["method=tinybert", "method.schedule=joint", "method.ce_weight=0.5"], cache_dir)
    (joint,) = [s for s in tinybert.stages if s.name != "teacher_prep"]
    names = [t.name for t in joint.objective.terms]
    assert joint.name == "distill" and names == ["ce", "kd", "embedding", "attention", "hidden"]
    assert joint.objective.reads_logits and set(joint.objective.adapters) == {"W_e", "W_h"}
    assert joint.objective.teacher_features.hidden_states and joint.budget.share == 1.0
    minilm = _plan(["method=minilm", "method.schedule=joint", "method.kd_weight=0.5"], cache_dir)
    (joint,) = [s for s in minilm.stages if s.name != "teacher_prep"]
    assert [(t.name, t.weight) for t in joint.objective.terms] == [
        ("ce", 0.5),
        ("kd", 0.5),
        ("attention_kl", 1.0),
        ("value_kl", 1.0),
    ]
    assert joint.objective.needs_teacher and joint.objective.student_features.hooks
    staged = _plan(["method=minilm", "method.schedule=staged"], cache_dir)
    finetune = staged.stages[-1]
    assert finetune.name == "finetune" and not finetune.objective.needs_teacher  # kd_weight 0: CE alone, no teacher
    with pytest.raises(ConfigError, match="method.schedule"):
        _plan(["method=tinybert", "method.schedule=together"], cache_dir)
