"""The command line: ``python -m distillkit [group=option ...] [key=value ...]`` (or ``distillkit``).

A thin Hydra wrapper around ``run()``: validate, decide where the run writes, start DDP workers when
asked, and turn a ``ConfigError`` into one paragraph on stderr (exit status 2) instead of a traceback.
Heavy imports (torch, transformers) happen inside functions, so ``--help`` stays fast.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import sys
import traceback
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from distillkit import conf_dir, dist, launch, preflight
from distillkit.config.schema import register_schemas, validate
from distillkit.errors import ConfigError, Interrupted, TrainingDiverged, require

log = logging.getLogger("distillkit")


def _context():
    """Where this job writes and what it is called, from Hydra's runtime config."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from distillkit.context import RunContext

    hc = HydraConfig.get()
    skipped = set(os.environ.get(preflight.SKIP_ENV, "").split(",")) - {""}
    # a key preflight rewrote to ++key (so every job of the sweep composes) is recorded as the user typed it
    overrides = tuple(
        o[2:] if o.startswith("++") and o[2:].split("=", 1)[0] in skipped else o for o in hc.overrides.task
    )
    name, group = ",".join(overrides), None
    if hc.mode == RunMode.MULTIRUN:
        group = "sweep-" + "_".join(Path(hc.sweep.dir).parts[-2:])
        swept = _swept_keys(sys.argv[1:])
        name = ",".join(o for o in overrides if o.split("=", 1)[0].lstrip("+~") in swept) or name
    return RunContext(
        output_dir=Path(hc.runtime.output_dir), job_name=name or "default", overrides=overrides, group=group
    )


def _swept_keys(argv: list[str]) -> set[str]:
    """Keys a sweep varies (``key=a,b`` or ``key=glob(*)``/``range(..)``/``choice(..)``): in a multirun a job is
    named by its values of these alone, so W&B run names stay short and say what differs."""
    keys = set()
    for arg in argv:
        if arg.startswith("-") or "=" not in arg:
            continue
        key, value = arg.split("=", 1)
        depth, top_level_comma = 0, False
        for ch in value:
            depth += ch in "[({"
            depth -= ch in "])}"
            top_level_comma |= ch == "," and depth == 0
        if top_level_comma or re.match(r"^(glob|range|choice|interval)\(", value):
            keys.add(key.lstrip("+~"))
    return keys


def _resume(raw: dict, ctx):
    """``resume=<run dir>``: continue that run, in that directory, under its name and overrides, with that
    run's configuration (preflight refused any other override and pointed Hydra at that directory)."""
    previous = Path(raw["resume"]).expanduser()
    saved = previous / "config.yaml"
    require(
        saved.is_file(),
        "resume",
        str(previous),
        "is not a distillkit run directory (it has no config.yaml).",
        "pass the output directory of the interrupted run, e.g. resume=outputs/2026-11-22/19-00-00.",
    )
    require(
        not (previous / "results.json").exists(),
        "resume",
        str(previous),
        "already completed (results.json exists).",
        "start a new run instead, or delete results.json to train again from its last checkpoint.",
    )
    try:
        old = OmegaConf.to_container(OmegaConf.load(saved), resolve=True)
    except Exception as err:  # a hand-edited or truncated config.yaml
        raise ConfigError(
            "resume",
            str(previous),
            f"has a config.yaml that cannot be read ({str(err).splitlines()[0]}).",
            "restore the run's config.yaml, or start a new run.",
        ) from None
    old["resume"] = None
    ctx.output_dir, ctx.resume = previous.resolve(), True
    ctx.restore()
    log.info("Resuming %s (%s)", ctx.output_dir, ctx.job_name)
    return old


def _skip_reason(cfg: DictConfig) -> str | None:
    keys = [k for k in os.environ.get(preflight.SKIP_ENV, "").split(",") if k]
    return preflight.skip_reason(cfg, keys) if keys else None


def entry(cfg: DictConfig) -> None:
    """Validate, then run (in this process, or in N data-parallel workers)."""
    ctx = None
    try:
        ctx = _context()
        reason = _skip_reason(cfg)
        if reason:
            ctx.output_dir.mkdir(parents=True, exist_ok=True)
            (ctx.output_dir / SKIPPED_FILE).write_text(reason + "\n")
            print(f"skipped {ctx.job_name}: {reason}", flush=True)
            return
        run_cfg = validate(cfg)
        raw = OmegaConf.to_container(cfg, resolve=True)
        raw.pop("hydra", None)
        if run_cfg.resume:
            raw = _resume(raw, ctx)
            run_cfg = validate(raw)
        ctx.output_dir.mkdir(parents=True, exist_ok=True)
        if dist.is_main():  # the parent, a single process, or rank 0 under torchrun
            if not ctx.resume:
                (ctx.output_dir / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(raw)))
                ctx.save()
            (ctx.output_dir / "error.txt").unlink(missing_ok=True)
        signal.signal(signal.SIGTERM, _on_sigterm)
        from distillkit.run import make_plan, run

        plan = make_plan(run_cfg)  # every check, before workers start or weights load
        if run_cfg.hardware.devices > 1 and not launch.inside_worker():
            from dataclasses import asdict

            launch.spawn(raw, asdict(ctx), run_cfg.hardware.devices)
            return
        try:
            run(run_cfg, ctx, plan)
        finally:
            if launch.inside_worker():
                launch.shutdown_process_group()
    except (ConfigError, TrainingDiverged) as err:
        _fail(ctx, f"error: {err}")
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        if HydraConfig.get().mode == RunMode.MULTIRUN:
            raise  # the sweep goes on with the other jobs and fails at the end
        sys.exit(2 if isinstance(err, ConfigError) else 3)
    except (KeyboardInterrupt, Interrupted) as err:
        name = err.signal_name if isinstance(err, Interrupted) else "SIGINT"
        where = f" Resume it with: python -m distillkit resume={ctx.output_dir}" if ctx is not None else ""
        _fail(ctx, f"interrupted: the run received {name} and stopped before it completed.{where}")
        sys.exit(143 if name == "SIGTERM" else 130)
    except BaseException as err:
        if not isinstance(err, SystemExit):
            _fail(ctx, traceback.format_exc())
        raise


SKIPPED_FILE = "skipped.txt"


def _on_sigterm(signum, frame):
    raise Interrupted("SIGTERM")


def _fail(ctx, message: str) -> None:
    """error.txt first (a closed stdout must not lose it), then stderr."""
    try:
        if ctx is not None and ctx.output_dir.exists() and dist.is_main():
            (ctx.output_dir / "error.txt").write_text(message + "\n")
    finally:
        try:
            print(message, file=sys.stderr, flush=True)
        except (BrokenPipeError, OSError):
            pass


@hydra.main(version_base="1.3", config_path=str(conf_dir()), config_name="config")
def _hydra_main(cfg: DictConfig) -> None:
    entry(cfg)


def main() -> None:
    register_schemas()
    if not launch.inside_worker():  # a torchrun worker re-runs this module: its parent checked the command line
        try:
            checked = preflight.check(sys.argv[1:])
        except ConfigError as err:
            print(f"error: {err}", file=sys.stderr, flush=True)
            sys.exit(2)
        sys.argv[1:] = checked.argv
        if checked.skip_keys:
            os.environ[preflight.SKIP_ENV] = ",".join(checked.skip_keys)
            for reason, count in checked.skipped.items():
                print(f"note: {count} of the sweep's {checked.jobs} jobs will be skipped: {reason}", flush=True)
    _hydra_main()


if __name__ == "__main__":
    main()
