"""Compare finished distillkit runs: a results table plus a PNG bar plot (local W&B dashboard).

Usage::

    python -m distillkit.compare multirun/2026-11-22/19-00-00            # one sweep
    python -m distillkit.compare SWEEP_A SWEEP_B --group-by-seed         # mean ± std over seeds
    python -m distillkit.compare SWEEP --sort=-retention --plot out.png  # '-' sorts descending
    python -m distillkit.compare SWEEP --stages --group-by-seed          # a row per generation/round/link

Every ``results.json`` (schema version 2, or 1) under each directory is read, recursively. ``--stages``
gives a row per model a run's stages produced (born-again generations, noisy-student rounds, TAKD's
assistants and student): its eval accuracy, its own teacher's (the dash in the plot) and their agreement. Job dirs
(those with a ``.hydra/`` folder) without one, or whose status is not "complete", are listed
under the table as failed/unfinished. The plot goes to ``<first DIR>/compare.png`` unless
``--plot`` says otherwise. Exit codes: 0 ok, 2 no complete results found.

From Python: ``compare(paths, group_by_seed=False, plot_path=None) -> list[dict]``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
from pathlib import Path

SCHEMA_VERSION = 2
READABLE_VERSIONS = (1, 2)  # version 2 changed stage records only; the keys read here mean the same
SEED_RE = re.compile(r"^\+{0,2}seed=")
GROUP_STATS = ("student_metric", "retention", "agreement", "kl")
SORT_KEYS = (
    "job",
    "method",
    "student",
    "n",
    "teacher_metric",
    "student_metric",
    "retention",
    "agreement",
    "kl",
    "compression",
    "speedup",
    "wall_s",
    "steps",
    "examples",
)


def _natural(path: Path) -> list:
    """Sort key that puts job dir 10 after 9."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(path))]


def discover(paths) -> tuple[list[Path], list[Path]]:
    """Return (results.json files, job dirs that have none) found under ``paths``."""
    files, bare_jobs, seen = [], [], set()
    for root in map(Path, paths):
        if root.is_file():
            candidates = [(root.parent, [root.name], [])]
        else:
            candidates = ((Path(d), names, subdirs) for d, subdirs, names in os.walk(root))
        for d, names, subdirs in candidates:
            key = d.resolve()
            if key in seen:
                continue
            seen.add(key)
            if "results.json" in names:
                files.append(d / "results.json")
            elif ".hydra" in subdirs:
                bare_jobs.append(d)
    return sorted(files, key=_natural), sorted(bare_jobs, key=_natural)


def _overrides(run: dict, job_dir: Path) -> list[str]:
    if isinstance(run.get("overrides"), list):
        return [str(o) for o in run["overrides"]]
    path = job_dir / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return []
    try:
        import yaml  # PyYAML ships with hydra-core/omegaconf

        data = yaml.safe_load(path.read_text())
    except Exception:  # noqa: BLE001 - a broken overrides file must not stop the table
        return []
    return [str(o) for o in data] if isinstance(data, list) else []


def _row(data: dict, job_dir: Path) -> dict:
    run, task = data.get("run") or {}, data.get("task") or {}
    teacher, student = data.get("teacher") or {}, data.get("student") or {}
    cmp_, metric = data.get("comparison") or {}, task.get("metric", "accuracy")
    return {
        "job": run.get("name") or job_dir.name,
        "dir": str(job_dir),
        "method": run.get("method"),
        "student": run.get("student"),
        "teacher": run.get("teacher"),
        "seed": run.get("seed"),
        "overrides": _overrides(run, job_dir),
        "metric": metric,
        "teacher_metric": teacher.get(metric),
        "student_metric": student.get(metric),
        "retention": cmp_.get("retention"),
        "agreement": cmp_.get("agreement"),
        "kl": cmp_.get("kl_to_teacher"),
        "compression": cmp_.get("compression"),
        "speedup": cmp_.get("speedup", cmp_.get("gen_speedup")),
        "wall_s": run.get("wall_time_s"),
        **spent(data),
    }


def spent(data: dict) -> dict:
    """The distillation's budget a run spent (results' ``budget.total``): optimizer steps, training examples,
    teacher forward rows; for results written before that section, the steps its stages' records add up to."""
    total = (data.get("budget") or {}).get("total")
    if total:
        return {
            "steps": total.get("steps"),
            "examples": total.get("examples"),
            "teacher_fwd": total.get("teacher_forwards"),
        }
    steps = [s.get("steps") for s in data.get("stages") or [] if s.get("name") != "teacher_prep"]
    return {"steps": sum(x for x in steps if isinstance(x, int)) or None, "examples": None, "teacher_fwd": None}


