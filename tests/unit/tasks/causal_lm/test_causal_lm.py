"""task=causal_lm before anything runs: the sequence-KD view, plan-time errors, the on-policy stages' budgets, the
other task's settings refused, the sharded teacher's conditions (the runs: tests/integration/test_causal_lm.py)."""

import pytest

from distillkit.config.schema import validate
from distillkit.errors import ConfigError
from tests.conftest import TINY_LM, compose_config
from tests.integration.test_causal_lm import _jsonl, _saved_decoder


def test_seq_kd_view_is_prompt_plus_teacher_response():
    import datasets

    from distillkit.tasks.causal_lm.seq_kd import _with_responses

    train = datasets.Dataset.from_dict(
        {
            "input_ids": [[5, 6, 7, 8, 1]],
            "attention_mask": [[1] * 5],
            "labels": [[-100, -100, 7, 8, 1]],
            "prompt_length": [2],
            "idx": [0],
        }
    )
    view = _with_responses(train, [[9, 9, 1]])
    assert view[0]["input_ids"] == [5, 6, 9, 9, 1] and view[0]["labels"] == [-100, -100, 9, 9, 1]
    assert view[0]["attention_mask"] == [1] * 5 and view[0]["prompt_length"] == 2


def test_plan_errors_name_the_key_value_and_fix(tmp_path, cache_dir):
    from distillkit.plan import make_plan

    tok = _saved_decoder(tmp_path / "teacher")
    _saved_decoder(tmp_path / "small", vocab_rows=len(tok) - 10)
    base = [o for o in TINY_LM if not o.startswith(("teacher.", "student."))] + [
        f"cache_dir={cache_dir}",
        "teacher=hub",
        f"teacher.path={tmp_path / 'teacher'}",
    ]
    with pytest.raises(ConfigError) as err:
        make_plan(validate(compose_config(base + ["student=hub", f"student.path={tmp_path / 'small'}"])))
    assert err.value.key == "student.path" and f"{len(tok) - 10} rows" in str(err.value)
    assert f"{len(tok)} tokens" in str(err.value) and "share the tokenizer" in err.value.fix
    chat = _jsonl(
        tmp_path / "chat.jsonl",
        [{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}] * 4,
    )
    with pytest.raises(ConfigError) as err:  # the embedded BPE has no chat template
        make_plan(
            validate(
                compose_config(
                    TINY_LM
                    + [
                        f"cache_dir={cache_dir}",
                        "data=lm_local",
                        f"data.train_file={chat}",
                        f"data.eval_file={chat}",
                        "data.messages_field=messages",
                    ]
                )
            )
        )
    assert "chat template" in str(err.value)


@pytest.mark.parametrize("method", ["reverse_kl", "gkd", "minillm"])
def test_on_policy_stages_split_the_budget_and_the_distill_stage_may_have_its_own_rate(method):
    from distillkit.recipe.objective import Dims
    from distillkit.stages.planning import plan_stages

    base = TINY_LM + ["train.epochs=4", "train.max_steps=-1", "train.learning_rate=3e-3", f"method={method}"]
    dims = Dims(1, 2, 16, 32, 2, 2, 128)
    sft, distill = plan_stages(validate(compose_config(base)), False, dims)
    assert (sft.name, sft.budget.epochs, sft.budget.learning_rate) == ("sft", 2.0, 3e-3)
    assert (distill.name, distill.budget.epochs, distill.budget.learning_rate) == ("distill", 2.0, 3e-3)
    assert sft.budget.max_steps == distill.budget.max_steps and sft.budget.max_steps > 0
    cfg = validate(compose_config(base + ["method.distill_learning_rate=3e-4", "method.sft_share=0.25"]))
    sft, distill = plan_stages(cfg, False, dims)
    assert (sft.budget.epochs, sft.budget.learning_rate) == (1.0, 3e-3)
    assert (distill.budget.epochs, distill.budget.learning_rate) == (3.0, 3e-4)
    assert distill.budget.max_steps == 3 * sft.budget.max_steps  # the shares, in optimizer steps
    assert distill.budget.learning_rate_key == "method.distill_learning_rate"  # what a non-finite loss names
    only = plan_stages(
        validate(compose_config(base + ["method.sft_share=0", "method.distill_learning_rate=1e-4"])), False, dims
    )
    assert [(s.name, s.budget.learning_rate) for s in only] == [("distill", 1e-4)]
    with pytest.raises(ConfigError) as err:
        validate(compose_config(base + ["method.distill_learning_rate=0"]))
    assert err.value.key == "method.distill_learning_rate" and "train.learning_rate" in err.value.fix


@pytest.mark.parametrize(
    "override,key",
    [
        ("method=kd", "method"),
        ("data=synthetic", "data"),
        ("augmentation=synonym", "augmentation"),
        ("eval.every=epoch", "eval.every"),
        ("teacher=embedded-bert-12l", "teacher.arch.model_type"),
    ],
)
def test_settings_of_the_other_task_are_refused(override, key):
    with pytest.raises(ConfigError) as err:
        validate(compose_config(TINY_LM + [override]))
    assert err.value.key == key and "causal_lm" in str(err.value)


@pytest.mark.parametrize(
    "overrides,problem",
    [
        (["hardware.shard_teacher=true"], "this run has one"),
        (["hardware=ddp", "hardware.devices=2", "hardware.shard_teacher=true", "method=seq_kd"], "rank 0 alone"),
    ],
)
def test_a_sharded_teacher_needs_processes_and_no_rank0_decoding(overrides, problem):
    with pytest.raises(ConfigError) as err:
        validate(compose_config(TINY_LM + overrides))
    assert err.value.key == "hardware.shard_teacher" and problem in str(err.value)
