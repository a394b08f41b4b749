"""A frozen teacher sharded over the data-parallel processes (``hardware.shard_teacher=true``), for teachers too
large to replicate on every device.

torch's FSDP2 ``fully_shard`` splits every parameter of the teacher across the process group: each transformer
block (the classes the model lists in ``_no_split_modules``) becomes one unit whose weights are gathered just
before its forward and freed after it, then the root. The teacher stays frozen (no gradients, eval mode), so only
forward passes run, on every process in the same order: training steps (each process its own batch), and the
evaluations, which every process then runs together (rank 0 writes). The student stays data-parallel (DDP).
"""

from __future__ import annotations

import logging

import torch

log = logging.getLogger("distillkit")
_MARK = "_distillkit_sharded"


def is_sharded(model: torch.nn.Module | None) -> bool:
    return bool(model is not None and getattr(model, _MARK, False))


def shard_frozen(model: torch.nn.Module, device) -> torch.nn.Module:
    """Shard ``model`` in place over the default process group (once); returns it. The model's blocks are found by
    ``_no_split_modules`` (every transformers model declares it); without any, the whole model is one unit."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    if is_sharded(model):
        return model
    world = torch.distributed.get_world_size()
    mesh = init_device_mesh(torch.device(device).type, (world,))
    model.to(device).eval().requires_grad_(False)
    names = set(getattr(model, "_no_split_modules", None) or [])
    blocks = [m for m in model.modules() if type(m).__name__ in names]
    for block in blocks:
        fully_shard(block, mesh=mesh)
    fully_shard(model, mesh=mesh)
    setattr(model, _MARK, True)
    total = sum(p.numel() for p in model.parameters())
    local = sum(p.to_local().numel() if hasattr(p, "to_local") else p.numel() for p in model.parameters())
    log.info(
        "Teacher sharded with FSDP over %d processes (%d blocks + root): %s of its %s parameters on each process.",
        world,
        len(blocks),
        f"{local:,}",
        f"{total:,}",
    )
    return model
