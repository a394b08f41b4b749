"""Data-parallel runs from the one entry point: ``hardware.devices=N`` starts N workers itself.

The parent process (not yet inside a worker) hands the *resolved* configuration to torch's elastic
launcher, the engine behind torchrun, which starts N local workers with RANK/LOCAL_RANK/WORLD_SIZE set;
each re-enters ``run()`` with the same configuration. Under ``torchrun`` the environment is already
set, so the entry point runs the worker directly. The Trainer joins the process group (NCCL on GPUs,
gloo on CPUs); only rank 0 writes outputs. Each worker tears the group down after a barrier, since a
gloo group left to interpreter exit can abort the process.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid

log = logging.getLogger(__name__)


def inside_worker() -> bool:
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker(raw_cfg: dict, ctx_fields: dict) -> None:
    """One DDP worker: validate the resolved config again (cheap) and run it."""
    from distillkit.config import validate
    from distillkit.run import RunContext, run

    logging.basicConfig(level=logging.INFO if os.environ.get("RANK") == "0" else logging.WARNING,
                        format="[rank %(process)d] %(message)s" if os.environ.get("RANK") != "0" else "%(message)s")
    try:
        run(validate(raw_cfg), RunContext(**ctx_fields))
    finally:
        shutdown_process_group()


def shutdown_process_group() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        try:
            dist.barrier()
        finally:
            dist.destroy_process_group()


def spawn(raw_cfg: dict, ctx_fields: dict, nproc: int) -> None:
    """Start ``nproc`` workers on this node and wait for them; raise if any fails."""
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=nproc,
        run_id=f"distillkit-{uuid.uuid4().hex[:8]}",
        rdzv_backend="c10d",
        rdzv_endpoint=f"127.0.0.1:{_free_port()}",
        max_restarts=0,
        monitor_interval=1,
        start_method="spawn",
    )
    log.info("Starting %d data-parallel workers (torch elastic launcher, rendezvous %s)", nproc, config.rdzv_endpoint)
    # OMP threads per worker: split the cores so N workers do not oversubscribe the machine.
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    elastic_launch(config, worker)(raw_cfg, ctx_fields)
