"""Every option of every group composes and validates; bad values fail with key, value and fix."""

from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException

from distillkit import conf_dir
from distillkit.config.schema import METHOD_SCHEMAS, validate
from distillkit.errors import ConfigError
from tests.conftest import compose_config

# Options that need a value the user must supply (marked ??? in their YAML).
NEEDS = {
    ("teacher", "hub"): ["teacher.path=/models/teacher"],
    ("student", "hub"): ["student.path=/models/student"],
    ("data", "hub"): ["data.path=imdb"],
    ("data", "lm_hub"): ["data.path=HuggingFaceH4/no_robots"],
    ("teacher", "openai"): ["teacher.endpoint.model=gpt-4o-mini", "method=blackbox_sft"],
    ("pair", "openai_llama-small"): ["teacher.endpoint.model=gpt-4o-mini", "method=blackbox_sft"],
    ("method", "blackbox_label"): ["teacher=openai", "teacher.endpoint.model=gpt-4o-mini"],
    **{
        ("pair", f"openai_bert-{n}l"): ["teacher.endpoint.model=gpt-4o-mini", "method=blackbox_label"]
        for n in (2, 3, 4, 6)
    },
}
# Options of the causal-LM task: composed with task=causal_lm (the default task is classification).
CAUSAL = (
    {("data", o) for o in ("lm_synthetic", "lm_local", "lm_hub", "alpaca", "dolly")}
    | {
        ("method", o)
        for o in (
            "sft",
            "forward_kl",
            "reverse_kl",
            "gkd",
            "minillm",
            "seq_kd",
            "blackbox_sft",
            "star",
            "critique_revise",
        )
    }
    | {("teacher", o) for o in ("embedded-llama", "gpt2-medium", "qwen2.5-1.5b", "openai")}
    | {("student", o) for o in ("llama-small", "gpt2", "qwen2.5-0.5b")}
    | {("task", "causal_lm")}
    | {("pair", "embedded-llama_llama-small"), ("pair", "openai_llama-small")}
)


def _options():
    for group_dir in sorted(p for p in conf_dir().iterdir() if p.is_dir()):
        for option in sorted(group_dir.glob("*.yaml")):
            yield group_dir.name, option.stem


@pytest.mark.parametrize("group,option", list(_options()))
def test_every_option_composes_and_validates(group, option, tmp_path):
    extra = list(NEEDS.get((group, option), []))
    if (group, option) in (("data", "local"), ("data", "lm_local")):
        for split in ("train", "eval"):
            path = tmp_path / f"{split}.csv"
            path.write_text("text,label\nhello,0\nbye,1\n" if option == "local" else "prompt,response\nhi,yo\n")
            extra.append(f"data.{split}_file={path}")
    if (group, option) in CAUSAL:
        extra.append("task=causal_lm")
    if group == "pair":
        teacher, student = option.split("_", 1)
        overrides = [f"teacher={teacher}", f"student={student}"] + extra
    else:
        overrides = [f"{group}={option}"] + extra
    cfg = validate(compose_config(overrides))
    if group == "method":
        assert isinstance(cfg.method, METHOD_SCHEMAS[option])
    if group in ("data", "teacher", "student", "hardware", "logger", "augmentation", "task"):
        assert getattr(cfg, group).name == option


def test_default_config_is_the_embedded_offline_run():
    cfg = validate(compose_config())
    assert cfg.data.source == "synthetic" and cfg.teacher.path is None and cfg.teacher.arch.num_layers == 12
    assert cfg.method.name == "kd" and cfg.method.temperature == 4.0 and cfg.method.ce_weight == 0.5
    assert cfg.logger.name == "wandb"


def test_embedded_teacher_trains_its_students_from_scratch_with_its_own_recipe():
    # conf/pair/embedded-bert-12l_bert-*.yaml: random init, fast embeddings and head, slow layers
    for student in ("bert-2l", "bert-3l", "bert-4l", "bert-6l"):
        cfg = validate(compose_config([f"student={student}"]))
        assert (cfg.student.init, cfg.train.learning_rate, cfg.train.layer_learning_rate) == ("random", 3e-3, 1e-4)
    # the command line wins over the pair file
    cfg = validate(
        compose_config(["student.init=uniform", "train.learning_rate=1e-4", "train.layer_learning_rate=null"])
    )
    assert (cfg.student.init, cfg.train.learning_rate, cfg.train.layer_learning_rate) == ("uniform", 1e-4, None)
    # a pre-trained teacher keeps the DistilBERT-style copy and one learning rate
    cfg = validate(compose_config(["teacher=bert-base"]))
    assert (cfg.student.init, cfg.train.learning_rate, cfg.train.layer_learning_rate) == ("uniform", 1e-4, None)


def test_experiment_recipe_overrides_groups():
    cfg = validate(compose_config(["experiment=distilbert_sst2"]))
    assert (cfg.data.name, cfg.teacher.path, cfg.student.num_layers) == ("sst2", "bert-base-uncased", 6)
    assert cfg.method.temperature == 10.0