BUDGET_TOLERANCE = 0.05


def budget_mismatches(rows: list[dict], tolerance: float = BUDGET_TOLERANCE) -> tuple[dict, list[dict]]:
    """(the reference budget: the median steps and examples over ``rows``, the rows whose steps or examples differ
    from it by more than ``tolerance``). Methods compare fairly only at the same budget."""
    reference, off = {}, []
    for key in ("steps", "examples"):
        values = [v for v in (_num(r.get(key)) for r in rows) if v is not None]
        if values:
            reference[key] = statistics.median(values)
    for r in rows:
        diffs = [
            abs(_num(r.get(k)) - ref) / ref
            for k, ref in reference.items()
            if ref and _num(r.get(k)) is not None and abs(_num(r.get(k)) - ref) / ref > tolerance
        ]
        if diffs:
            off.append(r)
    return reference, off


def budget_warning(rows: list[dict]) -> str:
    """The lines compare prints first when runs spent different budgets (else "")."""
    reference, off = budget_mismatches(rows)
    if not off:
        return ""
    ref = ", ".join(f"{v:,.0f} {'optimizer steps' if k == 'steps' else k}" for k, v in reference.items())
    lines = [
        f"BUDGET MISMATCH: {len(off)} of {len(rows)} runs spent a budget more than {BUDGET_TOLERANCE:.0%} away from "
        f"the median ({ref}); their figures do not compare at equal compute (train.epochs / train.max_steps are "
        "the whole distillation's budget; method.<stage>.epochs pins a stage on top of it):"
    ]
    for r in off:
        examples = f", {r['examples']:,} examples" if _num(r.get("examples")) is not None else ""
        lines.append(f"  {r['job']}: {r.get('steps')} steps{examples}")
    return "\n".join(lines)


def _why_no_results(job_dir: Path) -> str:
    """A job without results.json: skipped by its sweep (skipped.txt), failed (error.txt), or unfinished."""
    for name, prefix in (("skipped.txt", "skipped: "), ("error.txt", "failed: ")):
        path = job_dir / name
        if path.is_file():
            lines = path.read_text(errors="replace").strip().splitlines()
            return prefix + (
                lines[-1]
                if name == "error.txt" and lines and lines[0].startswith("Traceback")
                else lines[0]
                if lines
                else ""
            )
    return "no results.json (still running, or killed)"


def load(paths, stages: bool = False) -> tuple[list[dict], list[tuple[str, str]], list[str]]:
    """Read all results under ``paths``: (rows, [(dir, reason) of failed jobs], warnings); ``stages``: a row per
    produced model of each run (``_stage_rows``) instead of one per run."""
    files, bare_jobs = discover(paths)
    rows, failed = [], [(str(d), _why_no_results(d)) for d in bare_jobs]
    warnings = [f"warning: {p} does not exist" for p in map(Path, paths) if not p.exists()]
    for f in files:
        try:
            data = json.loads(f.read_text())
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError) as exc:
            failed.append((str(f.parent), f"unreadable results.json ({exc})"))
            continue
        if data.get("status") != "complete":
            failed.append((str(f.parent), f"status {data.get('status')!r}"))
            continue
        if data.get("schema_version") not in READABLE_VERSIONS:
            warnings.append(
                f"warning: {f}: schema_version {data.get('schema_version')!r} "
                f"(expected {SCHEMA_VERSION}); reading it as version {SCHEMA_VERSION}"
            )
        rows.extend(_stage_rows(data, f.parent) if stages else [_row(data, f.parent)])
    return rows, failed, warnings


def _stage_rows(data: dict, job_dir: Path) -> list[dict]:
    """A row per stage that produced an evaluated model: its metric, its teacher's, their agreement."""
    base, rows = _row(data, job_dir), []
    for stage in data.get("stages") or []:
        scores = stage.get("eval")
        if not scores:
            continue
        rows.append(
            {
                **base,
                "job": f"{base['job']} · {stage['name']}",
                "stage": stage["name"],
                "teacher_metric": scores.get(f"teacher_{base['metric']}"),
                "student_metric": scores.get(base["metric"]),
                "agreement": scores.get("agreement_with_teacher"),
                "retention": None,
                "kl": None,
                "compression": None,
                "speedup": None,
                "wall_s": stage.get("wall_time_s"),
            }
        )
    return rows


def _num(v) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and v == v else None


