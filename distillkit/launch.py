"""Data-parallel runs from the one entry point: ``hardware.devices=N`` starts N workers itself.

The parent process (not yet inside a worker) hands the *resolved* configuration to torch's elastic
launcher, the engine behind torchrun, which starts N local workers with RANK/LOCAL_RANK/WORLD_SIZE set;
each re-enters ``run()`` with the same configuration. Under ``torchrun`` the environment is already
set, so the entry point runs the worker directly. The Trainer joins the process group (NCCL on GPUs,
gloo on CPUs); only rank 0 writes outputs. Each worker tears the group down after a barrier, since a
gloo group left to interpreter exit can abort the process.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import uuid
from pathlib import Path

from distillkit import dist
from distillkit.errors import ConfigError, TrainingDiverged

WORKER_ERROR = ".worker-error.json"  # rank 0's ConfigError / TrainingDiverged, for the parent to report

log = logging.getLogger(__name__)


def inside_worker() -> bool:
    return dist.in_worker()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker(raw_cfg: dict, ctx_fields: dict) -> None:
    """One DDP worker: validate the resolved config again (cheap) and run it."""
    from distillkit.config.schema import validate
    from distillkit.run import RunContext, run

    logging.basicConfig(
        level=logging.INFO if dist.is_main() else logging.WARNING,
        format="[rank %(process)d] %(message)s" if not dist.is_main() else "%(message)s",
    )
    try:
        run(validate(raw_cfg), RunContext(**ctx_fields))
    except (ConfigError, TrainingDiverged) as err:  # handed to the parent, which reports it as in one process
        if dist.is_main():
            fields = vars(err) if isinstance(err, ConfigError) else {"message": str(err)}
            _error_file(ctx_fields).write_text(json.dumps({"type": type(err).__name__, **fields}, default=str))
        raise
    finally:
        shutdown_process_group()


def _error_file(ctx_fields: dict) -> Path:
    return Path(ctx_fields["output_dir"]) / WORKER_ERROR


def _reraise_worker_error(ctx_fields: dict) -> None:
    """Raise the ConfigError / TrainingDiverged a worker recorded, so the CLI reports it with its own message
    and exit status instead of torch's ChildFailedError traceback."""
    path = _error_file(ctx_fields)
    if not path.is_file():
        return
    data = json.loads(path.read_text())
    path.unlink()
    if data.pop("type") == "ConfigError":
        raise ConfigError(data["key"], data["value"], data["problem"], data["fix"])
    raise TrainingDiverged(data["message"])


def shutdown_process_group() -> None:
    import torch.distributed

    if dist.initialized():
        try:
            dist.barrier()
        finally:
            torch.distributed.destroy_process_group()


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
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    _error_file(ctx_fields).unlink(missing_ok=True)
    try:
        elastic_launch(config, worker)(raw_cfg, ctx_fields)
    except ChildFailedError:
        _reraise_worker_error(ctx_fields)
        raise
