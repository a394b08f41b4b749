"""The command line checked before Hydra starts: every job composed and validated, in well under a second.

Hydra reports its own errors (an unknown key, a wrong type, a missing option) as a traceback-free text
that suggests ``+key=value`` and exits 1; the suggested override then fails distillkit's own check. And a
sweep that fails to compose one job has already made its sweep folder. So ``main()`` runs ``check`` first:
it expands the sweep as Hydra's basic sweeper will (same parser, same product of values), composes each
job with Hydra's compose API, validates it against distillkit's schemas, and turns any failure into one
``ConfigError`` paragraph (exit 2) before any folder is made or anything heavy is imported.

A sweep over methods together with a method-specific key (``-m method=none,kd method.temperature=2,4``)
is the main workflow, not a mistake: the jobs whose method has no such key are *skipped*, not failed.
``check`` rewrites such a key to ``++method.temperature=...`` (so every job composes) and names it in
``SKIP_ENV``; the job of a method without the key records itself as skipped (``skip_reason``) and does
no work.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from distillkit import conf_dir
from distillkit.errors import ConfigError

SKIP_ENV = "DISTILLKIT_SWEEP_SKIP_KEYS"  # method-specific keys a sweep sets for only some of its methods
# Hydra flags that print something instead of running a job: nothing to check.
_INFO_FLAGS = (
    "help",
    "hydra_help",
    "cfg",
    "info",
    "shell_completion",
    "experimental_rerun",
    "config_path",
    "config_name",
    "config_dir",
)
_NOT_IN_STRUCT = re.compile(r"Could not override '([^']+)'")
_RUN_KEYS = ("hydra.", "logger.mode")  # what may accompany resume=: where Hydra writes, how W&B connects


@dataclass
class Checked:
    """What ``check`` found: the argv to hand Hydra, and the keys whose jobs may skip themselves."""

    argv: list[str]
    skip_keys: list[str] = field(default_factory=list)
    jobs: int = 1
    skipped: dict[str, int] = field(default_factory=dict)  # reason → how many jobs skip themselves for it


def _strip(key: str) -> str:
    return key.lstrip("+~")


def _key_value(override: str) -> tuple[str, str]:
    key, _, value = override.partition("=")
    return _strip(key), value


def check(argv: list[str]) -> Checked:
    """Compose and validate every job ``argv`` describes; raise ``ConfigError`` on the first problem."""
    from hydra._internal.utils import get_args_parser

    args = get_args_parser().parse_args(argv)
    if any(getattr(args, flag, None) for flag in _INFO_FLAGS):
        return Checked(list(argv))
    overrides = list(args.overrides)
    if any(_strip(o).startswith("hydra/sweeper") for o in overrides):
        return Checked(list(argv))  # another sweeper (e.g. Optuna) expands its own search space: it checks its jobs
    resume = [o for o in overrides if _key_value(o)[0] == "resume" and _key_value(o)[1] not in ("", "null")]
    if resume:
        return Checked(_resume_argv(argv, overrides, resume[0]))
    with _hydra_context():
        jobs = _expand(overrides) if args.multirun else [overrides]
        failures = {}  # key → [(job, error)] for keys Hydra could not override in some jobs
        option_keys = _option_keys(overrides)
        other_task = []  # sweep jobs whose method serves another task
        for job in jobs:
            try:
                composed = _compose(job)
                if args.multirun and len(jobs) > 1 and task_mismatch(composed):
                    other_task.append((job, composed))
                    continue
                _validate_composed(composed, job, args.multirun)
                option_keys = {
                    k: v for k, v in option_keys.items() if not composed.augmentation[k.split(".")[1]].enabled
                }
            except _NotInSchema as err:
                failures.setdefault(err.key, []).append((job, err.error))
        _unselected_options(option_keys, args.multirun)
    if other_task and len(other_task) == len(jobs):
        _validate_composed(other_task[0][1], other_task[0][0], True)  # every job: the error, not a sweep of skips
    skip_keys = [TASK_KEY] if other_task else []
    for key, failed in failures.items():
        if not args.multirun or len(failed) == len(jobs) or not key.startswith("method."):
            raise failed[0][1]
        skip_keys.append(key)
    forced = _primary_keys(overrides, skip_keys) if args.multirun and len(jobs) > 1 else []
    if not skip_keys and not forced:
        return Checked(list(argv), jobs=len(jobs))
    rewritten = [
        ("++" + a) if not a.startswith(("+", "~", "-")) and _key_value(a)[0] in skip_keys + forced else a for a in argv
    ]
    if not skip_keys:
        return Checked(rewritten, jobs=len(jobs))
    skipped: dict[str, int] = {}
    with _hydra_context():
        for job in _expand([o for o in rewritten if not o.startswith("-")]):
            cfg = _compose(job)
            reason = skip_reason(cfg, skip_keys)
            if reason is None:
                _validate_composed(cfg, job, True)
            else:
                skipped[reason] = skipped.get(reason, 0) + 1
    return Checked(rewritten, skip_keys, len(jobs), skipped)


def _primary_keys(overrides: list[str], skip_keys: list[str]) -> list[str]:
    """Method keys every job has but Hydra's multirun cannot set: before its jobs it composes the defaults with the
    sweep's unswept overrides only, so ``-m method=reverse_kl,gkd method.ntp_weight=0.5`` meets the default
    method (which has no ntp_weight) and fails. These keys are rewritten to ``++key=value`` (set, or added)."""
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser

    forced: list[str] = []
    with _hydra_context():
        parser = OverridesParser.create(config_loader=GlobalHydra.instance().config_loader())
        primary = [o.input_line for o in parser.parse_overrides(overrides) if not o.is_sweep_override()]
        while True:
            force = set(skip_keys + forced)
            try:
                _compose(
                    [("++" + o) if not o.startswith(("+", "~")) and _key_value(o)[0] in force else o for o in primary]
                )
                return forced
            except _NotInSchema as err:
                if not err.key.startswith("method.") or err.key in forced:
                    raise err.error from None
                forced.append(err.key)


def _hydra_context():
    from hydra import initialize_config_dir

    return initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3", job_name="distillkit")


def _option_keys(overrides: list[str]) -> dict[str, str]:
    """``augmentation.<option>.<key>`` overrides (key → value): each must reach a job that selects the option."""
    from distillkit.config.augment import OFFLINE, ONLINE

    found = {}
    for override in overrides:
        key, value = _key_value(override)
        parts = key.split(".")
        if len(parts) >= 3 and parts[0] == "augmentation" and parts[1] in OFFLINE + ONLINE and parts[2] != "enabled":
            found[key] = value
    return found


def _unselected_options(keys: dict[str, str], multirun: bool) -> None:
    """Settings of an augmentation option that no job selects would change nothing: refused, not ignored. (In a
    sweep, a job that does not select the option simply does not read them.)"""
    for key, value in keys.items():
        option = key.split(".")[1]
        raise ConfigError(
            key,
            value,
            f"sets augmentation={option}, which "
            f"{'no job of this sweep selects' if multirun else 'this run does not select'}, so it would "
            "change nothing.",
            f"select the option too, e.g. 'augmentation=[<the others>,{option}]' (or augmentation={option}), "
            "or drop the setting.",
        )


def _resume_argv(argv: list[str], overrides: list[str], resume: str) -> list[str]:
    """``resume=<dir>`` continues that run in that directory with its own configuration: other overrides
    would be silently ignored, so they are refused; Hydra is pointed at the old directory (no new, empty
    output folder) and told not to rewrite its ``.hydra/`` record."""
    others = [o for o in overrides if o != resume and not _strip(o).startswith(_RUN_KEYS)]
    _, previous = _key_value(resume)
    if others:
        raise ConfigError(
            "resume",
            previous,
            f"continues that run with its own configuration, so the other "
            f"override(s) {' '.join(others)} would be ignored.",
            "drop them to resume as it was, or start a new run with them (without resume=).",
        )
    from pathlib import Path

    if not (Path(previous).expanduser() / "config.yaml").is_file():
        raise ConfigError(
            "resume",
            previous,
            "is not a distillkit run directory (it has no config.yaml).",
            "pass the output directory of the interrupted run, e.g. resume=outputs/2026-11-22/19-00-00.",
        )
    directory = str(Path(previous).expanduser().resolve())
    return list(argv) + [f"hydra.run.dir={directory}", "hydra.output_subdir=null"]


def _expand(overrides: list[str]) -> list[list[str]]:
    """The jobs of a sweep, in Hydra's order (its basic sweeper's product of the swept values)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        parser = OverridesParser.create(config_loader=GlobalHydra.instance().config_loader())
        return BasicSweeper.split_arguments(parser.parse_overrides(overrides), None)[0]
    except HydraException as err:
        raise _translate(err, overrides) from None


