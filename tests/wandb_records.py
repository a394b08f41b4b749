"""Read the records of an offline W&B run file (run-<id>.wandb), to check what a run logged.

The file is a 7-byte header (":W&B", magic 0xBEE1, version 0) followed by a LevelDB-style log: 32 KiB
blocks of chunks, each with a 7-byte header (crc32c, little-endian length, type: 1 full, 2 first,
3 middle, 4 last) around a serialised ``wandb_internal_pb2.Record``. wandb 0.31 ships no reader.
"""

from __future__ import annotations

import struct
import time
from pathlib import Path

BLOCK = 32 * 1024
FILE_HEADER = 7
CHUNK_HEADER = 7


def _payloads(data: bytes):
    assert data[:4] == b":W&B", "not a W&B run file"
    pos, pending = FILE_HEADER, b""
    while pos + CHUNK_HEADER <= len(data):
        left_in_block = BLOCK - pos % BLOCK
        if left_in_block < CHUNK_HEADER:  # block trailer padding
            pos += left_in_block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + CHUNK_HEADER])
        if kind == 0 and length == 0:
            break
        chunk = data[pos + CHUNK_HEADER : pos + CHUNK_HEADER + length]
        pos += CHUNK_HEADER + length
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):
            yield pending
            pending = b""


def read_run(run_dir: Path) -> dict:
    """{"group", "name", "config": {key: json}, "history_keys": set, "summary": {key: json}, "exited": bool} of one
    run; ``exited``: the file holds the run's exit record (its last)."""
    from wandb.proto import wandb_internal_pb2 as pb

    path = next(Path(run_dir).glob("run-*.wandb"))
    out = {"group": None, "name": None, "config": {}, "history_keys": set(), "summary": {}, "exited": False}
    for payload in _payloads(path.read_bytes()):
        record = pb.Record()
        record.ParseFromString(payload)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            out["group"], out["name"] = record.run.run_group, record.run.display_name
            out["config"].update({i.key: i.value_json for i in record.run.config.update})
        elif kind == "config":
            out["config"].update({i.key: i.value_json for i in record.config.update})
        elif kind == "history":
            out["history_keys"] |= {i.key or "/".join(i.nested_key) for i in record.history.item}
        elif kind == "summary":
            out["summary"].update({(i.key or "/".join(i.nested_key)): i.value_json for i in record.summary.update})
        elif kind == "exit":
            out["exited"] = True
    return out


def read_finished_run(run_dir: Path, timeout: float = 60.0) -> dict:
    """``read_run`` once the file holds the exit record. An in-process run's last records (history, summary, exit)
    are written by W&B's service process after ``run.finish()`` returns: on a busy machine, seconds later."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            run = read_run(run_dir)
        except Exception:  # noqa: BLE001 (the file is missing or ends in a half-written chunk: read again)
            run = None
        if run is not None and run["exited"]:
            return run
        time.sleep(0.1)
    return read_run(run_dir)
