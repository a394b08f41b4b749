"""The Trainer's checkpoints on disk: the latest one of a stage, the tensor shapes it holds, and whether it fits a
model (resume)."""

from __future__ import annotations

import logging
from pathlib import Path

from distillkit.models.loading import LAYER_KEY

log = logging.getLogger(__name__)


def last_checkpoint(directory: Path) -> str | None:
    """The newest complete ``checkpoint-N`` under ``directory`` (Trainer writes trainer_state.json last)."""
    found = [p for p in directory.glob("checkpoint-*") if (p / "trainer_state.json").exists()]
    if not found:
        return None
    return str(max(found, key=lambda p: int(p.name.split("-")[1])))


def saved_shapes(path: Path) -> dict[str, tuple] | None:
    """Parameter name → shape of the student saved at ``path`` (a Trainer checkpoint folder, or a finished
    stage's ``done/``), read without loading the weights where the format allows; None if there is none."""
    if (path / "model.safetensors").is_file():
        from safetensors import safe_open

        with safe_open(str(path / "model.safetensors"), "pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    if (path / "student.pt").is_file():
        import torch

        return {
            k: tuple(v.shape) for k, v in torch.load(path / "student.pt", map_location="cpu", weights_only=True).items()
        }
    return None


def checkpoint_mismatch(model, path: Path) -> str | None:
    """How the student saved at ``path`` differs from ``model`` (parameters it lacks or has extra, shapes), or
    None when it fits. The Trainer loads checkpoints non-strictly, so a resumed run whose config no longer
    describes its checkpoints would otherwise train a half-loaded model without a word."""
    saved = saved_shapes(path)
    if saved is None:
        return None
    own = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    extra = sorted(set(saved) - set(own))
    missing = sorted(k for k in set(own) - set(saved) if LAYER_KEY.search(k))  # tied heads may be left out
    shapes = sorted(k for k in set(own) & set(saved) if own[k] != saved[k])
    problems = [
        f"{label} {names[0]}" + (f" and {len(names) - 1} more" if len(names) > 1 else "")
        for label, names in (("has no", missing), ("has an unexpected", extra), ("has another shape for", shapes))
        if names
    ]
    if shapes:
        problems[-1] += f" ({saved[shapes[0]]} saved, {own[shapes[0]]} now)"
    return "; ".join(problems) or None
