"""The bad-input catalogue (command line, resume, cache, sweeps): each refused with exit status 2, no
traceback, one paragraph naming the key, the value and the fix, before any folder is made or any heavy
module is imported. The data-file cases are in test_data_errors.py."""

import json
from pathlib import Path

import pytest

from distillkit import preflight
from distillkit.errors import ConfigError
from tests.conftest import TINY


def test_sweeping_methods_with_a_method_specific_key_skips_the_jobs_it_does_not_apply_to():
    checked = preflight.check(["-m", "method=none,kd", "method.temperature=2,4", "seed=1"])
    assert checked.skip_keys == ["method.temperature"] and checked.jobs == 4
    assert "++method.temperature=2,4" in checked.argv and "seed=1" in checked.argv
    assert list(checked.skipped.values()) == [2] and "method=none has no method.temperature" in next(
        iter(checked.skipped)
    )


def test_a_key_every_swept_method_has_but_the_default_lacks_is_set_with_plus_plus():
    """Hydra's multirun composes the defaults with the unswept overrides before any job: with task=causal_lm the
    default method is forward_kl, which has no ntp_weight, so the key is handed to Hydra as ++ (no job skips)."""
    checked = preflight.check(
        ["-m", "task=causal_lm", "method=reverse_kl,gkd", "method.ntp_weight=0.5", "method.sft_share=0", "seed=1"]
    )
    assert checked.argv == [
        "-m",
        "task=causal_lm",
        "method=reverse_kl,gkd",
        "++method.ntp_weight=0.5",
        "++method.sft_share=0",
        "seed=1",
    ]
    assert checked.skip_keys == [] and checked.jobs == 2 and checked.skipped == {}
    mixed = preflight.check(["-m", "task=causal_lm", "method=sft,gkd", "method.ntp_weight=0.5"])
    assert mixed.skip_keys == ["method.ntp_weight"] and "++method.ntp_weight=0.5" in mixed.argv  # sft skips
    plain = ["-m", "method=kd,pkd", "method.temperature=2"]  # the default method (kd) has it: left alone
    assert preflight.check(plain).argv == plain


def test_a_misspelt_key_in_a_sweep_is_an_error_not_a_skip():
    with pytest.raises(ConfigError) as info:  # no method has it: a typo, not a method-specific key
        preflight.check(["-m", "method=none,kd", "method.temprature=2,4"])
    assert info.value.key == "method.temprature"


def test_a_run_with_a_method_specific_key_its_method_lacks_is_an_error():
    with pytest.raises(ConfigError) as info:  # not a sweep: nothing to skip, the override is simply wrong
        preflight.check(["method=none", "method.temperature=2"])
    assert info.value.key == "method.temperature" and "method=none" in info.value.problem


def test_resume_refuses_other_overrides(tmp_path):
    run = tmp_path / "old"
    run.mkdir()
    (run / "config.yaml").write_text("seed: 1\n")
    with pytest.raises(ConfigError) as info:
        preflight.check([f"resume={run}", "method=none", "seed=7"])
    assert info.value.key == "resume" and "method=none seed=7" in info.value.problem
    checked = preflight.check([f"resume={run}", "hydra.job_logging.root.level=INFO"])  # Hydra's own keys are fine
    assert f"hydra.run.dir={run.resolve()}" in checked.argv and "hydra.output_subdir=null" in checked.argv


# ------------------------------------------------------------------------------ checks at plan time
def _plan(overrides, cache_dir):
    from distillkit.config.schema import validate
    from distillkit.run import make_plan
    from tests.conftest import compose_config

    return make_plan(validate(compose_config(TINY + [f"cache_dir={cache_dir}"] + list(overrides))))


@pytest.mark.parametrize("where", ["file", "proc"])
def test_an_unusable_cache_dir_is_a_config_error(tmp_path, where):
    path = tmp_path / "a-file" if where == "file" else Path("/proc/distillkit-cache")
    if where == "file":
        path.write_text("not a directory")
    with pytest.raises(ConfigError) as info:
        _plan([], path)
    assert info.value.key == "cache_dir" and info.value.value == str(path) and "writable directory" in info.value.fix


def test_a_stage_whose_every_weight_is_zero_is_refused(cache_dir):
    with pytest.raises(ConfigError) as info:
        _plan(
            ["method=tinybert", "method.embedding_weight=0", "method.attention_weight=0", "method.hidden_weight=0"],
            cache_dir,
        )
    assert info.value.key == "method" and "'intermediate'" in info.value.problem and "weight of 0" in info.value.problem


