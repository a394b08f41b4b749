"""The teacher-output cache (distillkit/teachers/output_cache.py), measured. Prints figures; asserts nothing.

    python scripts/bench_cache.py steps     # ms/step: method=none, kd online, kd cached (warm), a hand-written kd loop
    python scripts/bench_cache.py sweep     # -m method.temperature=1,2,4,8: wall time without and with the cache
    python scripts/bench_cache.py size      # the entry's disk size: the embedded default, a 67k-example 2-class task
    python scripts/bench_cache.py profile   # torch.profiler over kd steps (online, cached): where a step's time goes
    python scripts/bench_cache.py all

The teacher is prepared once under --work/cache (by a default run, the first time). `steps` runs the stages
in-process on the same batches (same seed, length-grouped, one epoch = 250 steps by default), interleaved
``--repeats`` times, and reports the median of the stages' training wall time (the cache is built before the
timed runs: warm).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

from benchmark import distillkit, hand_kd_loop

EXTRA: list[str] = []  # --override: config overrides for every in-process stage


def setup(work: Path, overrides: list[str]):
    """The prepared teacher, the data, and a function that runs one in-process stage under extra overrides."""
    import torch
    from hydra import compose, initialize_config_dir
    from transformers import DataCollatorWithPadding

    from distillkit import conf_dir
    from distillkit.config.schema import register_schemas, validate
    from distillkit.models import loading as models
    from distillkit.plan import make_plan
    from distillkit.stages.runner import run_stage
    from distillkit.stages.workspace import Workspace
    from distillkit.tasks.classification.data import tokenize

    cache = work / "cache"
    if not (cache / "teachers").exists():
        print("preparing the teacher (a default run) ...", flush=True)
        distillkit(["logger=none", f"cache_dir={cache}", "hydra.run.dir=prepare", *EXTRA], work)
    register_schemas()
    torch.set_num_threads(os.cpu_count() or 1)

    def config(extra):
        with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
            return validate(compose("config", [f"cache_dir={cache}", "logger=none", *EXTRA, *overrides, *extra]))

    cfg = config([])
    plan = make_plan(cfg)
    teacher = models.load_pretrained(
        "teacher",
        str(next(p for p in (cache / "teachers").iterdir() if p.is_dir())),
        None,
        model_class=plan.kind.model_class(),
        **plan.kind.load_kwargs,
    ).eval()
    train_set, _ = tokenize(plan.task, plan.tokenizer, cfg.data.max_length)
    collator = DataCollatorWithPadding(plan.tokenizer)
    identity = cfg.teacher.arch.identity_attention_layers

    def stage(extra: list[str], name: str) -> dict:
        run_cfg = config(extra)
        run_plan = make_plan(run_cfg)
        s = run_plan.method_stages[-1]
        ws = Workspace(run_cfg, run_plan, work / name, train_set, None, collator)
        ws.models["teacher"] = teacher
        ws.models[s.student.model] = models.derive_student(
            teacher,
            run_plan.student_config,
            run_plan.student_layers,
            run_cfg.seed,
            identity,
            model_class=run_plan.kind.model_class(),
        )
        return run_stage(s, ws)

    return cfg, plan, teacher, train_set, collator, stage


def bench_steps(work: Path, steps: int, repeats: int) -> None:
    common = [f"train.max_steps={steps}", f"train.save_steps={steps * 10}", f"train.logging_steps={steps}"]
    cfg, plan, teacher, train_set, collator, stage = setup(work, common)
    kinds = {
        "none": ["method=none"],
        "kd online": ["teacher.cache_outputs=never"],
        "kd cached": ["teacher.cache_outputs=always"],
        "kd online, random batches": ["teacher.cache_outputs=never", "train.group_by_length=false"],
    }
    record = stage(kinds["kd cached"], "warm")["teacher_cache"]  # builds the entry: the timed runs find it warm
    how = f"built in {record['build_s']:.1f} s" if record["built"] else "found (built by an earlier run)"
    print(f"entry {record['entry']}: {record['size_bytes'] / 1e6:.2f} MB, {how}")
    times: dict[str, list[float]] = {k: [] for k in [*kinds, "hand loop (kd online)"]}
    identity = cfg.teacher.arch.identity_attention_layers
    batch = cfg.hardware.per_device_batch_size
    for i in range(repeats):  # interleaved: drift in the machine's load hits every kind alike
        for kind, extra in kinds.items():
            rec = stage(extra, f"steps-{i}")
            assert (rec.get("teacher_cache") or {}).get("used", False) == (kind == "kd cached"), rec.get(
                "teacher_cache"
            )
            times[kind].append(rec["wall_time_s"] / rec["steps"])
        rate = hand_kd_loop(
            teacher,
            plan.student_config,
            plan.student_layers,
            identity,
            cfg,
            train_set,
            collator,
            steps,
            plan.kind.model_class(),
        )
        times["hand loop (kd online)"].append(batch / rate)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(
        f"\nms per optimizer step, {steps} steps × batch {batch} (one epoch = {len(train_set) // batch}), "
        f"median of {repeats} interleaved runs; training wall time only:"
    )
    for kind, values in times.items():
        print(
            f"  {kind:<22} {med[kind] * 1000:7.1f} ms   ({med[kind] / med['none']:.2f}× none; runs: "
            f"{', '.join(f'{v * 1000:.1f}' for v in values)})"
        )
    print(f"  cached kd epoch / label-only epoch: {med['kd cached'] / med['none']:.3f}  (aim ≤ 1.1)")
    print(f"  kd: cached / online: {med['kd cached'] / med['kd online']:.3f}")
    hand = med["hand loop (kd online)"]
    print(
        f"  throughput distillkit / hand loop, both online on random batches: "
        f"{hand / med['kd online, random batches']:.3f}; with distillkit's length-grouped batches: "
        f"{hand / med['kd online']:.3f}; cached: {hand / med['kd cached']:.3f}"
    )


def bench_sweep(work: Path, temperatures: str) -> None:
    cache = work / "cache"
    if not (cache / "teachers").exists():
        distillkit(["logger=none", f"cache_dir={cache}", "hydra.run.dir=prepare", *EXTRA], work)
    for mode in ("never", "auto"):
        shutil.rmtree(cache / "teacher_outputs", ignore_errors=True)  # auto: the first job builds, three reuse
        sweep = work / f"sweep-{mode}"
        shutil.rmtree(sweep, ignore_errors=True)
        elapsed = distillkit(
            [
                "-m",
                "logger=none",
                f"cache_dir={cache}",
                f"method.temperature={temperatures}",
                f"teacher.cache_outputs={mode}",
                f"hydra.sweep.dir={sweep}",
                *EXTRA,
            ],
            work,
        )
        accs = [
            json.loads((sweep / str(i) / "results.json").read_text())["student"]["accuracy"]
            for i in range(len(temperatures.split(",")))
        ]
        print(
            f"-m method.temperature={temperatures} teacher.cache_outputs={mode}: {elapsed:6.1f} s  "
            f"(student accuracy {', '.join(f'{a:.4f}' for a in accs)})",
            flush=True,
        )


def bench_size(work: Path, rows: int) -> None:
    import datasets
    import torch

    from distillkit.models import loading as models
    from distillkit.models.features import FeatureSpec
    from distillkit.tasks.classification.synthetic import generate
    from distillkit.teachers import output_cache as teacher_cache
    from distillkit.teachers import output_store
    from distillkit.teachers.sources import FrozenModel

    cfg, plan, teacher, train_set, collator, stage = setup(work, ["train.max_steps=1"])
    record = stage(["teacher.cache_outputs=always"], "size-default")["teacher_cache"]
    print(
        f"embedded default ({len(train_set)} examples, {plan.task.num_labels} classes, logits): "
        f"{record['size_bytes']:,} bytes on disk ({record['entry']})"
    )
    texts = [r["text"] for r in generate(n_train=rows, n_eval=1).train]
    enc = plan.tokenizer(texts, truncation=True, max_length=cfg.data.max_length)
    data = datasets.Dataset.from_dict(
        {
            "input_ids": enc["input_ids"],
            "attention_mask": enc["attention_mask"],
            "token_type_ids": enc["token_type_ids"],
        }
    )
    config = plan.teacher_config.__class__.from_dict(
        {
            **plan.teacher_config.to_dict(),
            "num_labels": 2,
            "id2label": {0: "negative", 1: "positive"},
            "label2id": {"negative": 0, "positive": 1},
        }
    )
    model = models.build_from_config(config, 0, 0, model_class=plan.kind.model_class()).eval()  # any weights do
    out = work / "size-67k"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    started = time.perf_counter()
    meta, problem = output_store.build(
        out,
        FrozenModel(model),
        data,
        FeatureSpec(),
        collator,
        cfg.hardware.eval_batch_size,
        torch.device("cpu"),
        "fp16",
    )
    assert problem is None, problem
    size = sum(f.stat().st_size for f in out.iterdir())
    print(
        f"{rows}-example 2-class task (logits): {size:,} bytes on disk; built in {time.perf_counter() - started:.0f} s "
        f"(the embedded teacher's architecture, {meta['tokens']:,} tokens)"
    )
    tokens = 67_349 * 13  # SST-2's train split at ~13 word pieces a sentence, for scale
    dims = {"num_labels": 2, "hidden_size": 768, "num_heads": 12}
    for name, spec in (
        ("logits", FeatureSpec()),
        ("+ 4 hidden states", FeatureSpec(hidden_states=(3, 6, 9, 12))),
        (
            "+ 12 hidden states, 12 attention maps (tinybert from bert-base)",
            FeatureSpec(hidden_states=tuple(range(13)), attentions=tuple(range(1, 13))),
        ),
    ):
        est = teacher_cache.estimate_bytes(67_349, tokens, 67_349 * 13**2, spec, dims, "fp16")
        print(f"  estimate for SST-2 with a bert-base teacher, {name}: {est / 1e6:,.1f} MB")


def bench_profile(work: Path, steps: int) -> None:
    from torch.profiler import ProfilerActivity, profile

    _, _, _, _, _, stage = setup(
        work, [f"train.max_steps={steps}", f"train.save_steps={steps * 10}", f"train.logging_steps={steps}"]
    )
    stage(["teacher.cache_outputs=always"], "profile-warm")
    for mode in ("never", "always"):
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            stage([f"teacher.cache_outputs={mode}"], f"profile-{mode}")
        print(f"\nkd, teacher.cache_outputs={mode}: top operators by self CPU time over {steps} steps")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=18, max_name_column_width=50))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", choices=["steps", "sweep", "size", "profile", "all"])
    parser.add_argument("--work", type=Path, default=Path("/tmp/distillkit-bench-cache"))
    parser.add_argument("--steps", type=int, default=250)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--temperatures", default="1,2,4,8", help="sweep: the method.temperature values")
    parser.add_argument("--rows", type=int, default=67_349, help="size: examples of the 2-class task (SST-2's)")
    parser.add_argument(
        "--override",
        action="append",
        default=[],
        help="a config override for every stage (e.g. --override student=bert-2l; repeatable)",
    )
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # figures appear as they are measured, even into a file
    args.work.mkdir(parents=True, exist_ok=True)
    EXTRA.extend(args.override)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    if args.part in ("steps", "all"):
        bench_steps(args.work, args.steps, args.repeats)
    if args.part in ("sweep", "all"):
        bench_sweep(args.work, args.temperatures)
    if args.part in ("size", "all"):
        bench_size(args.work, args.rows)
    if args.part in ("profile", "all"):
        bench_profile(args.work, min(args.steps, 60))


if __name__ == "__main__":
    sys.exit(main())
