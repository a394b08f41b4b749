"""A content-addressed cache for prepared teachers and trained tokenizers.

An entry's key is a hash of everything that determines it (a JSON-able dict), so a change to any of
those settings makes a new entry instead of silently reusing a stale one. Entries are built in a
temporary sibling directory and renamed into place when complete: a crash mid-build never leaves an
entry that looks finished.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path

FORMAT_VERSION = 1  # bump when what is stored, or how, changes


def cache_root(configured: str | None) -> Path:
    root = configured or os.environ.get("DISTILLKIT_CACHE") or Path.home() / ".cache" / "distillkit"
    return Path(root).expanduser().resolve()


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


def write_spec(directory: Path, spec: dict) -> None:
    (directory / "spec.json").write_text(json.dumps(spec, indent=2, sort_keys=True, default=str))