def group_seeds(rows: list[dict]) -> list[dict]:
    """Merge jobs whose overrides differ only in ``seed=``: mean and sample std per stat."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        key = (r.get("stage") or "",) + tuple(sorted(o for o in r["overrides"] if not SEED_RE.match(o)))
        groups.setdefault(key, []).append(r)
    keys = [set(key[1:]) for key in groups]
    shared = set.intersection(*keys) if len(keys) > 1 else set()
    out = []
    for key, members in groups.items():
        first = members[0]
        label = ",".join(o for o in key[1:] if o not in shared) or "(defaults)"  # shared overrides say nothing
        g = {
            "job": f"{key[0]}: {label}" if key[0] else label,
            "method": first["method"],
            "student": first["student"],
            "metric": first["metric"],
            "n": len(members),
            "seeds": [m["seed"] for m in members],
            "dirs": [m["dir"] for m in members],
        }
        for stat in ("teacher_metric", "steps", "examples", "teacher_fwd") + GROUP_STATS:
            vals = [x for x in (_num(m[stat]) for m in members) if x is not None]
            g[stat] = statistics.mean(vals) if vals else None
            if stat in GROUP_STATS:
                g[stat + "_std"] = statistics.stdev(vals) if len(vals) >= 2 else None
        out.append(g)
    return out


def _fmt(v, digits: int, scale: float = 1.0, std=None) -> str:
    x = _num(v)
    if x is None:
        return "-"
    s = f"{x * scale:.{digits}f}"
    return s if _num(std) is None else f"{s} ± {std * scale:.{digits}f}"


def _columns(metric: str, grouped: bool) -> list[tuple]:
    """(header, key, digits, scale); digits None means a text column."""
    cols = [
        ("group" if grouped else "job", "job", None, 1),
        ("method", "method", None, 1),
        ("student", "student", None, 1),
    ] + ([("n", "n", 0, 1)] if grouped else [])
    cols += [
        (f"teacher {metric}", "teacher_metric", 4, 1),
        (f"student {metric}", "student_metric", 4, 1),
        ("retention %", "retention", 1, 100),
        ("agreement %", "agreement", 1, 100),
        ("KL", "kl", 4, 1),
    ]
    cols += [("steps", "steps", 0, 1), ("examples", "examples", 0, 1), ("teacher fwd", "teacher_fwd", 0, 1)]
    if not grouped:
        cols += [("compression ×", "compression", 2, 1), ("speed-up ×", "speedup", 2, 1), ("wall s", "wall_s", 1, 1)]
    return cols


def format_table(rows: list[dict], grouped: bool = False, max_text: int = 40) -> str:
    """Fixed-width plain-text table: text columns left-aligned, numbers right-aligned."""
    metrics = {r["metric"] for r in rows}
    cols = _columns(metrics.pop() if len(metrics) == 1 else "metric", grouped)
    cells = []
    for r in rows:
        line = []
        for _, key, digits, scale in cols:
            if digits is None:
                text = "-" if r.get(key) is None else str(r[key])
                line.append(text if len(text) <= max_text else text[: max_text - 2] + "..")
            else:
                line.append(_fmt(r.get(key), digits, scale, r.get(key + "_std")))
        cells.append(line)
    widths = [max([len(c[0])] + [len(line[i]) for line in cells]) for i, c in enumerate(cols)]

    def render(line):
        return "  ".join(t.ljust(w) if c[2] is None else t.rjust(w) for t, w, c in zip(line, widths, cols)).rstrip()

    header = render([c[0] for c in cols])
    return "\n".join([header, "-" * len(header)] + [render(line) for line in cells])


def y_limits(values: list[float], margin: float = 0.15) -> tuple[float, float]:
    """An axis range fitted to ``values`` (bar tops ± std, teacher marks) with ``margin`` of their range
    either side, so jobs a few points apart look apart; never below 0 when no value is."""
    lo, hi = min(values), max(values)
    pad = max((hi - lo) * margin, abs(hi) * 0.02, 1e-3)
    bottom = lo - pad
    return (max(bottom, 0.0) if lo >= 0 else bottom), hi + pad


def figure(rows: list[dict], grouped: bool = False):
    """One bar per job/group (student metric, std error bars), teacher metric as a dash per bar. The y-axis
    spans the data, not 0 to the top: differences of a few points are what the plot is for."""
    from matplotlib.figure import Figure  # object API: Agg canvas, no display, no pyplot state

    metrics = {r["metric"] for r in rows}
    metric = metrics.pop() if len(metrics) == 1 else "metric"
    x = list(range(len(rows)))
    student = [_num(r["student_metric"]) or 0.0 for r in rows]
    err = [_num(r.get("student_metric_std")) or 0.0 for r in rows] if grouped else None
    fig = Figure(figsize=(max(6.0, 0.5 * len(rows) + 2.5), 5.0))
    ax = fig.add_subplot()
    ax.bar(x, student, yerr=err, capsize=3, color="tab:blue", label=f"student {metric}")
    teach = [(i, t) for i, t in enumerate(_num(r["teacher_metric"]) for r in rows) if t is not None]
    if teach:
        ax.hlines(
            [t for _, t in teach],
            [i - 0.4 for i, _ in teach],
            [i + 0.4 for i, _ in teach],
            colors="tab:red",
            linewidth=2,
            label=f"teacher {metric}",
        )
    labels = [(f"{r['job']} (n={r['n']})" if grouped else str(r["job"])) for r in rows]
    ax.set_xticks(
        x,
        [lb if len(lb) <= 40 else lb[:38] + ".." for lb in labels],
        rotation=45,
        ha="right",
        rotation_mode="anchor",
        fontsize=8,
    )
    shown = [t for _, t in teach]
    for r, e in zip(rows, err or [0.0] * len(rows)):
        if _num(r["student_metric"]) is not None:
            shown += [r["student_metric"] - e, r["student_metric"] + e]
    if shown:
        ax.set_ylim(*y_limits(shown))
    ax.set_ylabel(metric)
    ax.set_title(f"{metric}: student vs teacher" + (" (mean ± std over seeds)" if grouped else ""))
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    fig.tight_layout()
    return fig


def plot(rows: list[dict], path, grouped: bool = False) -> Path:
    """``figure(rows)`` written as a PNG to ``path``."""
    fig = figure(rows, grouped)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path


def _sort(rows: list[dict], column: str) -> list[dict]:
    key, reverse = column.lstrip("-"), column.startswith("-")
    present = sorted(
        (r for r in rows if r.get(key) is not None), key=lambda r: (isinstance(r[key], str), r[key]), reverse=reverse
    )
    return present + [r for r in rows if r.get(key) is None]  # missing values always last


def compare(
    paths, group_by_seed: bool = False, plot_path=None, sort: str | None = None, out=None, stages: bool = False
) -> list[dict]:
    """Print the table (and failed jobs) to ``out``, write the plot, return the rows shown.

    ``plot_path=None`` writes ``<first DIR>/compare.png``; ``plot_path=False`` skips the plot.
    """
    out = out or sys.stdout
    paths = [Path(p) for p in ([paths] if isinstance(paths, (str, os.PathLike)) else paths)]
    rows, failed, warnings = load(paths, stages)
    mismatch = budget_warning(rows) if not stages else ""
    if mismatch:
        print(mismatch + "\n", file=out)
    for w in warnings:
        print(w, file=out)
    if group_by_seed:
        rows = group_seeds(rows)
    if sort:
        rows = _sort(rows, sort)
    if rows:
        print(format_table(rows, grouped=group_by_seed), file=out)
    skipped = [(d, why) for d, why in failed if why.startswith("skipped: ")]
    failed = [(d, why) for d, why in failed if not why.startswith("skipped: ")]
    for title, jobs in (("skipped jobs", skipped), ("failed/unfinished jobs", failed)):
        if jobs:
            print(f"\n{title} ({len(jobs)}):", file=out)
            for d, why in jobs:
                print(f"  {d}: {why}", file=out)
    if rows and plot_path is not False:
        base = paths[0] if paths[0].is_dir() else paths[0].parent
        written = plot(rows, plot_path or base / "compare.png", grouped=group_by_seed)
        print(f"\nplot written: {written}", file=out)
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m distillkit.compare", description=__doc__.split("\n")[0])
    parser.add_argument("dirs", nargs="+", metavar="DIR", help="sweep or run directories")
    parser.add_argument("--group-by-seed", action="store_true", help="mean ± std over seeds")
    parser.add_argument("--plot", metavar="PATH", help="PNG path (default: DIR/compare.png)")
    parser.add_argument("--no-plot", action="store_true", help="do not write a plot")
    parser.add_argument(
        "--stages", action="store_true", help="a row per model the stages produced (generations, rounds, assistants)"
    )
    parser.add_argument(
        "--sort", metavar="COLUMN", help=f"sort by one of {', '.join(SORT_KEYS)}; prefix '-' for descending"
    )
    args = parser.parse_args(argv)
    if args.sort and args.sort.lstrip("-") not in SORT_KEYS:
        parser.error(f"--sort: unknown column {args.sort!r}; choose from {', '.join(SORT_KEYS)}")
    rows = compare(args.dirs, args.group_by_seed, False if args.no_plot else args.plot, args.sort, stages=args.stages)
    if not rows:
        print(
            f"error: no results found: looked recursively for results.json files "
            f'(schema_version {SCHEMA_VERSION}, status "complete") under: '
            f"{', '.join(args.dirs)}",
            file=sys.stderr,
        )
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
