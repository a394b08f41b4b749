"""Check that a change kept every measured figure: run a fixed set of distillkit jobs at one seed, keep the quality
figures of each ``results.json`` (accuracy, perplexity, exact match, agreement, losses, steps; timings, paths and
dates aside) and the cache keys the runs made, and compare two such records exactly.

    python scripts/check_figures.py record before.json            # on the old commit
    python scripts/check_figures.py record after.json             # on the new one
    python scripts/check_figures.py compare before.json after.json

``record`` runs each job in a subprocess (``python -m distillkit ...``: the command line is the interface, so the
script works on any commit) with its own fresh cache, so the teacher preparation is checked too. The jobs are small
versions of the embedded defaults of both tasks (a sample of methods, augmentation included); ``--full`` adds the
README's first command at full size. ``compare`` prints every figure that differs and exits 1 if any does.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SMALL_CLS = ["data.synthetic.n_train=2000", "data.synthetic.n_eval=200", "teacher.prepare_epochs=3", "train.epochs=1"]
SMALL_LM = [
    "task=causal_lm",
    "data.lm_synthetic.n_train=1500",
    "data.lm_synthetic.n_eval=40",
    "teacher.prepare_epochs=2",
    "train.epochs=1",
    "task.eval_generations=40",
]
QUICK_EVAL = ["eval.repeats=1", "eval.warmup=0", "eval.latency_batches=2", "eval.throughput_batches=1"]

JOBS: dict[str, list[str]] = {
    "kd": SMALL_CLS + ["method=kd"],
    "tinybert": SMALL_CLS + ["method=tinybert"],
    "born_again": SMALL_CLS + ["method=born_again"],
    "mixup": SMALL_CLS + ["method=kd", "augmentation=mixup"],
    "forward_kl": SMALL_LM + ["method=forward_kl"],
    "gkd": SMALL_LM + ["method=gkd"],
}
FULL = {"default": []}

# keys whose values are timings, places or dates: they differ between any two runs
# (a cache entry's size_bytes counts its metadata file, which records build timings: it varies by a byte or two)
VOLATILE = re.compile(
    r"(_s$|_ms$|_ms_|per_s|time|started_at|finished_at|output_dir|cache_dir|^entry$|latency|"
    r"throughput|speed|clock|threads|device|flos|size_bytes)",
    re.I,
)


def flatten(value, prefix: str = "") -> dict:
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            out.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    if isinstance(value, list):
        out = {}
        for i, item in enumerate(value):
            out.update(flatten(item, f"{prefix}[{i}]"))
        return out
    return {prefix: value}


def _kept(flat: dict) -> dict:
    """The entries of a flattened results.json that are quality figures (applied again when comparing, so a record
    made before a key joined VOLATILE compares alike)."""
    return {
        key: value
        for key, value in flat.items()
        if not VOLATILE.search(key.rsplit(".", 1)[-1]) and not key.startswith(("run.", "artifacts", "speed."))
    }


def figures(results: dict) -> dict:
    """The quality figures of one results.json: every scalar that is not a timing, a path or a date."""
    return _kept(flatten(results))


def cache_keys(cache: Path) -> list[str]:
    """The content-addressed entries a run made: ``<kind>/<key>`` for every directory two levels down."""
    if not cache.exists():
        return []
    return sorted(
        f"{kind.name}/{entry.name}"
        for kind in cache.iterdir()
        if kind.is_dir()
        for entry in kind.iterdir()
        if not entry.name.startswith(".")
    )


def run_job(name: str, overrides: list[str], work: Path, quick: bool) -> dict:
    out, cache = work / name, work / f"cache-{name}"
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "WANDB_MODE": "offline",
        "TOKENIZERS_PARALLELISM": "false",
        "DISTILLKIT_CACHE": str(cache),
    }
    cmd = [
        sys.executable,
        "-m",
        "distillkit",
        *overrides,
        *(QUICK_EVAL if quick else []),
        "logger=none",
        f"hydra.run.dir={out}",
    ]
    started = time.time()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed (exit {proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    results = json.loads((out / "results.json").read_text())
    print(f"{name}: {time.time() - started:.0f} s", flush=True)
    return {"overrides": overrides, "figures": figures(results), "cache": cache_keys(cache)}


def record(path: Path, full: bool, only: list[str] | None) -> None:
    jobs = {**JOBS, **(FULL if full else {})}
    if only:
        jobs = {k: v for k, v in jobs.items() if k in only}
    with tempfile.TemporaryDirectory(prefix="check-figures-") as tmp:
        doc = {name: run_job(name, overrides, Path(tmp), quick=name not in FULL) for name, overrides in jobs.items()}
    path.write_text(json.dumps(doc, indent=1, sort_keys=True, default=str) + "\n")
    print(f"recorded {len(doc)} runs in {path}")


def compare(before: Path, after: Path) -> int:
    a, b = json.loads(before.read_text()), json.loads(after.read_text())
    differences, checked = [], 0
    for name in sorted(set(a) | set(b)):
        if name not in a or name not in b:
            differences.append(f"{name}: only in {'after' if name not in a else 'before'}")
            continue
        fa, fb = (_kept(a[name]["figures"]), _kept(b[name]["figures"]))
        for key in sorted(set(fa) | set(fb)):
            checked += 1
            if fa.get(key, "<absent>") != fb.get(key, "<absent>"):
                differences.append(f"{name}: {key}: {fa.get(key, '<absent>')!r} -> {fb.get(key, '<absent>')!r}")
        if a[name]["cache"] != b[name]["cache"]:
            differences.append(f"{name}: cache keys {a[name]['cache']} -> {b[name]['cache']}")
    for line in differences:
        print(line)
    print(
        f"{len(set(a) & set(b))} runs, {checked} figures compared, cache keys compared: "
        f"{'identical' if not differences else f'{len(differences)} differences'}"
    )
    return 1 if differences else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="verb", required=True)
    rec = sub.add_parser("record", help="run the jobs and write their figures")
    rec.add_argument("path", type=Path)
    rec.add_argument("--full", action="store_true", help="also the README's first command at full size (~7 min)")
    rec.add_argument("--only", nargs="*", help="run only these jobs (names as in JOBS)")
    cmp = sub.add_parser("compare", help="compare two records exactly")
    cmp.add_argument("before", type=Path)
    cmp.add_argument("after", type=Path)
    args = parser.parse_args(argv)
    if args.verb == "record":
        record(args.path, args.full, args.only)
        return 0
    return compare(args.before, args.after)


if __name__ == "__main__":
    sys.exit(main())