def _error(overrides) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        validate(compose_config(overrides))
    return info.value


@pytest.mark.parametrize(
    "overrides,key,words",
    [
        (["method.temperature=0"], "method.temperature", "positive"),
        (["method.temperature=-2"], "method.temperature", "positive"),
        (["method.ce_weight=1.5"], "method.ce_weight", "[0, 1]"),
        (["method.ce_weight=-0.1"], "method.ce_weight", "[0, 1]"),
        (["+method.temprature=3"], "method.temprature", "valid keys are: name, temperature, ce_weight"),
        (["+train.epoks=3"], "train.epoks", "valid keys"),
        (["+foo=1"], "foo", "top-level"),
        (["student.layers=[1,2]"], "student.layers", "init=list"),
        (["student.init=list", "student.layers=[1,2]"], "student.layers", "exactly num_layers=4"),
        (["student.init=copy"], "student.init", "uniform, first, last, list, random"),
        (["teacher=hub"], "teacher.path", "teacher.path"),
        (["teacher.prepare=never"], "teacher.prepare", "never seen the task"),
        (["hardware.devices=0"], "hardware.devices", ">= 1"),
        (["hardware=cpu", "hardware.precision=fp16"], "hardware.precision", "CPU"),
        (["hardware.precision=fp8"], "hardware.precision", "fp32, bf16, fp16"),
        (["data.synthetic.label_noise=1.0"], "data.synthetic.label_noise", "[0, 1)"),
        (["logger.mode=sometimes"], "logger.mode", "auto, online, offline, disabled"),
        (["train.warmup_ratio=2"], "train.warmup_ratio", "[0, 1]"),
        (["train.layer_learning_rate=0"], "train.layer_learning_rate", "null for train.learning_rate"),
        (["data=local"], "data.train_file", "data.train_file=PATH"),
        (["data=local", "data.train_file=/no/such.csv", "data.eval_file=/no/such.csv"], "data.train_file", "readable"),
    ],
)
def test_bad_values_name_key_value_and_fix(overrides, key, words):
    err = _error(overrides)
    assert err.key == key
    message = str(err)
    assert message.startswith(f"{key}=") and "Fix:" in message and words in message
    assert "\n" not in message  # one paragraph


@pytest.mark.parametrize(
    "override,key,words",
    [
        ("method.teacher_mix=1.0", "method.teacher_mix", "unbounded"),
        ("method.teacher_mix=-0.1", "method.teacher_mix", "[0, 1)"),
        ("method.discount=0", "method.discount", "(0, 1]"),
        ("method.ratio_clip=1.0", "method.ratio_clip", "PPO's ε"),
        ("method.reward_clip=0", "method.reward_clip", "> 0 or null"),
        ("method.sampling.temperature=0.7", "method.sampling.temperature", "importance"),
        ("method.sampling.top_p=0.9", "method.sampling.top_p", "importance"),
        ("method.ntp_weight=1.0", "method.ntp_weight", "[0, 1)"),
    ],
)
def test_minillm_bad_values_name_key_value_and_fix(override, key, words):
    err = _error(["task=causal_lm", "method=minillm", override])
    message = str(err)
    assert err.key == key and message.startswith(f"{key}=") and "Fix:" in message and words in message


def test_wrong_type_fails_while_composing():
    with pytest.raises(ConfigCompositionException, match="method.ce_weight"):
        compose_config(["method.ce_weight=abc"])


def test_unknown_option_lists_the_available_ones():
    from distillkit import preflight

    with pytest.raises(ConfigError) as info:
        preflight.check(["method=kdd"])
    assert (info.value.key, info.value.value) == ("method", "kdd")
    for option in METHOD_SCHEMAS:  # every option of the group, not just something that looks like the typo
        assert option in info.value.fix


def test_packaged_config_dir_is_found():
    assert (conf_dir() / "config.yaml").is_file()
    assert Path(conf_dir(), "method", "kd.yaml").is_file()


@pytest.mark.parametrize(
    "overrides,rate,epochs",
    [
        (["task=causal_lm"], 3e-3, 6.0),  # the embedded student from scratch: its pair file's recipe beats the task's
        (["task=causal_lm", "teacher=gpt2-medium", "student=gpt2"], 2e-5, 3.0),  # pretrained: the fine-tuning rate
        (["task=causal_lm", "teacher=qwen2.5-1.5b", "student=qwen2.5-0.5b"], 2e-5, 3.0),
        (["task=causal_lm", "train.learning_rate=1e-3", "train.epochs=2"], 1e-3, 2.0),  # the command line beats both
        ([], 3e-3, 3.0),  # classification: the embedded pair's rate, the global budget
    ],
)
def test_a_pair_recipe_wins_over_the_task_defaults_and_the_command_line_over_both(overrides, rate, epochs):
    cfg = validate(compose_config(overrides))
    assert (cfg.train.learning_rate, cfg.train.epochs) == (rate, epochs)
