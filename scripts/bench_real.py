"""The real-checkpoint tier: every method of a task against its label-only baseline and kd, on a real pretrained
teacher and real data, at equal budget, over seeds. Prints figures and writes them; asserts nothing.

    scripts/get_real_data.sh && python scripts/get_real_checkpoints.py          # data/real/, models/real/
    python scripts/bench_real.py --task classification --teacher models/real/all-MiniLM-L6-v2 \\
        --data data/real/trec --methods none kd tinybert --seeds 1 2 3 --name trec-2l \\
        --override student=bert-2l data.max_length=64 train.max_steps=300
    python scripts/bench_real.py --task causal_lm --teacher models/real/SmolLM2-135M-Instruct --data data/real/svamp
    python scripts/bench_real.py --name trec-2l --report-only                    # the table again, from the runs

Each method is one ``python -m distillkit -m method=<m> seed=<seeds>`` sweep (``bench_common.run_sweep``) into
``--work/<name>/<method>``, ``teacher=hub teacher.path=<--teacher>`` and the task's local (or hub) data; all
sweeps share ``--work/cache``, so the teacher is prepared once (its key leaves out the run's seed:
``teacher.prepare_seed``) and every method and seed distils the same prepared teacher. A method that fails is
reported and the others go on. The budget is what ``--override`` gives every run (``train.max_steps=N``, or
``--steps N``): the whole distillation's, split between a multi-stage method's stages. The table shows each
method's optimizer steps (results.json's budget section) and flags a method whose steps differ from the
baseline's by more than 5 % (``distillkit.compare.BUDGET_TOLERANCE``). ``--methods`` defaults to every method of
the task (the method table's families that the task's row names).

``--blackbox`` (causal_lm) adds rows whose teacher is a black box: the same teacher (the prepared one the white-box
runs distilled, from their ``teacher_prep`` record; else ``--teacher``) served over the chat-completions API by
``scripts/openai_stub_server.py --model-path`` in a thread here, each entry a ``teacher=openai`` sweep
(``blackbox_sft``, ``blackbox_sft:pipeline=explanations``, ...). Their student is the white-box runs' starting
student (``student.*`` of a white-box run's config, taken from the served teacher's layers as those runs took it,
saved once to ``--work/<name>/student-init``) as ``student=hub``; the ``teacher.*`` and ``student.*`` entries of
``--override`` are left out of them (``--blackbox-override`` adds their own, e.g. ``teacher.sampling.max_tokens``).
At least one white-box method must run (or have run) in the same folder: the baseline, whose table they join.

Written to ``--work/<name>/``: ``table.md`` (the table, the settings, the commands, the gap "teacher minus
label-only student") and ``plot.png`` (``distillkit.compare.plot``: mean ± std of the task metric per method,
the teacher's as a dash).
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import run_sweep  # noqa: E402 (after the sys.path set-up above)

# The label-only baseline and the reference distillation of each task: every method is compared with both.
BASELINE = {"classification": "none", "causal_lm": "sft"}
REFERENCE = {"classification": "kd", "causal_lm": "forward_kl"}
# The figures of each task's table (results.json's student section), the first the task's metric (the differences
# from the baseline and the reference, the gap and the plot are in it).
METRICS = {"classification": ("accuracy",), "causal_lm": ("exact_match", "rouge_l", "perplexity")}
DATA_OPTIONS = {"classification": ("local", "hub"), "causal_lm": ("lm_local", "lm_hub")}
EVAL_NAMES = ("dev", "validation", "eval", "test")


def task_methods(task: str) -> list[str]:
    """Every method of ``task`` in the method table's order, the baseline and the reference first."""
    from distillkit.config.registry import REGISTRY
    from distillkit.config.task import tasks_of_method

    first = [BASELINE[task], REFERENCE[task]]
    return first + [m for m in REGISTRY if task in tasks_of_method(m) and m not in first]


