"""Benchmark: what each augmentation option does for distillation on the embedded default, with the full training
set and with a tenth of it (augmentation should matter most when data is scarce).

    python scripts/bench_augment.py --work bench-aug --seeds 1,2,3                  # everything (hours on 2 cores)
    python scripts/bench_augment.py --work bench-aug --seeds 1,2,3 --only small_kd   # some groups
    python scripts/bench_augment.py --work bench-aug --report                       # re-print from finished runs

Each group is one distillkit sweep (its own directory under --work): kd alone and kd + each option (and kd alone
for 6 epochs: the optimizer steps of an offline option that doubles the training set); tinybert with
and without mlm_replace (TinyBERT's own recipe); ema_teacher (self-distillation, no teacher) with and without
synonym augmentation; sentence_shuffle on the multi-sentence mode. Groups named ``small_*`` use 10 % of the
training set (``data.max_train_samples=800``; the teacher is prepared on the same 800). Then

    python -m distillkit.compare WORK --group-by-seed          # a row per configuration (mean ± std)

is printed, with a table of each configuration's augmentation cost: the offline options' wall time (made once,
then read from the cache) and the training wall time per optimizer step against the group's plain run.
back_translation is not measured: no translation weights exist offline here. ``--quick`` shrinks everything to
seconds (the smoke test's setting).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

from bench_common import run_sweep

KD_OPTIONS = "none,synonym,token_perturbation,mlm_replace,teacher_pseudo_data,consistency,mixup,cutmix"
SMALL = ["data.max_train_samples=800"]
GROUPS = {
    "small_kd": ["method=kd", f"augmentation={KD_OPTIONS}", *SMALL],
    # the same optimizer steps as an offline option that doubles the data: 6 epochs instead of 3
    "small_kd_budget": ["method=kd", "augmentation=none", "train.epochs=6", *SMALL],
    # the online options with that longer budget too: do they need a student trained longer to pay?
    "small_online_6ep": ["method=kd", "augmentation=mixup,cutmix,consistency", "train.epochs=6", *SMALL],
    "small_tinybert": ["method=tinybert", "augmentation=none,mlm_replace", *SMALL],
    "small_self": ["method=ema_teacher", "teacher=none", "augmentation=none,synonym", *SMALL],
    "small_shuffle": [
        "method=kd",
        "augmentation=none,sentence_shuffle",
        "data.synthetic.sentences=3",
        "data.max_length=128",
        *SMALL,
    ],
    "small_shuffle_budget": [
        "method=kd",
        "augmentation=none",
        "train.epochs=6",
        "data.synthetic.sentences=3",
        "data.max_length=128",
        *SMALL,
    ],
    "full_kd": ["method=kd", f"augmentation={KD_OPTIONS}"],
    "full_kd_budget": ["method=kd", "augmentation=none", "train.epochs=6"],
    "full_online_6ep": ["method=kd", "augmentation=consistency,cutmix", "train.epochs=6"],
    "full_tinybert": ["method=tinybert", "augmentation=none,mlm_replace"],
    "full_self": ["method=ema_teacher", "teacher=none", "augmentation=none,synonym"],
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
    "train.epochs=1",
    "hardware.per_device_batch_size=16",
    "eval.repeats=1",
    "eval.latency_batches=2",
    "eval.throughput_batches=1",
]
QUICK_GROUPS = {"small_kd": ["method=kd", "augmentation=none,synonym,mixup", "data.max_train_samples=48"]}


# Accuracy is the figure here: the speed report runs once per job, briefly.
FAST_REPORT = ["eval.repeats=1", "eval.latency_batches=2", "eval.throughput_batches=1"]


def run_group(work: Path, name: str, seeds: str, quick: bool) -> float:
    args = (QUICK_GROUPS.get(name, GROUPS[name]) if quick else GROUPS[name]) + (QUICK if quick else FAST_REPORT)
    return run_sweep(work, name, args, seeds)


def _runs(work: Path) -> dict:
    """(group, method, augmentation) → list of results.json documents."""
    found: dict = {}
    for path in sorted(work.glob("*/*/results.json")):
        data = json.loads(path.read_text())
        aug = data.get("augmentation") or {}
        key = (path.parent.parent.name, data["run"]["method"], "+".join(aug.get("options") or []) or "none")
        found.setdefault(key, []).append(data)
    return found


def accuracy_table(work: Path) -> str:
    """Student accuracy per configuration (mean ± std over seeds), and its gain over the group's plain run."""
    runs = _runs(work)
    lines = ["group                 method       augmentation          seeds   accuracy          vs none    train ex."]
    for (group, method, aug), docs in sorted(runs.items()):
        accs = [d["student"]["accuracy"] for d in docs]
        base = runs.get((group, method, "none"))
        gain = (statistics.mean(accs) - statistics.mean(d["student"]["accuracy"] for d in base)) if base else None
        std = statistics.stdev(accs) if len(accs) > 1 else 0.0
        examples = docs[0]["stages"][-1]["train_examples"]
        lines.append(
            f"{group:<21} {method:<12} {aug:<21} {len(accs):>5}   {statistics.mean(accs):.4f} ± {std:.4f}"
            f"   {'' if gain is None else f'{gain:+.4f}':>7}   {examples:>8}"
        )
    return "\n".join(lines)


def cost_table(work: Path) -> str:
    """Offline augmentation wall time (when made, not read from the cache) and training ms/step against none."""
    runs = _runs(work)
    lines = ["group                 method       augmentation          made in s   ms/step   × none's ms/step"]

    def per_step(docs):
        values = []
        for d in docs:
            trained = [s for s in d["stages"] if not s.get("cached") and s["name"] != "teacher_prep"]
            steps = sum(s["steps"] for s in trained)
            if steps:
                values.append(sum(s["wall_time_s"] for s in trained) / steps * 1000)
        return statistics.median(values) if values else None

    for (group, method, aug), docs in sorted(runs.items()):
        made = [
            d["augmentation"].get("seconds")
            for d in docs
            if d.get("augmentation", {}).get("from_cache") and not all(d["augmentation"]["from_cache"].values())
        ]
        ms, base = per_step(docs), per_step(runs.get((group, method, "none"), []))
        ratio = f"{ms / base:.2f}" if ms and base else "-"
        made_s = f"{statistics.median(made):.1f}" if made else "-"
        lines.append(f"{group:<21} {method:<12} {aug:<21} {made_s:>9}   {ms or 0:>7.1f}   {ratio}")
    return "\n".join(lines)


def report(work: Path) -> None:
    print(f"\n$ python -m distillkit.compare {work} --group-by-seed", flush=True)
    subprocess.run([sys.executable, "-m", "distillkit.compare", str(work), "--group-by-seed", "--no-plot"], check=False)
    print("\nstudent accuracy per configuration (mean ± std over seeds; gain over the group's augmentation=none)")
    print(accuracy_table(work))
    print("\naugmentation cost (offline: wall time when made; training: ms per optimizer step)")
    print(cost_table(work))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--only", default=",".join(GROUPS), help="comma-separated groups: " + ", ".join(GROUPS))
    parser.add_argument("--quick", action="store_true", help="tiny settings: seconds, for the smoke test")
    parser.add_argument("--report", action="store_true", help="only print the tables from finished runs")
    args = parser.parse_args()
    if not args.report:
        for name in args.only.split(","):
            wall = run_group(args.work, name, args.seeds, args.quick)
            print(f"{name}: {wall:.0f} s", flush=True)
    report(args.work)


if __name__ == "__main__":
    main()