class _NotInSchema(Exception):
    """A key Hydra could not override because the composed config has no such key."""

    def __init__(self, key: str, error: ConfigError):
        self.key, self.error = key, error


def _compose(job: list[str]):
    from hydra import compose
    from hydra.errors import HydraException

    try:
        return compose("config", overrides=job)
    except HydraException as err:
        error = _translate(err, job)
        match = _NOT_IN_STRUCT.search(str(err))
        if match:
            raise _NotInSchema(_strip(match.group(1)), error) from None
        raise error from None


def _validate_composed(cfg, job: list[str], in_sweep: bool) -> None:
    """distillkit's own schema checks; in a sweep the message says which job failed."""
    from distillkit.config.schema import validate

    try:
        validate(cfg)
    except ConfigError as err:
        if not in_sweep:
            raise
        raise ConfigError(
            err.key, err.value, err.problem + f" (sweep job: {' '.join(job)}; no job was started)", err.fix
        ) from None


TASK_KEY = "task.name"  # in SKIP_ENV: the sweep's jobs whose method serves another task skip themselves


def task_mismatch(cfg) -> str | None:
    """Why a composed job's method does not apply to its task (``task.name``), or to its teacher (a method only an
    endpoint serves), or None when it does."""
    from omegaconf import OmegaConf

    from distillkit.config.registry import REGISTRY
    from distillkit.config.task import DEFAULT_TASK, tasks_of_method

    method, task = OmegaConf.select(cfg, "method.name"), OmegaConf.select(cfg, "task.name") or DEFAULT_TASK
    if method in REGISTRY and REGISTRY[method].needs_endpoint and OmegaConf.select(cfg, "teacher.endpoint") is None:
        # a sweep over methods with a teacher that has weights: the method does not apply either (blackbox_label)
        return f"its method needs a teacher that writes text (teacher=openai) and its teacher is {cfg.teacher.name}"
    if method not in REGISTRY or task in tasks_of_method(method):
        return None
    return (
        f"its method distils {' and '.join(tasks_of_method(method))} models and its task is {task} (the method "
        "does not apply)"
    )


