"""Benchmarks of the core run. Prints figures; asserts nothing (tests do that).

    python scripts/benchmark.py wall          # default run: first (teacher prepared) and second (cached)
    python scripts/benchmark.py throughput    # method=kd training samples/s vs a hand-written PyTorch loop
    python scripts/benchmark.py quality       # kd vs none, 3 seeds each, on the embedded default
    python scripts/benchmark.py methods       # every method, 3 seeds each: quality, wall time, step cost vs kd
    python scripts/benchmark.py speed         # the report's speed measurement, 3 times on one pair (1 under load)
    python scripts/benchmark.py all

Each part uses its own cache directory under --work (default /tmp/distillkit-bench), so "first run"
really prepares the teacher. Runs are real `python -m distillkit` subprocesses with the W&B logger
switched off (it would only add its own start-up time).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "MPLBACKEND": "Agg"}


def distillkit(args: list[str], cwd: Path) -> float:
    """Run the CLI; return its wall time in seconds (raises if it fails)."""
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "distillkit", *args],
        cwd=cwd,
        env=ENV,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    if proc.returncode != 0:
        raise SystemExit(f"distillkit {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return time.perf_counter() - started


def bench_wall(work: Path) -> None:
    cache = work / "wall-cache"
    shutil.rmtree(cache, ignore_errors=True)
    first = distillkit(["logger=none", f"cache_dir={cache}", "hydra.run.dir=wall-first"], work)
    second = distillkit(["logger=none", f"cache_dir={cache}", "hydra.run.dir=wall-second"], work)
    res = json.loads((work / "wall-second" / "results.json").read_text())
    print(f"default run, first (teacher prepared): {first:6.1f} s")
    print(f"default run, second (teacher cached):  {second:6.1f} s")
    print(
        f"  teacher {res['teacher']['accuracy']:.4f}  student {res['student']['accuracy']:.4f}  "
        f"retention {res['comparison']['retention'] * 100:.1f}%"
    )


def hand_kd_loop(teacher, s_config, layers, identity: int, cfg, train_set, collator, steps: int, model_class) -> float:
    """A minimal PyTorch loop doing kd's computation for ``steps`` steps (random batches, padded to the longest
    example, the teacher online); returns training samples/s. The yardstick for the trainer's overhead."""
    import torch
    from torch.utils.data import DataLoader
    from transformers import get_linear_schedule_with_warmup

    from distillkit.losses.logits import cross_entropy, soft_target_kl
    from distillkit.models import loading as models
    from distillkit.training.trainer import split_layer_groups

    batch, T, alpha = cfg.hardware.per_device_batch_size, cfg.method.temperature, cfg.method.ce_weight
    student = models.derive_student(teacher, s_config, layers, cfg.seed, identity, model_class=model_class).train()
    opt = torch.optim.AdamW(student.parameters(), lr=cfg.train.learning_rate, weight_decay=cfg.train.weight_decay)
    if cfg.train.layer_learning_rate is not None:  # the trainer's optimizer groups: layers at their own rate
        split_layer_groups(opt, student, cfg.train.layer_learning_rate)
    sched = get_linear_schedule_with_warmup(opt, int(cfg.train.warmup_ratio * steps), steps)
    loader = DataLoader(train_set, batch_size=batch, shuffle=True, collate_fn=collator, drop_last=True)
    started, done = time.perf_counter(), 0
    while done < steps:
        for b in loader:
            inputs = {k: b[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
            with torch.no_grad():
                t_logits = teacher(**inputs).logits
            s_logits = student(**inputs).logits
            loss = alpha * cross_entropy(s_logits, b["labels"]) + (1 - alpha) * soft_target_kl(s_logits, t_logits, T)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(student.parameters(), cfg.train.max_grad_norm)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            done += 1
            if done == steps:
                break
    return steps * batch / (time.perf_counter() - started)


def bench_throughput(work: Path, steps: int, repeats: int) -> None:
    """distillkit's DistillationTrainer vs a minimal loop doing the same computation, side by side."""
    import torch
    from transformers import DataCollatorWithPadding

    from distillkit import tasks
    from distillkit.config.schema import register_schemas, validate
    from distillkit.models import loading as models
    from distillkit.plan import _tokenizer, make_plan
    from distillkit.stages.runner import run_stage
    from distillkit.stages.workspace import Workspace
    from distillkit.tasks.classification.data import load_task, tokenize

    cache = work / "wall-cache"  # the teacher prepared by `wall`, or prepared now
    if not (cache / "teachers").exists():
        distillkit(["logger=none", f"cache_dir={cache}", "hydra.run.dir=tp-prepare"], work)
    register_schemas()
    from hydra import compose, initialize_config_dir

    from distillkit import conf_dir

    # Same batching on both sides (random batches, padded to the longest example): the ratio measures
    # the trainer's overhead. distillkit's length-grouped batching is measured separately below.
    base = [
        f"cache_dir={cache}",
        "logger=none",
        "teacher.cache_outputs=never",
        f"train.max_steps={steps}",
        f"train.save_steps={steps * 10}",
        f"train.logging_steps={steps}",
    ]
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        cfg = validate(compose("config", base + ["train.group_by_length=false"]))
        grouped_cfg = validate(compose("config", base + ["train.group_by_length=true"]))
    torch.set_num_threads(os.cpu_count() or 1)
    task = load_task(cfg.data)
    kind = tasks.get(cfg.task.name)
    model_class = kind.model_class()
    tokenizer = _tokenizer(cfg, task, cache, kind)
    t_config, _ = kind.teacher_config(cfg.teacher, tokenizer, task.label_names)
    s_config, layers = kind.student_config(cfg.student, t_config, tokenizer, task.label_names)
    teacher_dir = next((cache / "teachers").iterdir())
    teacher = models.load_pretrained(
        "teacher", str(teacher_dir), None, model_class=model_class, **kind.load_kwargs
    ).eval()
    train_set, _ = tokenize(task, tokenizer, cfg.data.max_length)
    collator = DataCollatorWithPadding(tokenizer)
    batch = cfg.hardware.per_device_batch_size
    identity = cfg.teacher.arch.identity_attention_layers

    def hand_loop() -> float:
        return hand_kd_loop(teacher, s_config, layers, identity, cfg, train_set, collator, steps, model_class)

    def distillkit_trainer(i: int, run_cfg) -> float:
        plan = make_plan(run_cfg)
        stage = plan.method_stages[-1]
        ws = Workspace(run_cfg, plan, work / f"tp-run{i}", train_set, None, collator)
        ws.models["teacher"] = teacher
        ws.models[stage.student.model] = models.derive_student(
            teacher, s_config, layers, run_cfg.seed, identity, model_class=model_class
        )
        started = time.perf_counter()
        run_stage(stage, ws)
        return steps * batch / (time.perf_counter() - started)

    hand, dk, grouped = [], [], []
    for i in range(repeats):  # interleaved, so drift in machine load hits all alike
        hand.append(hand_loop())
        dk.append(distillkit_trainer(i, cfg))
        grouped.append(distillkit_trainer(i, grouped_cfg))
    h, d, g = statistics.median(hand), statistics.median(dk), statistics.median(grouped)
    print(f"kd training throughput, {steps} steps × batch {batch}, median of {repeats} (interleaved):")
    print(f"  hand-written loop: {h:7.1f} samples/s   (runs: {', '.join(f'{x:.1f}' for x in hand)})")
    print(f"  distillkit:        {d:7.1f} samples/s   (runs: {', '.join(f'{x:.1f}' for x in dk)})")
    print(f"  ratio distillkit / hand: {d / h:.3f}")
    print(
        f"  distillkit with its default length-grouped batches: {g:7.1f} samples/s "
        f"({g / h:.2f}× the hand loop; runs: {', '.join(f'{x:.1f}' for x in grouped)})"
    )


def bench_quality(work: Path, seeds: str) -> None:
    cache = work / "wall-cache"
    sweep = work / "quality-sweep"
    shutil.rmtree(sweep, ignore_errors=True)
    elapsed = distillkit(
        ["-m", "logger=none", f"cache_dir={cache}", "method=none,kd", f"seed={seeds}", f"hydra.sweep.dir={sweep}"], work
    )
    print(f"quality sweep (method=none,kd × seed={seeds}): {elapsed:.0f} s")
    subprocess.run([sys.executable, "-m", "distillkit.compare", str(sweep), "--group-by-seed"], env=ENV, check=True)


def bench_methods(work: Path, seeds: str, methods: str, report_only: bool = False) -> None:
    """One sweep over the methods × seeds (same teacher, student initialisation and whole-run budget: a multi-stage
    method splits train.epochs between its stages), compared by the compare command (which flags any run whose
    budget differs), then each method's training cost per optimizer step against kd's."""
    cache = work / "wall-cache"
    sweep = work / "methods-sweep"
    if report_only:
        return report_methods(sweep)
    shutil.rmtree(sweep, ignore_errors=True)
    elapsed = distillkit(
        ["-m", "logger=none", f"cache_dir={cache}", f"method={methods}", f"seed={seeds}", f"hydra.sweep.dir={sweep}"],
        work,
    )
    print(f"methods sweep (method={methods} × seed={seeds}): {elapsed:.0f} s")
    report_methods(sweep)


def report_methods(sweep: Path) -> None:
    """The comparison table of a methods sweep, and each method's cost per optimizer step against kd's."""
    subprocess.run(
        [sys.executable, "-m", "distillkit.compare", str(sweep), "--group-by-seed", "--sort=-student_metric"],
        env=ENV,
        check=True,
    )
    per_method: dict[str, dict] = {}
    for path in sorted(sweep.glob("*/results.json")):
        results = json.loads(path.read_text())
        entry = per_method.setdefault(results["run"]["method"], {"wall": [], "stages": {}})
        entry["wall"].append(results["run"]["wall_time_s"])
        for stage in results["stages"]:
            if stage["name"] != "teacher_prep" and stage.get("steps"):
                entry["stages"].setdefault(stage["name"], []).append(stage["wall_time_s"] / stage["steps"])
    kd_step = statistics.mean(per_method["kd"]["stages"]["distill"]) if "kd" in per_method else None
    print("\ntraining cost per optimizer step (stage wall time / steps, mean over seeds), relative to kd:")
    print(f"  {'method':<20} {'run wall s':>10}  stages")
    for method, entry in sorted(per_method.items()):
        stages = ", ".join(
            f"{name} {statistics.mean(v) * 1000:.0f} ms"
            + (f" ({statistics.mean(v) / kd_step:.2f}× kd)" if kd_step else "")
            for name, v in entry["stages"].items()
        )
        print(f"  {method:<20} {statistics.mean(entry['wall']):>10.0f}  {stages}")


def bench_speed(work: Path, busy: int, overrides: list[str]) -> None:
    """evaluate.measure_speed three times on one teacher/student pair (the embedded teacher and the default
    4-layer student, random weights: speed does not depend on them), the second time with ``busy``
    processes spinning on the CPU, to see whether the reported speed-ups agree between measurements."""
    import torch  # noqa: F401 (torch before transformers, as the CLI does)
    from hydra import compose, initialize_config_dir
    from transformers import DataCollatorWithPadding

    from distillkit import conf_dir
    from distillkit.config.schema import register_schemas, validate
    from distillkit.models import loading as models
    from distillkit.run import make_plan
    from distillkit.speed import SPREAD
    from distillkit.tasks.classification.data import tokenize
    from distillkit.tasks.classification.evaluate import measure_speed

    register_schemas()
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        cfg = validate(
            compose("config", ["logger=none", "hardware=cpu", f"cache_dir={work / 'speed-cache'}", *overrides])
        )
    plan = make_plan(cfg)
    identity = cfg.teacher.arch.identity_attention_layers if cfg.teacher.arch is not None else 0
    teacher = models.build_from_config(plan.teacher_config, cfg.seed, identity, model_class=plan.kind.model_class())
    student = models.build_from_config(plan.student_config, cfg.seed, identity, model_class=plan.kind.model_class())
    _, eval_set = tokenize(plan.task, plan.tokenizer, cfg.data.max_length)
    collator = DataCollatorWithPadding(plan.tokenizer)
    e = cfg.eval
    print(
        f"{cfg.teacher.name} ({models.count_parameters(teacher):,} params) vs {cfg.student.name} "
        f"({models.count_parameters(student):,}); eval.threads={e.threads} repeats={e.repeats} warmup={e.warmup} "
        f"latency_batches={e.latency_batches} throughput_batches={e.throughput_batches} "
        f"batch={cfg.hardware.eval_batch_size}; spread = {SPREAD}"
    )
    lat, thr = [], []
    for i in range(3):
        spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(busy if i == 1 else 0)]
        try:
            started, cpu_started = time.perf_counter(), time.process_time()
            speed = measure_speed(
                teacher,
                student,
                eval_set,
                collator,
                "cpu",
                cfg.hardware.eval_batch_size,
                e.latency_batches,
                e.throughput_batches,
                e.threads,
                e.repeats,
                e.warmup,
            )
            elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        finally:
            for proc in spinners:
                proc.kill()
                proc.wait()
        t, s, c = speed["teacher"], speed["student"], speed["comparison"]
        lat.append(c["latency_speedup"])
        thr.append(c["speedup"])
        print(
            f"  measurement {i + 1}{f' ({busy} busy processes)' if spinners else ''}: "
            f"{elapsed:.1f} s ({cpu:.1f} s CPU); "
            f"latency {t['latency_ms']:.2f} vs {s['latency_ms']:.2f} ms, speed-up {c['latency_speedup']:.2f}× "
            f"(±{c['latency_speedup_spread'] * 100:.0f}%); throughput {t['throughput_samples_s']:.0f} vs "
            f"{s['throughput_samples_s']:.0f} samples/s, speed-up {c['speedup']:.2f}× "
            f"(±{c['speedup_spread'] * 100:.0f}%)"
        )
    for name, values in (("latency", lat), ("throughput", thr)):
        print(
            f"  {name} speed-ups: {', '.join(f'{v:.2f}×' for v in values)}; "
            f"largest / smallest = {max(values) / min(values):.3f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", choices=["wall", "throughput", "quality", "methods", "speed", "all"])
    parser.add_argument("--work", type=Path, default=Path("/tmp/distillkit-bench"))
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--methods", default="glob(*)", help="the method sweep, e.g. 'none,kd,tinybert'")
    parser.add_argument("--report-only", action="store_true", help="methods: report the existing sweep again")
    parser.add_argument("--busy", type=int, default=1, help="speed: CPU-spinning processes during measurement 2")
    parser.add_argument(
        "--override",
        action="append",
        default=[],
        help="speed: a config override, e.g. --override eval.threads=null (repeatable)",
    )
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    if args.part in ("wall", "all"):
        bench_wall(args.work)
    if args.part in ("throughput", "all"):
        bench_throughput(args.work, args.steps, args.repeats)
    if args.part in ("quality", "all"):
        bench_quality(args.work, args.seeds)
    if args.part in ("methods", "all"):
        bench_methods(args.work, args.seeds, args.methods, args.report_only)
    if args.part in ("speed", "all"):
        bench_speed(args.work, args.busy, args.override)


if __name__ == "__main__":
    main()
