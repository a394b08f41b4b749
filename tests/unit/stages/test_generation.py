"""The generation stage's pieces without a teacher: the filters, the rows in the task's format, the prompt text a
local teacher reads, the budget rule (generation outside it), and the config errors of black-box distillation."""

from __future__ import annotations

import pytest

from distillkit.config.schema import validate
from distillkit.errors import ConfigError
from distillkit.stages.generation.common import filter_answers as _filter
from distillkit.tasks.causal_lm import generated
from distillkit.tasks.causal_lm.synthetic import solve
from distillkit.teachers.generating import Completion
from tests.conftest import TINY_LM, compose_config

OPENAI = ["teacher=openai", "teacher.endpoint.model=stub", "method=blackbox_sft"]


def test_filters_reject_empty_truncated_and_repeated_answers():
    answers = [Completion(" 15 "), Completion("  "), Completion("1 2", "length"), Completion("15"), Completion("16")]
    kept, why = _filter(answers, drop_truncated=True)
    assert [a.text for a in kept] == ["15", "16"] and why == ["empty", "truncated", "duplicate"]
    kept, why = _filter(answers, drop_truncated=False)
    assert [a.text for a in kept] == ["15", "1 2", "16"] and why == ["empty", "duplicate"]


def test_rows_are_the_tasks_file_format_without_the_pipelines_system_turn():
    user = {"role": "user", "content": "What is 2 + 2?"}
    system = {"role": "system", "content": "Answer tersely."}
    assert generated.row([system, user], Completion("4"), "Answer tersely.") == {
        "prompt": user["content"],
        "response": "4",
        "messages": [user, {"role": "assistant", "content": "4"}],
    }
    chat = [user, {"role": "assistant", "content": "4"}, {"role": "user", "content": "And 3 + 3?"}]
    row = generated.row(chat, Completion("6", logprobs=[{"token": "6", "logprob": -0.1}]), None)
    assert row["messages"][-1] == {"role": "assistant", "content": "6"} and row["logprobs"][0]["token"] == "6"


def test_prompts_are_one_user_turn_per_training_row():
    import datasets

    from distillkit.tasks.splits import TaskData

    train = datasets.Dataset.from_dict({"prompt": ["a", "b"], "response": ["x", "y"]})
    convs = generated.prompts(TaskData(train, train, [], False), "Be brief.")
    assert convs[1] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "b"}]


def test_a_local_teacher_is_asked_as_its_training_rows_were_written():
    class Plain:
        chat_template = None

    class Chat:
        chat_template = "<template>"

        def apply_chat_template(self, conversation, tokenize, add_generation_prompt):
            return "<chat>" + "|".join(m["content"] for m in conversation)

    conv = [{"role": "system", "content": "S"}, {"role": "user", "content": "Q"}]
    assert generated.render(conv, Plain(), "Q: {prompt}\nA: ") == ("S\nQ: Q\nA: ", False)
    # prompt/response data trains on the template, so a chat tokenizer is asked with the template too
    assert generated.render(conv, Chat(), "Q: {prompt}\nA: ") == ("S\nQ: Q\nA: ", False)
    assert generated.render(conv, Chat(), "Q: {prompt}\nA: ", chat=True) == ("<chat>S|Q", True)


def test_the_stub_teacher_knows_the_embedded_tasks_answers():
    assert solve("What is 7 + 8?") == "15" and solve("Reverse the list: pasta dull ferry") == "ferry dull pasta"
    assert solve("What is the capital of France?") is None


def test_generation_is_outside_the_budget():
    from distillkit.methods.llm import build_blackbox_sft
    from distillkit.stages.planning import plan_stages

    cfg = validate(compose_config(TINY_LM + OPENAI))
    assert [s.name for s in build_blackbox_sft(cfg.method)] == ["generate", "distill"]

    class Dims:  # only the training split's size reaches the budget split
        train_examples = 128

    stages = plan_stages(cfg, False, Dims())
    generate, distill = stages
    assert not generate.trains and generate.budget.max_steps == -1 and generate.budget.share is None
    assert distill.budget.max_steps == cfg.train.max_steps == 4 and distill.budget.share == 1.0


def test_an_endpoint_teacher_serves_only_a_method_whose_teacher_writes():
    with pytest.raises(ConfigError) as err:
        validate(compose_config(TINY_LM + OPENAI[:2] + ["method=forward_kl"]))
    assert err.value.key == "teacher" and "blackbox_sft" in err.value.fix
    with pytest.raises(ConfigError) as err:
        validate(compose_config(TINY_LM + OPENAI[:1] + ["method=blackbox_sft"]))
    assert err.value.key == "teacher.endpoint.model"
    with pytest.raises(ConfigError) as err:
        validate(compose_config(TINY_LM + OPENAI + ["teacher.sampling.top_logprobs=5"]))
    assert err.value.key == "teacher.sampling.top_logprobs"


def test_endpoint_settings_stay_out_of_a_prepared_teachers_key():
    """teacher.endpoint / teacher.sampling concern writing teachers: the prepared embedded teacher keeps its key."""
    import dataclasses

    from distillkit import tasks
    from distillkit.plan import _teacher_settings

    cfg = validate(compose_config(TINY_LM))
    settings = _teacher_settings(cfg, tasks.get("causal_lm"))
    assert "endpoint" not in settings and "sampling" not in settings
    cfg.teacher.sampling = dataclasses.replace(cfg.teacher.sampling, temperature=0.9)
    assert _teacher_settings(cfg, tasks.get("causal_lm")) == settings


def test_a_grey_box_term_needs_an_endpoints_top_log_probs():
    """method.kd_weight > 0 reads an endpoint's top log-probs: refused for a teacher model, for an endpoint not asked
    for them, and for the dialogue pipeline (several answers a row); accepted with logprobs and top_logprobs."""
    grey = ["method.kd_weight=0.5"]
    with pytest.raises(ConfigError) as err:
        validate(compose_config(TINY_LM + ["method=blackbox_sft", *grey]))
    assert err.value.key == "method.kd_weight" and "forward_kl" in err.value.fix
    with pytest.raises(ConfigError) as err:
        validate(compose_config(TINY_LM + OPENAI + grey))
    assert err.value.key == "method.kd_weight" and "top_logprobs" in err.value.fix
    logprobs = ["teacher.sampling.logprobs=true", "teacher.sampling.top_logprobs=5"]
    with pytest.raises(ConfigError) as err:
        validate(compose_config(TINY_LM + OPENAI + grey + logprobs + ["method.pipeline=dialogue"]))
    assert err.value.key == "method.kd_weight" and "dialogue" in err.value.problem
    assert validate(compose_config(TINY_LM + OPENAI + grey + logprobs)).method.kd_weight == 0.5