def variant(spec: str) -> tuple[str, list[str]]:
    """``--methods`` entry ``tinybert`` or ``tinybert:schedule=joint,kd_weight=0.5`` (a method with its own
    settings, a row of its own): (the method, its overrides)."""
    method, _, settings = spec.partition(":")
    return method, [f"method={method}"] + [f"method.{kv}" for kv in settings.split(",") if kv]


def folder_name(spec: str) -> str:
    """A ``--methods`` entry as its sweep's folder: ``tinybert+schedule-joint`` (Hydra's override grammar takes no
    ``=``, ``:`` or ``,`` in the unquoted ``hydra.sweep.dir`` value)."""
    return spec.replace(":", "+").replace(",", "+").replace("=", "-")


def data_overrides(task: str, data: list[str]) -> list[str]:
    """The data group for ``--data``: a directory (train.* and dev.* / validation.* / eval.* / test.* in it, as
    scripts/get_real_data.sh writes them), two files (train, eval), or a hub dataset id."""
    local, hub = DATA_OPTIONS[task]
    paths = [Path(d).expanduser() for d in data]
    if len(data) == 1 and paths[0].is_dir():
        files = sorted(p for p in paths[0].iterdir() if p.is_file())
        train = [p for p in files if p.stem == "train"]
        evals = [p for n in EVAL_NAMES for p in files if p.stem == n]
        if not train or not evals:
            raise SystemExit(f"--data {data[0]}: needs a train.* and a {'/'.join(EVAL_NAMES)}.* file")
        paths = [train[0], evals[0]]
    elif len(data) == 1:
        return [f"data={hub}", f"data.path={data[0]}"]
    if len(paths) != 2 or not all(p.is_file() for p in paths):
        raise SystemExit(f"--data {' '.join(data)}: give a directory, a train and an eval file, or a hub id")
    return [f"data={local}", f"data.train_file={paths[0].resolve()}", f"data.eval_file={paths[1].resolve()}"]


def teacher_overrides(teacher: str) -> list[str]:
    """``teacher=hub`` at a local directory (made absolute: the runs start elsewhere) or a hub id."""
    path = Path(teacher).expanduser()
    return ["teacher=hub", f"teacher.path={path.resolve() if path.exists() else teacher}"]


def optimizer_steps(result: dict) -> int:
    """The optimizer steps a run spent after teacher preparation (``distillkit.compare.spent``: the results' budget
    section, or for older results the sum of their trained stages' steps)."""
    from distillkit.compare import spent

    return spent(result)["steps"] or 0