def skip_reason(cfg, skip_keys: list[str]) -> str | None:
    """Why this sweep job is skipped (its method serves another task, or has no such key), or None to run it."""
    from omegaconf import OmegaConf

    from distillkit.config.schema import METHOD_SCHEMAS

    if TASK_KEY in skip_keys and task_mismatch(cfg):
        return task_mismatch(cfg)
    skip_keys = [k for k in skip_keys if k != TASK_KEY]
    method = OmegaConf.select(cfg, "method.name")
    schema = METHOD_SCHEMAS.get(method)
    if schema is None:
        return None
    base = OmegaConf.structured(schema)
    missing = [k for k in skip_keys if OmegaConf.select(base, k.split(".", 1)[1], default="<absent>") == "<absent>"]
    if not missing:
        return None
    return f"method={method} has no {', '.join(missing)}: this combination of the sweep does not apply and was skipped."


# ----------------------------------------------------------------------------------- Hydra's errors
def _valid_keys(key: str, job: list[str]) -> tuple[str, str]:
    """The keys that exist where ``key`` was meant to go (its parent node in the job's composed config)."""
    from hydra import compose
    from omegaconf import DictConfig, OmegaConf

    parent = key.rsplit(".", 1)[0] if "." in key else ""
    try:
        cfg = compose("config", overrides=[o for o in job if _key_value(o)[0] != key])
        node = OmegaConf.select(cfg, parent) if parent else cfg
    except Exception:  # the other overrides fail too: no list, the message still names the key
        return parent or "the top level", ""
    if not isinstance(node, DictConfig):
        return parent or "the top level", ""
    keys = [k for k in node.keys() if k not in ("hydra", "experiment", "local")]
    where = f"{parent}=" + str(node.get("name")) if parent and "name" in node else (parent or "the top level")
    return where, f" Valid keys: {', '.join(keys)}."


def _translate(err: Exception, job: list[str]) -> ConfigError:
    """One of Hydra's composition errors as a ConfigError naming the key, the value and the fix."""
    from hydra.errors import MissingConfigException, OverrideParseException

    text = str(err)
    first = text.strip().splitlines()[0] if text.strip() else type(err).__name__
    if isinstance(err, MissingConfigException) and "/" in (err.missing_cfg_file or ""):
        group, option = err.missing_cfg_file.rsplit("/", 1)
        options = ", ".join(err.options or [])
        return ConfigError(
            group,
            option,
            f"is not an option of the {group} group.",
            f"use one of {options} (the files in conf/{group}/).",
        )
    if isinstance(err, OverrideParseException):
        bad = next((o for o in job if o and o in text), " ".join(job))
        return ConfigError(
            "override",
            bad,
            f"cannot be parsed ({first}).",
            "write key=value; quote values with spaces, commas or brackets for the shell, e.g. "
            "'student.layers=[0,5,11]'; sweeps need -m.",
        )
    match = _NOT_IN_STRUCT.search(text)
    if match:
        key = _strip(match.group(1))
        value = next((_key_value(o)[1] for o in job if _key_value(o)[0] == key), None)
        where, valid = _valid_keys(key, job)
        return ConfigError(
            key,
            value,
            f"is not a setting of {where}.{valid}",
            "check the spelling against the valid keys (prefixing + does not help: distillkit's schema "
            "would refuse the new key).",
        )
    cause = err.__cause__ or err.__context__
    merging = re.search(r"Error merging override (\S+?)=(.*)", text)
    if merging:
        reason = str(cause).strip().splitlines()[0] if cause else first
        return ConfigError(
            merging.group(1),
            merging.group(2),
            f"has the wrong type ({reason}).",
            "give a value of the setting's type (see its default in conf/ or distillkit/config/schema.py).",
        )
    if "Ambiguous value" in text or "multirun" in text.lower():
        return ConfigError(
            "override",
            " ".join(job),
            f"sweeps several values without -m ({first}).",
            "add -m (--multirun) to run one job per value, or give one value.",
        )
    return ConfigError(
        "overrides",
        " ".join(job),
        f"could not be composed ({first}).",
        "check each key=value against conf/ (python -m distillkit --help lists the groups).",
    )
