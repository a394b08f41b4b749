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

from distillkit.config import LoggerConfig

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


def _has_credentials() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        return "api.wandb.ai" in netrc.read_text()
    except OSError:
        return False


def resolve_mode(cfg: LoggerConfig) -> str:
    """online | offline | disabled. ``auto`` (and WANDB_MODE, when set) never leads to a login prompt."""
    if cfg.mode != "auto":
        return cfg.mode
    env = os.environ.get("WANDB_MODE", "").lower()
    if env in ("offline", "disabled", "dryrun"):
        return "offline" if env == "dryrun" else env
    return "online" if _has_credentials() else "offline"


def start(cfg: LoggerConfig, output_dir: Path, name: str, group: str | None, config: dict):
    """A W&B run, or None for logger=none."""
    if cfg.name == "none":
        return None
    import wandb

    mode = resolve_mode(cfg)
    if mode == "online" and not _has_credentials():
        log.warning("logger.mode=online but no W&B credentials were found: wandb may ask to log in.")
    run = wandb.init(project=cfg.project, entity=cfg.entity, group=cfg.group or group, name=name,
                     tags=list(cfg.tags) or None, config=config, dir=str(output_dir), mode=mode,
                     settings=wandb.Settings(console="off", quiet=True))
    if mode == "offline":
        log.info("W&B is offline (no credentials found). Run files: %s. Upload later with: wandb sync %s",
                 run.dir, Path(run.dir).parent)
    return run


def finish(run, summary: dict | None = None, failed: bool = False) -> None:
    if run is None:
        return
    if summary:
        run.summary.update(summary)
    run.finish(exit_code=1 if failed else 0)