def mean_std(values: list[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (None for one value)."""
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else None)


def fmt(values: list[float], digits: int = 4, scale: float = 1.0) -> str:
    if not values:
        return "-"
    m, s = mean_std([v * scale for v in values])
    return f"{m:.{digits}f}" if s is None else f"{m:.{digits}f} ± {s:.{digits}f}"


def summarise(runs: list[dict], task: str) -> dict:
    """Per method (the baseline, the reference, then the method table's order), from each run's results.json: the
    task's figures over seeds, the difference of the first metric's mean from the baseline's and from the
    reference's, retention, agreement, speed-up, wall time (the run's, and its stages' after teacher preparation),
    optimizer steps and whether they differ from the baseline's by more than 5 %;
    and the gap "teacher minus label-only student" (mean ± std over the baseline's seeds)."""
    metrics = list(METRICS[task])
    by_method: dict[str, list[dict]] = {}
    for r in runs:  # a row per --methods entry (the runs' folder, "label"), else per method
        by_method.setdefault(r.get("label") or r["run"]["method"], []).append(r)
    order = task_methods(task)

    def rank(label: str) -> tuple:
        method = label.split("+")[0].split(":")[0]
        return (order.index(method) if method in order else len(order), label)

    by_method = dict(sorted(by_method.items(), key=lambda kv: rank(kv[0])))
    rows = []
    for method, rs in by_method.items():
        cmp_ = [r.get("comparison") or {} for r in rs]
        rows.append(
            {
                "method": method,
                "n": len(rs),
                "seeds": sorted(r["run"]["seed"] for r in rs),
                **{m: [r["student"][m] for r in rs] for m in metrics},
                "retention": [c["retention"] for c in cmp_ if c.get("retention") is not None],
                "agreement": [c["agreement"] for c in cmp_ if c.get("agreement") is not None],
                "speedup": [x for x in (c.get("speedup", c.get("gen_speedup")) for c in cmp_) if x is not None],
                "wall_s": [r["run"]["wall_time_s"] for r in rs],
                "train_s": [
                    sum(s.get("wall_time_s") or 0 for s in r["stages"] if s["name"] != "teacher_prep") for r in rs
                ],
                "steps": [optimizer_steps(r) for r in rs],
            }
        )
    first = metrics[0]
    means = {r["method"]: statistics.mean(r[first]) for r in rows}
    base, ref = BASELINE[task], REFERENCE[task]
    from distillkit.compare import BUDGET_TOLERANCE

    base_steps = next((statistics.mean(r["steps"]) for r in rows if r["method"] == base), None)
    for r in rows:
        r["vs_baseline"] = means[r["method"]] - means[base] if base in means else None
        r["vs_reference"] = means[r["method"]] - means[ref] if ref in means else None
        r["budget_off"] = bool(
            base_steps and abs(statistics.mean(r["steps"]) - base_steps) > BUDGET_TOLERANCE * base_steps
        )
    with_teacher = [r for r in runs if r.get("teacher")]  # a black-box run has no teacher model to score
    teacher = {m: with_teacher[0]["teacher"][m] for m in metrics} if with_teacher else {}
    base_runs = by_method.get(base, [])
    gap = [teacher[first] - r["student"][first] for r in base_runs] if teacher else []
    return {"task": task, "metrics": metrics, "teacher": teacher, "rows": rows, "gap": gap}


def _signed(x: float | None, scale: float) -> str:
    return "-" if x is None else f"{x * scale:+.2f}"


def markdown(summary: dict) -> str:
    """The summary as a markdown table, the teacher and the gap "teacher minus label-only student" above it.
    Accuracy-like metrics in points (×100); perplexity as is. "train s": the stages after teacher preparation;
    "wall s": the whole run (the first run of a sweep also prepares the teacher, the others read it)."""
    task, metrics = summary["task"], summary["metrics"]
    scale = {m: 1.0 if m == "perplexity" else 100.0 for m in metrics}
    base, ref, first = BASELINE[task], REFERENCE[task], metrics[0]
    teacher = ", ".join(f"{m} {summary['teacher'][m] * scale[m]:.2f}" for m in metrics) or "-"
    gap = summary["gap"]
    lines = [
        f"- teacher: {teacher}",
        f"- gap teacher minus label-only student ({base}), {first}: "
        + (f"{fmt(gap, 2, scale[first])} points (n={len(gap)})" if gap else "- (no baseline runs)"),
        "",
        "| method | n | "
        + " | ".join(f"{m}{' (pts)' if scale[m] != 1 else ''}" for m in metrics)
        + f" | Δ vs {base} | Δ vs {ref} | retention % | agreement % | speed-up × | optimizer steps"
        + " | train s / run | wall s / run |",
        "|---|---:|" + "---:|" * (len(metrics) + 8),
    ]
    for r in summary["rows"]:
        cells = [r["method"], str(r["n"])]
        cells += [fmt(r[m], 2, scale[m]) for m in metrics]
        cells += [_signed(r["vs_baseline"], scale[first]), _signed(r["vs_reference"], scale[first])]
        cells += [fmt(r["retention"], 1, 100), fmt(r["agreement"], 1, 100), fmt(r["speedup"], 2)]
        steps = f"{statistics.mean(r['steps']):.0f}" + (" (budget differs > 5 %)" if r["budget_off"] else "")
        cells += [steps, f"{statistics.mean(r['train_s']):.0f}", f"{statistics.mean(r['wall_s']):.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_rows(summary: dict) -> list[dict]:
    """The summary in the grouped-row shape distillkit.compare.plot draws (one bar per method)."""
    first = summary["metrics"][0]
    out = []
    for r in summary["rows"]:
        m, s = mean_std(r[first])
        out.append(
            {
                "job": r["method"],
                "n": r["n"],
                "metric": first,
                "student_metric": m,
                "student_metric_std": s,
                "teacher_metric": summary["teacher"].get(first),
            }
        )
    return out


def load_runs(folder: Path) -> tuple[list[dict], list[str]]:
    """Every complete run's results.json under ``folder`` (method folders, then seeds), and why the others have
    none (distillkit.compare's reading: skipped, failed, unfinished)."""
    from distillkit.compare import load

    rows, failed, _ = load([str(p) for p in sorted(folder.iterdir()) if p.is_dir()])
    runs = [
        {**json.loads((Path(r["dir"]) / "results.json").read_text()), "label": Path(r["dir"]).parent.name} for r in rows
    ]
    return runs, [f"{d}: {why}" for d, why in failed]


def report(folder: Path, task: str | None = None) -> str:
    from distillkit.compare import plot

    runs, failed = load_runs(folder)
    if not runs:
        raise SystemExit(f"no complete runs under {folder}" + "".join(f"\n  {f}" for f in failed))
    task = task or runs[0]["task"]["name"]
    summary = summarise(runs, task)
    text = markdown(summary)
    if failed:
        text += "\n\nruns without results:\n" + "\n".join(f"- {f}" for f in failed)
    commands = folder / "commands.txt"
    if commands.exists():  # each once, the last time it ran
        lines = list(dict.fromkeys(reversed(commands.read_text().strip().splitlines())))[::-1]
        text += "\n\ncommands (the environment: OMP_NUM_THREADS, HF_HUB_OFFLINE=1):\n```\n" + "\n".join(lines) + "\n```"
    (folder / "table.md").write_text(text + "\n")
    plot(plot_rows(summary), folder / "plot.png", grouped=True)
    return text


def white_box_runs(folder: Path) -> list[Path]:
    """The run directories (with config.yaml) of the white-box sweeps under ``folder``."""
    return sorted(p.parent for p in folder.glob("*/*/config.yaml") if not p.parent.parent.name.startswith("bb_"))


def served_teacher(folder: Path, teacher: str) -> Path:
    """The teacher the black-box rows are served: the prepared teacher of the white-box runs (their results'
    teacher_prep record), else ``teacher`` itself when they did not prepare one."""
    for run in white_box_runs(folder):
        results = run / "results.json"
        if results.exists():
            prep = [s for s in json.loads(results.read_text())["stages"] if s["name"] == "teacher_prep"]
            return Path(prep[0]["cache_dir"]) if prep and prep[0].get("cache_dir") else Path(teacher)
    raise SystemExit(f"--blackbox: no finished white-box run under {folder}: run the baseline with --methods first")


def starting_student(folder: Path, teacher_dir: Path) -> Path:
    """The white-box runs' starting student (their config's ``student`` group: its layers from ``teacher_dir``'s, as
    the task's ``student_config`` picks them) saved as a checkpoint with the teacher's tokenizer, once."""
    out = folder / "student-init"
    if (out / "config.json").exists():
        return out
    from omegaconf import OmegaConf
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from distillkit.models.loading import derive_student, save_model
    from distillkit.tasks.causal_lm.models import student_config

    cfg = OmegaConf.load(white_box_runs(folder)[0] / "config.yaml")
    teacher = AutoModelForCausalLM.from_pretrained(teacher_dir)
    tok = AutoTokenizer.from_pretrained(teacher_dir)
    config, layers = student_config(cfg.student, teacher.config, tok)
    student = derive_student(teacher, config, layers, int(cfg.seed), model_class=AutoModelForCausalLM)
    save_model(student, tok, out)
    print(f"black-box rows' student: layers {layers} of {teacher_dir}, saved to {out}", flush=True)
    return out


def blackbox_sweeps(args, work: Path, folder: Path, common: list[str], seeds: str) -> None:
    """Each ``--blackbox`` entry a sweep against the served teacher (see the module's docstring)."""
    from openai_stub_server import Behaviour, StubServer

    teacher_dir = served_teacher(folder, args.teacher)
    init = starting_student(folder, teacher_dir)
    own = [o for o in common if not o.startswith(("teacher", "student"))]
    with StubServer(Behaviour(models=("teacher",), model_path=str(teacher_dir))) as server:
        endpoint = [
            "teacher=openai",
            f"teacher.endpoint.base_url={server.url}",
            "teacher.endpoint.model=teacher",
            "teacher.endpoint.api_key_env=null",
            "student=hub",
            f"student.path={init}",
        ]
        for spec in args.blackbox:
            sweep = [*variant(spec)[1], *own, *endpoint, *args.blackbox_override]
            sweep_logged(work, folder, f"{args.name}/bb_{folder_name(spec)}", sweep, seeds, f"{spec} (served teacher)")


def sweep_logged(work: Path, folder: Path, name: str, sweep: list[str], seeds: str, label: str) -> None:
    """One method's sweep (``bench_common.run_sweep``), its command appended to ``folder/commands.txt`` as it
    runs; a failed sweep is reported and the benchmark goes on."""
    where = [f"seed={seeds}", "logger=none", f"cache_dir={work / 'cache'}", f"hydra.sweep.dir={work / name}"]
    with open(folder / "commands.txt", "a") as f:
        f.write(shlex.join(["python", "-m", "distillkit", "-m", *sweep, *where]) + "\n")
    try:
        wall = run_sweep(work, name, sweep, seeds)
        print(f"{label}: {len(seeds.split(','))} runs in {wall:.0f} s", flush=True)
    except subprocess.CalledProcessError as err:
        print(f"{label}: failed (exit {err.returncode}); going on", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", choices=list(BASELINE), default="classification")
    p.add_argument("--teacher", help="a local checkpoint directory (models/real/...) or a hub id")
    p.add_argument("--data", nargs="+", help="a directory with train.* and dev.*, two files, or a hub dataset id")
    p.add_argument(
        "--methods", nargs="+", help="default: every method of the task; METHOD:key=value,... a variant (own row)"
    )
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--steps", type=int, help="train.max_steps for every run (the budget; or give it in --override)")
    p.add_argument("--name", default="real", help="the folder under --work")
    p.add_argument("--work", type=Path, default=Path("outputs/bench_real"))
    p.add_argument("--override", nargs="*", default=[], help="config overrides for every run")
    p.add_argument("--report-only", action="store_true", help="the table again from the runs under --work/--name")
    p.add_argument(
        "--blackbox",
        nargs="*",
        default=[],
        help="causal_lm: methods against the teacher served as a black box (blackbox_sft, blackbox_sft:pipeline=...)",
    )
    p.add_argument("--blackbox-override", nargs="*", default=[], help="config overrides for the --blackbox runs only")
    args = p.parse_args()
    work = args.work.resolve()
    folder = work / args.name
    if not args.report_only:
        if not args.teacher or not args.data:
            p.error("--teacher and --data are needed to run (or --report-only)")
        if args.blackbox and args.task != "causal_lm":
            p.error("--blackbox serves a causal LM teacher: --task causal_lm")
        methods = args.methods if args.methods is not None else [] if args.blackbox else task_methods(args.task)
        unknown = {variant(m)[0] for m in methods + args.blackbox} - set(task_methods(args.task))
        if unknown:
            p.error(f"not methods of task {args.task}: {', '.join(sorted(unknown))}")
        common = [
            f"task={args.task}",
            *teacher_overrides(args.teacher),
            *data_overrides(args.task, args.data),
            *([f"train.max_steps={args.steps}"] if args.steps else []),
            *args.override,
        ]
        seeds = ",".join(map(str, args.seeds))
        folder.mkdir(parents=True, exist_ok=True)
        for method in methods:
            sweep = [*variant(method)[1], *common]
            sweep_logged(work, folder, f"{args.name}/{folder_name(method)}", sweep, seeds, method)
        if args.blackbox:
            blackbox_sweeps(args, work, folder, common, seeds)
    print(report(folder, None if args.report_only else args.task))
    print(f"\nwritten: {folder / 'table.md'}, {folder / 'plot.png'}")


if __name__ == "__main__":
    main()
