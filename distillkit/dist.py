"""The process group as the rest of distillkit sees it: this process's rank, the world size, a barrier, and
agreement between processes. The only module that reads ``RANK`` / ``LOCAL_RANK`` / ``WORLD_SIZE``.

Every helper is a no-op (or answers for a single process) outside ``torch.distributed``, so the same code runs
in one process, under ``hardware.devices=N`` and under torchrun.
"""

from __future__ import annotations

import os


def rank() -> int:
    """This process's global rank (0 in a single-process run)."""
    return int(os.environ.get("RANK", 0))


def local_rank() -> int:
    """This process's rank on its machine: the GPU it drives."""
    return int(os.environ.get("LOCAL_RANK", 0))


def world_size(default: int = 1) -> int:
    """How many processes train together (``default`` before a launcher has said)."""
    return int(os.environ.get("WORLD_SIZE", default))


def is_main() -> bool:
    """Rank 0: the process that writes the run's files, the caches' entries and the report."""
    return rank() == 0


def in_worker() -> bool:
    """True inside a process that torch's elastic launcher (``hardware.devices=N``, torchrun) started."""
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ


def initialized() -> bool:
    import torch.distributed

    return torch.distributed.is_available() and torch.distributed.is_initialized()


def barrier() -> None:
    """Wait for every process (nothing to wait for outside a process group)."""
    if initialized():
        import torch.distributed

        torch.distributed.barrier()


def agree(flag: bool, device=None) -> bool:
    """True when ``flag`` is True on every process. The tensor goes on ``device``, by default the one the group's
    backend wants: this process's GPU under NCCL, else the CPU."""
    if not initialized():
        return flag
    import torch
    import torch.distributed

    if device is None:
        nccl = torch.distributed.get_backend() == "nccl"
        device = torch.device("cuda", local_rank()) if nccl else torch.device("cpu")
    t = torch.tensor([0.0 if flag else 1.0], device=device)
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
    return t.item() == 0.0
