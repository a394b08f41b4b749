"""The W&B log line says why a run is offline: a real (offline) W&B run, whose service is a process of its own (the
report's rows and summary: tests/unit/test_report.py)."""

import logging

import pytest

from distillkit import tracking
from distillkit.config.schema import LoggerConfig


@pytest.mark.parametrize(
    "mode, env, reason",
    [
        ("offline", {}, "logger.mode=offline"),
        ("auto", {"WANDB_MODE": "offline"}, "WANDB_MODE=offline in the environment"),
        ("auto", {}, "no W&B credentials: WANDB_API_KEY is unset"),
    ],
)
def test_offline_message_says_why(tmp_path, monkeypatch, caplog, mode, env, reason):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))  # no `wandb login` here
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with caplog.at_level(logging.INFO, logger="distillkit.tracking"):
        run = tracking.start(LoggerConfig(mode=mode), tmp_path, "job", None, {"seed": 1})
        tracking.finish(run)
    offline = [r.getMessage() for r in caplog.records if r.getMessage().startswith("W&B is offline")]
    assert len(offline) == 1 and f"W&B is offline ({reason}" in offline[0]
    assert str(tmp_path) in offline[0] and "wandb sync" in offline[0]
    assert list((tmp_path / "wandb").glob("offline-run-*"))
