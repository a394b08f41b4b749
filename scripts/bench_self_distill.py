"""Benchmark: self-distillation and teacher chains on the embedded default, several seeds, one table.

    python scripts/bench_self_distill.py --work bench-self --seeds 1,2,3        # all (about 40 min, 2 cores)
    python scripts/bench_self_distill.py --work bench-self --only takd,baseline # some groups
    python scripts/bench_self_distill.py --work bench-self --report             # re-print from finished runs

Each group is one distillkit sweep over the seeds (its own directory under --work); then

    python -m distillkit.compare WORK --group-by-seed              # a row per method (mean ± std)
    python -m distillkit.compare WORK --group-by-seed --stages     # a row per generation / round / link

are printed, and a table of each method's training cost: wall time per optimizer step against kd's.
The comparisons the issue asks for: born-again generations 0..3 and the BAN ensemble against `none`;
self_kd, snapshot_ensemble, ema_teacher against `none` (same budget); noisy_student against kd; TAKD 12 → 6 → 2
against kd 12 → 2 (student=bert-2l). ``--quick`` shrinks everything to seconds (the smoke test's setting).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

from bench_common import run_sweep

GROUPS = {
    "baseline": ["method=none,kd"],
    "born_again": ["method=born_again", "method.final=ensemble"],
    "self": ["method=self_kd,snapshot_ensemble,ema_teacher"],
    "noisy_student": ["method=noisy_student"],
    "takd": ["method=takd", "student=bert-2l", "method.assistants=[6]"],
    "baseline_2l": ["method=none,kd", "student=bert-2l"],
}
QUICK = [
    "data.synthetic.n_train=96",
    "data.synthetic.n_eval=32",
    "data.max_length=32",
    "teacher.arch.num_layers=4",
    "teacher.arch.hidden_size=32",
    "teacher.arch.num_heads=2",
    "teacher.arch.intermediate_size=64",
    "teacher.arch.vocab_size=300",
    "teacher.prepare_epochs=1",
    "train.epochs=2",
    "hardware.per_device_batch_size=16",
    "eval.repeats=1",
    "eval.latency_batches=2",
    "eval.throughput_batches=1",
]
QUICK_GROUPS = {
    "takd": ["method=takd", "student=bert-2l", "method.assistants=[3]"],
    "born_again": ["method=born_again", "method.final=ensemble", "method.generations=1"],
}


def run_group(work: Path, name: str, seeds: str, quick: bool) -> float:
    args = (QUICK_GROUPS.get(name, GROUPS[name]) if quick else GROUPS[name]) + (QUICK if quick else [])
    return run_sweep(work, name, args, seeds)


def step_costs(work: Path) -> str:
    """Wall time per optimizer step of each method's training stages (teacher preparation excluded), against kd."""
    per_method: dict[tuple[str, str], list[float]] = {}
    for path in sorted(work.glob("*/*/results.json")):
        data = json.loads(path.read_text())
        trained = [s for s in data["stages"] if not s.get("cached") and s["name"] != "teacher_prep"]
        steps = sum(s["steps"] for s in trained)
        if steps:
            key = (data["run"]["method"], data["run"]["student"])
            per_method.setdefault(key, []).append((sum(s["wall_time_s"] for s in trained), steps))
    lines = ["method              student   steps/run   wall s/run   ms/step   × kd's ms/step (same student)"]
    kd = {
        student: statistics.median(w / s * 1000 for w, s in runs)
        for (method, student), runs in per_method.items()
        if method == "kd"
    }
    for (method, student), runs in sorted(per_method.items()):
        ms = statistics.median(w / s * 1000 for w, s in runs)
        ratio = f"{ms / kd[student]:.2f}" if student in kd else "-"
        lines.append(
            f"{method:<19} {student:<9} {statistics.median(s for _, s in runs):>9.0f}   "
            f"{statistics.median(w for w, _ in runs):>10.1f}   {ms:>7.1f}   {ratio}"
        )
    return "\n".join(lines)


def report(work: Path) -> None:
    for extra in ([], ["--stages"]):
        print(f"\n$ python -m distillkit.compare {work} --group-by-seed {' '.join(extra)}".rstrip(), flush=True)
        subprocess.run(
            [sys.executable, "-m", "distillkit.compare", str(work), "--group-by-seed", "--no-plot", *extra], check=True
        )
    print("\ntraining cost per optimizer step (wall time of the training stages / their steps; median over seeds):")
    print(step_costs(work))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, default=Path("bench-self"))
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--only", default=",".join(GROUPS), help=f"groups: {', '.join(GROUPS)}")
    parser.add_argument("--report", action="store_true", help="only print the tables from finished runs")
    parser.add_argument("--quick", action="store_true", help="tiny models and data (the smoke test)")
    args = parser.parse_args(argv)
    args.work = args.work.resolve()
    if not args.report:
        for name in args.only.split(","):
            print(f"[{name}] {run_group(args.work, name, args.seeds, args.quick):.0f} s", flush=True)
    report(args.work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
