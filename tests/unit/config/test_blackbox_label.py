"""method=blackbox_label's pre-flight errors (one paragraph naming key, value and fix, before any work): a verbaliser
naming a class the task lacks, an empty verbaliser word, soft labels without log-probs, a teacher that is not an
endpoint; and the defaults (soft labels follow teacher.sampling.logprobs)."""

from __future__ import annotations

import pytest

from distillkit.config.blackbox import BlackboxLabelMethodConfig
from distillkit.config.schema import validate
from distillkit.errors import ConfigError
from tests.conftest import TINY, compose_config

OPENAI = ["teacher=openai", "teacher.endpoint.model=stub", "teacher.endpoint.api_key_env=null", "method=blackbox_label"]


def _cfg(*overrides):
    return validate(compose_config(TINY + OPENAI + list(overrides)))


def test_defaults_hard_labels_and_soft_ones_when_log_probs_are_on():
    cfg = _cfg()
    assert cfg.method.soft is False and cfg.method.verbaliser is None and "{text}" in cfg.method.template
    assert cfg.teacher.arch.model_type == "megatron-bert" and cfg.student.init == "random"  # conf/pair/openai_bert-2l
    cfg = _cfg("teacher.sampling.logprobs=true", "teacher.sampling.top_logprobs=5")
    assert cfg.method.soft is True
    cfg = _cfg("method.verbaliser={food/positive:[yummy,tasty]}")
    assert cfg.method.verbaliser == {"food/positive": ["yummy", "tasty"]}


def test_soft_labels_without_log_probs_are_refused():
    with pytest.raises(ConfigError) as err:
        _cfg("method.soft=true")
    assert err.value.key == "method.soft" and "teacher.sampling.logprobs=true" in err.value.fix
    with pytest.raises(ConfigError) as err:  # log-probs, but no alternatives to spread over the classes
        _cfg("teacher.sampling.logprobs=true")
    assert err.value.key == "method.soft" and "top_logprobs=None" in err.value.problem
    assert _cfg("teacher.sampling.logprobs=true", "method.soft=false").method.soft is False


def test_an_empty_verbaliser_word_is_refused():
    with pytest.raises(ConfigError) as err:
        _cfg("method.verbaliser={food/positive:[yummy,'']}")
    assert err.value.key == "method.verbaliser.food/positive" and "empty word" in err.value.problem
    with pytest.raises(ConfigError) as err:
        BlackboxLabelMethodConfig(verbaliser={"a": []})
    assert err.value.key == "method.verbaliser.a"
    with pytest.raises(ConfigError) as err:
        BlackboxLabelMethodConfig(template="no text here")
    assert err.value.key == "method.template"


def test_a_teacher_with_weights_or_several_greedy_answers_per_text_is_refused():
    with pytest.raises(ConfigError) as err:
        validate(compose_config(TINY + ["method=blackbox_label"]))
    assert err.value.key == "teacher" and "teacher=openai" in err.value.fix
    with pytest.raises(ConfigError) as err:  # several greedy answers are one answer several times
        _cfg("teacher.sampling.n=2")
    assert err.value.key == "teacher.sampling.n" and "temperature" in err.value.fix
    votes = _cfg("teacher.sampling.n=5", "teacher.sampling.temperature=0.7", "method.soft=true")
    assert votes.method.soft and votes.teacher.sampling.n == 5  # soft labels from the votes, no log-probs


def test_a_verbaliser_naming_a_class_the_task_lacks_fails_in_the_plan(cache_dir, monkeypatch):
    from distillkit.plan import make_plan
    from distillkit.teachers import endpoint

    monkeypatch.setattr(endpoint, "check", lambda cfg: None)  # no server here: the endpoint's own check aside
    cfg = _cfg(f"cache_dir={cache_dir}", "method.verbaliser={food/positive:[yummy],pets/positive:[cute]}")
    with pytest.raises(ConfigError) as err:
        make_plan(cfg)
    assert err.value.key == "method.verbaliser.pets/positive" and "food/negative" in err.value.problem


def test_the_builder_checks_the_verbaliser_against_the_task_classes():
    from transformers import BertConfig

    from distillkit.methods.logits import build_blackbox_label
    from distillkit.recipe.objective import Dims

    names = ["food/positive", "food/negative"]
    config = BertConfig(num_labels=2, id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)})
    dims = Dims(2, 2, 8, 8, 2, 2, 10, student_config=config, teacher_config=config)
    with pytest.raises(ConfigError) as err:
        build_blackbox_label(BlackboxLabelMethodConfig(verbaliser={"food/positive": ["yum"], "pets": ["cute"]}), dims)
    assert err.value.key == "method.verbaliser.pets" and "food/positive, food/negative" in err.value.problem
    label, distill = build_blackbox_label(BlackboxLabelMethodConfig(soft=True, temperature=2.0, ce_weight=0.3), dims)
    assert label.generation.pipeline == "label" and label.generation.label.soft and not label.trains
    assert [(t.name, t.weight) for t in distill.objective.terms] == [("ce", 0.3), ("kd", pytest.approx(0.7))]
    assert distill.data.kind == "generated" and distill.data.options.source == "label"
    _, hard = build_blackbox_label(BlackboxLabelMethodConfig(), dims)
    assert [(t.name, t.weight) for t in hard.objective.terms] == [("ce", 1.0)]


def test_a_sweep_over_methods_skips_blackbox_label_for_a_teacher_with_weights():
    from distillkit import preflight

    checked = preflight.check(["-m", "method=kd,blackbox_label", *TINY])
    assert checked.jobs == 2 and checked.skipped == {
        "its method needs a teacher that writes text (teacher=openai) and its teacher is embedded-bert-12l": 1
    }
    with pytest.raises(ConfigError) as err:  # alone, it is the error, not a skip
        preflight.check(["method=blackbox_label", *TINY])
    assert err.value.key == "teacher"
