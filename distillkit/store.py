"""The content-addressed cache: prepared teachers, trained tokenizers, teacher outputs, teacher responses,
augmented examples, and the one way each of them is found or built (``find_or_build``).

An entry's key is a hash of everything that determines it (a JSON-able dict), so a change to any of
those settings makes a new entry instead of silently reusing a stale one. Local files that determine an
entry (data files, local dataset directories) enter the key by content (``file_digest``), not by path, so
editing a file in place never reuses what was built from its old text. Entries are built in a temporary
sibling directory and renamed into place when complete: a crash mid-build never leaves an entry that
looks finished; and the entry's file lock lets one of several concurrent runs build an entry while the others
wait for it and reuse it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distillkit import dist
from distillkit.errors import ConfigError

FORMAT_VERSION = 2  # bump when what is stored, or how, changes (2: content-keyed files, hardware-free recipe)
DIGESTS_FILE = "file-digests.json"  # path → (size, mtime, sha256): a file is hashed once until it changes
PROGRESS_AFTER_S = 5.0  # a build still running after this long says so in the log, and then how long it took

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


class Declined(Exception):
    """Raised by a build that decides not to make its entry (what it computed does not fit the entry's format):
    nothing is stored, and ``find_or_build`` returns the reason (``Entry.problem``) instead of raising."""


@dataclass
class Entry:
    """What ``find_or_build`` found or made: the entry's directory; whether this process built it, in how many
    seconds, and what its build returned; or, when a build declined, why there is no entry."""

    path: Path
    built: bool = False
    seconds: float = 0.0
    value: Any = None
    problem: str | None = None  # set when the build declined: ``path`` does not exist


def find_or_build(
    root: Path, kind: str, spec: dict, build: Callable[[Path], Any], *, every_rank: bool = False
) -> Entry:
    """The entry for ``spec`` under ``root/kind/<entry_key(spec)>``: found, or made now by ``build(tmp)``, which
    fills the temporary directory ``tmp`` (``spec.json`` is added beside its files) that is then renamed into
    place. A build that raises leaves no entry and no temporary directory; one that raises ``Declined`` neither,
    and its reason comes back in ``Entry.problem``.

    Of several runs that need the same missing entry (the jobs of a sweep; the processes of a data-parallel run
    before they form a process group), the first to take the entry's lock builds it and the others wait, then
    reuse it. In a process group, rank 0 holds the lock: by default it builds alone while the other ranks wait
    at a barrier, then every rank reads the entry. With ``every_rank`` the build is collective: every rank
    calls ``build`` on the same temporary directory ``<kind>/.building-<key>`` (each writing its share, or
    rank 0 alone saving what all of them trained), the ranks agree whether every share succeeded, and rank 0
    renames it. A build still running after ``PROGRESS_AFTER_S`` says so in the log, and how long it took."""
    final = entry_dir(root, kind, spec)
    if every_rank:
        return _build_together(final, spec, build)
    builder = dist.is_main() or not dist.initialized()  # outside a process group every process is its own run
    entry = Entry(final)
    with locked(final) if builder else contextlib.nullcontext():
        if builder and not final.exists():
            entry = _build_alone(final, spec, build)
        dist.barrier()
    return entry


def _build_alone(final: Path, spec: dict, build) -> Entry:
    started = time.perf_counter()
    try:
        with _progress(final), _building(final) as tmp:
            value = build(tmp)
            write_spec(tmp, spec)
    except Declined as why:
        return Entry(final, problem=str(why))
    return Entry(final, built=True, seconds=time.perf_counter() - started, value=value)


def _build_together(final: Path, spec: dict, build) -> Entry:
    """``find_or_build`` with ``every_rank``; the process group (if any) exists already, so rank 0 alone locks."""
    main = dist.is_main()
    with locked(final) if main else contextlib.nullcontext():
        dist.barrier()
        if final.exists():
            return Entry(final)
        tmp = final.parent / f".building-{final.name}"
        if main:
            shutil.rmtree(tmp, ignore_errors=True)  # left by a run that died mid-build (we hold the lock)
            tmp.mkdir(parents=True)
        dist.barrier()
        value, problem, started = None, None, time.perf_counter()
        try:
            try:
                with _progress(final):
                    value = build(tmp)
            except Declined as why:
                problem = str(why)
            if not dist.agree(problem is None):
                problem = problem or "another process could not store its share"
            if main and problem is None:
                write_spec(tmp, spec)
                os.replace(tmp, final)
            dist.barrier()
        finally:
            if main:
                shutil.rmtree(tmp, ignore_errors=True)
    if problem is not None:
        return Entry(final, problem=problem)
    return Entry(final, built=True, seconds=time.perf_counter() - started, value=value)


@contextlib.contextmanager
def _progress(final: Path):
    """Log "building <kind> <key> ..." once the block has run ``PROGRESS_AFTER_S``, and then how long it took."""
    said = threading.Event()

    def say():
        said.set()
        log.info("building %s %s ...", final.parent.name, final.name)

    started = time.perf_counter()
    timer = threading.Timer(PROGRESS_AFTER_S, say)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        timer.join()
    if said.is_set():
        log.info("... built %s %s in %.0f s", final.parent.name, final.name, time.perf_counter() - started)


@contextlib.contextmanager
def _building(final: Path):
    """Yield a temporary directory to fill; on success it becomes ``final``, on failure it is removed. If another
    process finished ``final`` first, its copy wins."""
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


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary sibling renamed into place: a reader (or a run killed mid-write)
    sees the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_spec(directory: Path, spec: dict) -> None:
    (directory / "spec.json").write_text(json.dumps(spec, indent=2, sort_keys=True, default=str))


# ------------------------------------------------------------------ content digests of models and datasets
# the columns a model reads (as ``models.features.MODEL_INPUT_KEYS``; here so the store imports no higher layer)
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
