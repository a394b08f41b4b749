"""A content-addressed cache for prepared teachers and trained tokenizers.

An entry's key is a hash of everything that determines it (a JSON-able dict), so a change to any of
those settings makes a new entry instead of silently reusing a stale one. Local files that determine an
entry (data files, local dataset directories) enter the key by content (``file_digest``), not by path, so
editing a file in place never reuses what was built from its old text. Entries are built in a temporary
sibling directory and renamed into place when complete: a crash mid-build never leaves an entry that
looks finished; and ``locked`` lets one of several concurrent runs build an entry while the others wait
for it and reuse it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from pathlib import Path

from distillkit.errors import ConfigError

FORMAT_VERSION = 2  # bump when what is stored, or how, changes (2: content-keyed files, hardware-free recipe)
DIGESTS_FILE = "file-digests.json"  # path → (size, mtime, sha256): a file is hashed once until it changes

log = logging.getLogger("distillkit")


def cache_root(configured: str | None) -> Path:
    root = configured or os.environ.get("DISTILLKIT_CACHE") or Path.home() / ".cache" / "distillkit"
    return Path(root).expanduser().resolve()


def usable_root(configured: str | None) -> Path:
    """``cache_root``, created and checked writable; else a ConfigError naming ``cache_dir``."""
    root = cache_root(configured)
    key = "cache_dir" if configured else "cache_dir (default, or $DISTILLKIT_CACHE)"
    fix = "set cache_dir=<a writable directory> (or DISTILLKIT_CACHE)."
    if root.exists() and not root.is_dir():
        raise ConfigError(key, str(root), "is a file, not a directory.", fix)
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / f".write-test-{uuid.uuid4().hex[:8]}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as err:
        raise ConfigError(key, str(root), f"cannot be used as the cache ({err.strerror or err}).", fix) from None
    return root


def entry_key(spec: dict) -> str:
    blob = json.dumps({"format": FORMAT_VERSION, **spec}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def entry_dir(root: Path, kind: str, spec: dict) -> Path:
    """Where the entry for ``spec`` lives (complete when the directory exists)."""
    return root / kind / entry_key(spec)


@contextlib.contextmanager
def building(final: Path):
    """Yield a temporary directory to fill; on success it becomes ``final`` (with a spec.json beside the
    contents), on failure it is removed. If another process finished ``final`` first, its copy wins."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".tmp-{final.name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
        if final.exists():
            shutil.rmtree(tmp)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextlib.contextmanager
def locked(final: Path):
    """Hold an exclusive lock on the entry ``final`` (a ``<name>.lock`` file beside it) while checking for it and
    building it: of several runs that need the same missing entry, one builds it and the others wait, then
    find it complete. The lock is released when the holder exits, however it exits (the OS drops it)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    with open(final.parent / f"{final.name}.lock", "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("Waiting for another run that is building %s ...", final)
            started = time.time()
            fcntl.flock(handle, fcntl.LOCK_EX)
            log.info("... done after %.0f s", time.time() - started)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def file_digest(root: Path, path: str | os.PathLike) -> str:
    """sha256 of a file's content, remembered in ``root/file-digests.json`` by (path, size, mtime): a file is
    read again only when it changed. A directory's digest covers every file below it (names and contents)."""
    path = Path(path).expanduser().resolve()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    memo_path = root / DIGESTS_FILE
    try:
        memo = json.loads(memo_path.read_text())
    except (OSError, ValueError):
        memo = {}
    combined, changed = hashlib.sha256(), False
    for f in files:
        stat = f.stat()
        stamp = [stat.st_size, stat.st_mtime_ns]
        known = memo.get(str(f))
        if not known or known[:2] != stamp:
            digest = hashlib.sha256()
            with open(f, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
            known, changed = stamp + [digest.hexdigest()], True
            memo[str(f)] = known
        combined.update(f"{f.relative_to(path) if path.is_dir() else f.name}:{known[2]};".encode())
    if changed:
        tmp = memo_path.with_name(f".{DIGESTS_FILE}.{uuid.uuid4().hex[:8]}")
        tmp.write_text(json.dumps(memo))
        os.replace(tmp, memo_path)
    return combined.hexdigest()


def write_spec(directory: Path, spec: dict) -> None:
    (directory / "spec.json").write_text(json.dumps(spec, indent=2, sort_keys=True, default=str))


# ------------------------------------------------------------------ content digests of models and datasets
# the columns a model reads (the same as ``models.features.MODEL_INPUT_KEYS``, kept here so the store stays the lowest layer)
MODEL_INPUT_KEYS = ("input_ids", "attention_mask", "token_type_ids", "position_ids")


def weights_digest(model) -> str:
    """sha256 of a model's state: every tensor's name, dtype, shape and bytes."""
    import torch

    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        t = tensor.detach().contiguous().cpu()
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def arrow_column(data, name: str):
    """One column of a ``datasets.Dataset`` as a single arrow array, in the dataset's row order (a selection or
    shuffle keeps an index mapping over the table, which ``with_format("arrow")`` applies)."""
    import pyarrow as pa

    arr = data.with_format("arrow")[name]
    return pa.concat_arrays(arr.chunks) if isinstance(arr, pa.ChunkedArray) else arr


def data_digest(data) -> str:
    """sha256 of the model-input columns of a tokenised dataset, row by row (lengths and values)."""
    import numpy as np

    digest = hashlib.sha256()
    for column in [c for c in MODEL_INPUT_KEYS if c in data.column_names]:
        arr = arrow_column(data, column)
        lengths = np.diff(np.asarray(arr.offsets))
        digest.update(f"{column};".encode())
        digest.update(lengths.astype(np.int64).tobytes())
        digest.update(np.asarray(arr.flatten()).astype(np.int64).tobytes())
    digest.update(f"rows:{len(data)}".encode())
    return digest.hexdigest()