def test_teacher_preparation_batch_must_divide_over_the_processes(cache_dir):
    with pytest.raises(ConfigError) as info:
        _plan(["hardware.devices=3"], cache_dir)
    assert info.value.key == "teacher.prepare_batch_size" and "teacher.prepare_batch_size=30" in info.value.fix


# --------------------------------------------------------------------- the prepared teacher's cache key
def _key(overrides, cache_dir):
    from distillkit.plan import teacher_spec
    from distillkit.store import entry_key

    plan = _plan(overrides, cache_dir)
    return entry_key(teacher_spec(_config(overrides, cache_dir), plan, plan.stages[0]))


def _config(overrides, cache_dir):
    from distillkit.config.schema import validate
    from tests.conftest import compose_config

    return validate(compose_config(TINY + [f"cache_dir={cache_dir}"] + list(overrides)))


def test_teacher_key_follows_what_reaches_preparation_and_ignores_the_hardware(cache_dir):
    base = _key([], cache_dir)
    # settings that change the prepared weights make a new teacher ...
    for changed in (
        ["train.group_by_length=false"],
        ["train.weight_decay=0.1"],
        ["train.warmup_ratio=0.2"],
        ["teacher.prepare_batch_size=8"],
        ["teacher.prepare_epochs=2"],
        ["hardware.precision=bf16"],
    ):
        assert _key(changed, cache_dir) != base, changed
    # ... how the work is spread and logged does not: every process count reuses one teacher
    for same in (
        ["hardware.devices=2"],
        ["hardware.per_device_batch_size=8"],
        ["train.logging_steps=7"],
        ["train.save_steps=9"],
        ["seed=5"],
        ["method=none"],
    ):
        assert _key(same, cache_dir) == base, same


def test_teacher_batch_is_split_over_processes_and_accumulation(cache_dir, monkeypatch):
    from distillkit.plan import _prepare_batching

    cfg = _config(["hardware.per_device_batch_size=8", "teacher.prepare_batch_size=32"], cache_dir)
    assert _prepare_batching(cfg) == (8, 4)  # 32 on one process, at most 8 a step
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert _prepare_batching(cfg) == (8, 2)
    cfg = _config(["teacher.prepare_batch_size=32"], cache_dir)  # per-device 16 in TINY
    assert _prepare_batching(cfg) == (16, 1)


def test_local_data_is_keyed_by_content_not_path(tmp_path):
    import os

    from distillkit import store as cache
    from distillkit.config.schema import DataConfig
    from distillkit.plan import _data_spec

    train, evals = tmp_path / "train.csv", tmp_path / "eval.csv"
    train.write_text("text,label\ngood film,1\nbad film,0\n")
    evals.write_text("text,label\nfine,1\nawful,0\n")

    class Cfg:
        data = DataConfig(name="local", source="local", train_file=str(train), eval_file=str(evals))

    root = tmp_path / "cache"
    root.mkdir()
    first = cache.entry_key(_data_spec(Cfg, root))
    os.utime(train, (1, 1))  # touched, same text: same entry
    assert cache.entry_key(_data_spec(Cfg, root)) == first
    train.write_text("text,label\ngreat film,1\nbad film,0\n")  # edited in place: a new entry
    assert cache.entry_key(_data_spec(Cfg, root)) != first
    memo = json.loads((root / cache.DIGESTS_FILE).read_text())
    assert str(train.resolve()) in memo  # hashed once, remembered by size and mtime


@pytest.mark.parametrize(
    "overrides, warned",
    [
        (["student.init=random", "train.learning_rate=1e-4"], True),
        (["student.init=random", "train.learning_rate=1e-3"], False),
        (["student.init=uniform", "train.learning_rate=1e-4"], False),
        ([], False),  # the embedded pair: from scratch at its own rates (3e-3 for the head and embeddings)
    ],
)
def test_a_student_from_scratch_at_a_copied_students_rate_is_warned(cache_dir, overrides, warned, caplog):
    from distillkit.plan import warn_slow_from_scratch

    cfg = _config(overrides, cache_dir)
    message = warn_slow_from_scratch(cfg)
    assert (message is not None) == warned
    if warned:
        assert "train.learning_rate=0.0001" in message and "student.init=random" in message
        assert message in caplog.text
