"""Causal-LM distillation (task=causal_lm) on the embedded instruction task, measured. Prints figures; asserts nothing.

    python scripts/bench_llm.py quality [--seeds 1 2 3]   # sft, forward_kl, reverse_kl, gkd, minillm, seq_kd: a sweep
    python scripts/bench_llm.py topk                      # the teacher top-k cache: a second epoch, a second run
    python scripts/bench_llm.py report                    # the quality table again, from every quality* sweep
    python scripts/bench_llm.py all

``quality`` runs ``python -m distillkit -m task=causal_lm method=<all six> seed=<seeds>`` (the teacher prepared
once, under --work/cache) and prints per method the mean ± std over seeds of the student's exact match, ROUGE-L
and perplexity, its retention of the teacher's exact match, the distill stage's wall time and its cost per
optimizer step (ms), each as docs/benchmarks.md reports them. ``topk`` runs forward_kl for two epochs with the teacher
online (teacher.cache_outputs=never), then twice with the cache (the first run builds it, the second reads it), and
prints the distill stage's time and ms/step of each. ``--override`` adds config overrides to every run (the smoke
test uses tiny settings); ``--methods`` and ``--name`` run part of the quality sweep into its own folder, and
``report`` prints the table from them all, a row per method and the ``method.*`` settings its sweep overrode:

    python scripts/bench_llm.py quality --methods reverse_kl gkd --name quality-ntp --override method.ntp_weight=0.5
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import run_sweep  # noqa: E402 (after the sys.path set-up above)
from benchmark import distillkit  # noqa: E402 (after the sys.path set-up above)

METHODS = ("sft", "forward_kl", "reverse_kl", "gkd", "minillm", "seq_kd")


def _results(folder: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*/results.json"))]


def _mean(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def quality(work: Path, seeds: list[int], overrides: list[str], methods=METHODS, name: str = "quality") -> None:
    wall = run_sweep(
        work, name, ["task=causal_lm", f"method={','.join(methods)}", *overrides], ",".join(map(str, seeds))
    )
    print(f"\nquality sweep {name}: {wall:.0f} s")
    report(work)


def _label(result: dict) -> str:
    """The method and the method settings its sweep overrode (``--override method.ntp_weight=0.5``): a row each."""
    extra = [o.split(".", 1)[1] for o in result["run"]["overrides"] if o.startswith("method.")]
    return " ".join([result["run"]["method"], *extra])


def report(work: Path) -> None:
    """The quality table from every quality sweep under ``work`` (quality, quality-*)."""
    runs = [r for folder in sorted(work.glob("quality*")) for r in _results(folder)]
    teacher = runs[0]["teacher"]
    print(
        f"\nquality: {len(runs)} runs; teacher exact match {teacher['exact_match']:.4f}, ROUGE-L "
        f"{teacher['rouge_l']:.4f}, perplexity {teacher['perplexity']:.3f}, {teacher['params']:,} parameters"
    )
    labels = sorted({_label(r) for r in runs}, key=lambda label: (METHODS.index(label.split()[0]), label))
    w = max(11, *map(len, labels))
    print(
        f"{'method':<{w}} {'exact match':>17} {'ROUGE-L':>17} {'perplexity':>17} {'retention %':>12} "
        f"{'distill s':>10} {'ms/step':>8}  n"
    )
    for label in labels:
        rows = [r for r in runs if _label(r) == label]
        s = [r["student"] for r in rows]
        distill = [r["stages"][-1] for r in rows]
        ms = [1000 * d["wall_time_s"] / max(1, d["steps"]) for d in distill]
        print(
            f"{label:<{w}} {_mean([x['exact_match'] for x in s]):>17} {_mean([x['rouge_l'] for x in s]):>17} "
            f"{_mean([x['perplexity'] for x in s]):>17} "
            f"{statistics.mean(r['comparison']['retention'] for r in rows) * 100:>12.1f} "
            f"{statistics.mean(d['wall_time_s'] for d in distill):>10.1f} {statistics.mean(ms):>8.1f}  {len(rows)}"
        )


def topk(work: Path, overrides: list[str]) -> None:
    cache = work / "topk-cache"
    base = ["task=causal_lm", "method=forward_kl", "logger=none", f"cache_dir={cache}", "train.epochs=2", *overrides]
    rows = []
    for name, extra in (
        ("online", ["teacher.cache_outputs=never"]),
        ("cached, first run (builds)", []),
        ("cached, second run (reads)", []),
    ):
        folder = f"topk-{len(rows)}"
        distillkit(base + extra + [f"hydra.run.dir={folder}"], work)
        res = json.loads((work / folder / "results.json").read_text())
        stage = res["stages"][-1]
        record = stage.get("teacher_cache") or {}
        rows.append(
            (
                name,
                stage["wall_time_s"],
                1000 * stage["wall_time_s"] / max(1, stage["steps"]),
                record.get("build_s", 0.0),
                record.get("size_bytes", 0),
                res["student"]["exact_match"],
            )
        )
    print("\ntopk: forward_kl, 2 epochs, teacher.cache_topk (default 64)")
    print(f"{'run':<28} {'distill s':>10} {'ms/step':>8} {'build s':>8} {'entry MB':>9} {'student EM':>11}")
    for name, wall, ms, build, size, em in rows:
        print(f"{name:<28} {wall:>10.1f} {ms:>8.1f} {build:>8.1f} {size / 1e6:>9.2f} {em:>11.4f}")
    online, built, read = rows
    print(f"second run vs online: {online[1] / read[1]:.2f}x faster (distill stage); the build took {built[3]:.1f} s")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("part", choices=["quality", "topk", "report", "all"])
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument("--name", default="quality", help="the quality sweep's folder under --work (quality*)")
    p.add_argument("--work", type=Path, default=Path("outputs/bench_llm"))
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--override", nargs="*", default=[], help="config overrides for every run")
    args = p.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    if args.part in ("quality", "all"):
        quality(args.work.resolve(), args.seeds, args.override, args.methods, args.name)
    if args.part == "report":
        report(args.work.resolve())
    if args.part in ("topk", "all"):
        topk(args.work.resolve(), args.override)


if __name__ == "__main__":
    main()
