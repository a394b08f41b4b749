"""Weights & Biases, never blocking: online with credentials, otherwise offline with a sync hint.

Run files go under the run's output directory. Runs of one multirun share a group named after the
sweep; the config is logged flat (``method.name``, ``method.temperature`` ...) so a dashboard can group
by any key; the run's name says what was overridden.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path

from distillkit.config.schema import LoggerConfig

log = logging.getLogger(__name__)


def flatten(tree, prefix: str = "") -> dict:
    """``{"method": {"name": "kd"}}`` → ``{"method.name": "kd"}``; lists become strings."""
    if dataclasses.is_dataclass(tree):
        tree = dataclasses.asdict(tree)
    flat = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        elif isinstance(value, (list, tuple)):
            flat[name] = str(list(value))
        else:
            flat[name] = value
    return flat


def _netrc() -> Path:
    """Where ``wandb login`` stores the API key."""
    return Path(os.environ.get("NETRC", Path.home() / ".netrc"))


def _has_credentials() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return "api.wandb.ai" in _netrc().read_text()
    except OSError:
        return False


def mode_and_reason(cfg: LoggerConfig) -> tuple[str, str]:
    """online | offline | disabled, and what decided it (for the log line that tells a user why their run is not
    online). ``auto`` (and WANDB_MODE, when set) never leads to a login prompt."""
    if cfg.mode != "auto":
        return cfg.mode, f"logger.mode={cfg.mode}"
    env = os.environ.get("WANDB_MODE", "").lower()
    if env in ("offline", "disabled", "dryrun"):
        return ("offline" if env == "dryrun" else env), f"WANDB_MODE={os.environ['WANDB_MODE']} in the environment"
    if _has_credentials():
        return "online", "W&B credentials found"
    return "offline", f"no W&B credentials: WANDB_API_KEY is unset and {_netrc()} holds no wandb login"


def start(cfg: LoggerConfig, output_dir: Path, name: str, group: str | None, config: dict, run_id: str | None = None):
    """A W&B run, or None for logger=none. ``run_id``: continue that run (a resumed distillkit run)."""
    if cfg.name == "none":
        return None
    import wandb

    mode, reason = mode_and_reason(cfg)
    if mode == "online" and not _has_credentials():
        log.warning("logger.mode=online but no W&B credentials were found: wandb may ask to log in.")
    kwargs = dict(
        project=cfg.project,
        entity=cfg.entity,
        group=cfg.group or group,
        name=name,
        tags=list(cfg.tags) or None,
        config=config,
        dir=str(output_dir),
        mode=mode,
        **({"id": run_id, "resume": "allow"} if run_id else {}),
    )
    run = _init(wandb, kwargs, run_id, settings=lambda: wandb.Settings(console="off", quiet=True))
    if mode == "offline":
        log.info(
            "W&B is offline (%s). Run files: %s. Upload later with: wandb sync %s",
            reason,
            run.dir,
            Path(run.dir).parent,
        )
    elif mode == "disabled":
        log.info("W&B is disabled (%s): nothing is logged to W&B.", reason)
    return run


def _init(wandb, kwargs: dict, run_id: str | None, attempts: int = 6, wait_s: float = 5.0, settings=None):
    """``wandb.init``; when resuming right after the run was killed (kill -9), a W&B service may still hold the run's
    id ("run ID ... is in use"): the killed process's own service until it notices, or for good a service the killed
    run shared through an inherited ``WANDB_SERVICE`` (a notebook, a driver script, pytest). Wait for it to let go,
    and if it does not, continue in a new W&B run (said in the log) rather than fail the resume.

    ``settings`` makes a new ``wandb.Settings`` for each call: ``wandb.init`` writes the run id into the one it is
    given, and a new run started with that object would ask for the held id again."""
    import time

    def init(**kw):
        return wandb.init(**kw, **({"settings": settings()} if settings else {}))

    for attempt in range(attempts):
        try:
            return init(**kwargs)
        except Exception as err:  # wandb's ServerResponseError; its module path moves between versions
            if not run_id or "in use" not in str(err):
                raise
            if attempt == 0:
                log.info(
                    "W&B run %s is still held by the interrupted process's W&B service; waiting for it to "
                    "let go (up to %.0f s).",
                    run_id,
                    attempts * wait_s,
                )
            if attempt < attempts - 1:
                time.sleep(wait_s)
    fresh = {k: v for k, v in kwargs.items() if k not in ("id", "resume")}
    run = init(**fresh)
    log.warning(
        "W&B run %s is still held by the interrupted process's W&B service (left running by a kill -9?): "
        "this resume logs to a new W&B run, %s; the training itself resumes from its checkpoint as usual.",
        run_id,
        getattr(run, "id", "?"),
    )
    return run


def finish(run, summary: dict | None = None, failed: bool = False) -> None:
    if run is None:
        return
    if summary:
        run.summary.update(summary)
    run.finish(exit_code=1 if failed else 0)
