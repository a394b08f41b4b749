"""Black-box distillation (issue 22) on the embedded causal_lm task, the stub server as the API teacher, measured.
Prints figures and writes a markdown table; asserts nothing.

    python scripts/bench_blackbox.py quality [--seeds 1 2 3] [--steps N] [--rows N] [--eval-rows N]
    python scripts/bench_blackbox.py throughput [--latency 0.05] [--rows N]

``quality`` runs one ``python -m distillkit -m ... seed=<seeds>`` sweep per method (bench_common.run_sweep), every
run at the same student budget (``train.max_steps``: --steps, default the task's own budget for --rows rows, 6
epochs of batches of 32, i.e. 3000 steps for the default 16000 rows) and the embedded student's rate (3e-3):

- ``sft`` on the original data, ``forward_kl`` with the embedded white-box teacher (prepared once, --work/cache);
- ``blackbox_sft`` with ``method.pipeline=responses``, ``self_instruct``, ``explanations`` against the stub server
  (``scripts/openai_stub_server.py``, started here in a thread), which answers the embedded task's prompts right;
- ``star`` (``method.rounds=3``; the student writes, no server) with each round's accuracy: its ``star_gen<r>``
  stage's ``accuracy`` (the student's answers to the training prompts before rationalisation) and its
  ``round<r>`` stage's ``eval.exact_match``;
- ``critique_revise`` against a second stub whose first answers to the ``--wrong-first`` kinds (default add and
  count) are wrong (``Behaviour(wrong_first=...)``), its critique says so and its revision is right, next to its
  starting point: ``blackbox_sft`` responses from that same flawed stub (the unrevised answers). The flawed stub
  lists the model ``stub-flawed``, so the completion cache (keyed by the model name) keeps its answers apart.

self_instruct grows a pool from --seed-tasks training prompts (a seed file) by --new-tasks new tasks (default
rows / 8; the stub proposes add and sort tasks only) at ``method.rouge_threshold`` --rouge (0.9: the embedded
task's add and sort prompts differ in a number or two, so the default 0.7 rejects nearly every proposal).
explanations raises ``task.max_new_tokens`` to --explain-tokens (48) so the student's traces reach their
``Final answer:`` line. It prints per method the mean ± std over seeds of exact match, ROUGE-L and perplexity, the
optimizer steps, and the generation stage's kept rows, and writes ``<work>/<name>/table.md``.

``throughput`` starts a stub with a per-request latency (--latency, default 0.05 s) and runs ``blackbox_sft``
responses on --rows prompts at ``teacher.endpoint.concurrency`` 1 and 8 (each with an empty completion cache), then
the concurrency-8 run again on its cache: completions/s from each generation stage record, and what the cache saved
on the rerun (``paid``, ``cached_hits``, the generation stage's wall time). It writes ``<work>/throughput/table.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench_common import run_sweep  # noqa: E402 (after the sys.path set-up above)
from benchmark import distillkit  # noqa: E402 (after the sys.path set-up above)
from openai_stub_server import Behaviour, StubServer  # noqa: E402 (after the sys.path set-up above)

# (row label, sweep folder) in table order
METHODS = (
    ("sft (original data)", "sft"),
    ("forward_kl (white-box teacher)", "forward_kl"),
    ("blackbox_sft responses", "bb_responses"),
    ("blackbox_sft self_instruct", "bb_self_instruct"),
    ("blackbox_sft explanations", "bb_explanations"),
    ("star (3 rounds)", "star"),
    ("blackbox_sft responses, flawed stub (critique's start)", "bb_flawed"),
    ("critique_revise, flawed stub", "critique_revise"),
)


def _endpoint(server: StubServer, model: str, concurrency: int = 8) -> list[str]:
    return [
        "teacher=openai",
        f"teacher.endpoint.base_url={server.url}",
        f"teacher.endpoint.model={model}",
        "teacher.endpoint.api_key_env=null",
        f"teacher.endpoint.concurrency={concurrency}",
    ]


def _mean(values: list[float], digits: int = 4) -> str:
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def _results(folder: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*/results.json"))]


def default_steps(rows: int, batch: int = 32, epochs: int = 6) -> int:
    """The embedded task's default budget for ``rows`` training rows (conf/pair/embedded-llama_llama-small.yaml: 6
    epochs; batches of 32): 3000 steps for its 16000 rows."""
    return epochs * math.ceil(rows / batch)


def quality(args) -> None:
    work = args.work.resolve()
    folder = work / args.name
    folder.mkdir(parents=True, exist_ok=True)
    steps = args.steps or default_steps(args.rows)
    common = [
        "task=causal_lm",
        f"data.lm_synthetic.n_train={args.rows}",
        f"data.lm_synthetic.n_eval={args.eval_rows}",
        f"train.max_steps={steps}",
        "train.learning_rate=3e-3",  # the embedded student's from-scratch rate, whatever the teacher
        *args.override,
    ]
    from distillkit.tasks.causal_lm.synthetic import generate

    prompts = [r["prompt"] for r in generate(seed=0, n_train=args.rows, n_eval=args.eval_rows).train]
    seed_file = folder / "seed_tasks.jsonl"
    seed_file.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in prompts[: args.seed_tasks]))
    new_tasks = args.new_tasks or max(8, args.rows // 8)
    wrong = tuple(args.wrong_first)
    seeds = ",".join(map(str, args.seeds))
    print(
        f"quality: {args.rows} training rows, {args.eval_rows} eval rows, train.max_steps={steps} for every run, "
        f"seeds {seeds}; flawed stub: wrong_first={wrong}",
        flush=True,
    )
    good = StubServer(Behaviour(models=("stub",))).start()
    flawed = StubServer(Behaviour(models=("stub-flawed",), wrong_first=wrong)).start()
    sweeps = {
        "sft": ["method=sft"],
        "forward_kl": ["method=forward_kl"],
        "bb_responses": ["method=blackbox_sft", "method.pipeline=responses", *_endpoint(good, "stub")],
        "bb_self_instruct": [
            "method=blackbox_sft",
            "method.pipeline=self_instruct",
            f"method.seed_file={seed_file}",
            f"method.pool_size={args.seed_tasks + new_tasks}",
            f"method.rouge_threshold={args.rouge}",
            *_endpoint(good, "stub"),
        ],
        "bb_explanations": [
            "method=blackbox_sft",
            "method.pipeline=explanations",
            f"task.max_new_tokens={args.explain_tokens}",
            *_endpoint(good, "stub"),
        ],
        "star": ["method=star", "method.rounds=3", *args.star_override],
        "bb_flawed": ["method=blackbox_sft", "method.pipeline=responses", *_endpoint(flawed, "stub-flawed")],
        "critique_revise": ["method=critique_revise", *_endpoint(flawed, "stub-flawed")],
    }
    wanted = [sweep for _, sweep in METHODS if sweep in args.methods]

    def one(sweep: str) -> None:
        print(f"  {sweep}: {run_sweep(folder, sweep, common + sweeps[sweep], seeds):.0f} s", flush=True)

    try:  # --jobs sweeps at a time (1: one after another, as a user runs them)
        with ThreadPoolExecutor(args.jobs) as pool:
            list(pool.map(one, wanted))
    finally:
        good.stop()
        flawed.stop()
    report(folder, steps, wrong, args)


def _row(label: str, runs: list[dict]) -> list[str]:
    s = [r["student"] for r in runs]
    steps = sorted({r["budget"]["total"]["steps"] for r in runs})
    gen = [st["generation"] for r in runs for st in r["stages"][:1] if st.get("generation")]
    kept = _mean([g["kept"] for g in gen], 0) if gen and "kept" in gen[0] else "–"
    return [
        label,
        _mean([x["exact_match"] for x in s]),
        _mean([x["rouge_l"] for x in s]),
        _mean([x["perplexity"] for x in s], 3),
        "/".join(map(str, steps)),
        kept,
        str(len(runs)),
    ]


def _star_rounds(runs: list[dict]) -> list[str]:
    """Each STaR round's accuracy: star_gen<r>'s ``accuracy`` (the writer before round r's training) and
    round<r>'s ``eval.exact_match`` (after it), mean ± std over the seeds."""
    lines = []
    names = [st["name"] for st in runs[0]["stages"]]
    for name in names:
        stages = [st for r in runs for st in r["stages"] if st["name"] == name]
        if name.startswith("star_gen"):
            g = [st["generation"] for st in stages]
            lines.append(
                f"| `{name}` | accuracy (training prompts, before rationalisation) {_mean([x['accuracy'] for x in g])}"
                f" | kept {_mean([x['kept'] for x in g], 0)}, rationalised {_mean([x['rationalized'] for x in g], 0)} |"
            )
        elif name.startswith("round"):
            em = [st["eval"]["exact_match"] for st in stages if (st.get("eval") or {}).get("exact_match") is not None]
            lines.append(f"| `{name}` | eval exact match {_mean(em)} | {stages[0].get('steps', '?')} steps |")
    return lines


def report(folder: Path, steps: int, wrong: tuple, args) -> None:
    header = ["method", "exact match", "ROUGE-L", "perplexity", "optimizer steps", "generated rows kept", "n"]
    rows = []
    for label, sweep in METHODS:
        runs = _results(folder / sweep)
        if runs:
            rows.append(_row(label, runs))
    widths = [max(len(header[i]), *(len(r[i]) for r in rows)) for i in range(len(header))]
    print(f"\nquality ({folder}): mean ± std over seeds; train.max_steps={steps} for every run")
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)), flush=True)
    md = [
        f"Embedded causal_lm task, {args.rows} training rows, {args.eval_rows} eval rows, `train.max_steps={steps}` "
        f"and `train.learning_rate=3e-3` for every run, seeds {' '.join(map(str, args.seeds))}; flawed stub: "
        f"`wrong_first={list(wrong)}`.",
        "",
        "| " + " | ".join(header) + " |",
        "| " + " | ".join("---" for _ in header) + " |",
        *("| " + " | ".join(r) + " |" for r in rows),
    ]
    star = _results(folder / "star")
    if star:
        lines = _star_rounds(star)
        print("\nstar, per round:")
        for line in lines:
            print("  " + line.strip("|").replace(" | ", "  ").strip())
        md += [
            "",
            "STaR per round (mean ± std over seeds):",
            "",
            "| stage | accuracy | |",
            "| --- | --- | --- |",
            *lines,
        ]
    for sweep in ("bb_flawed", "critique_revise", "bb_self_instruct"):
        runs = _results(folder / sweep)
        if runs:
            g = runs[0]["stages"][0]["generation"]
            keys = ("prompts", "kept", "rejected", "rejected_by", "revised", "unchanged", "paid", "cached_hits")
            line = f"{sweep} generation (seed {runs[0]['run'].get('seed', '?')}): " + ", ".join(
                f"{k} {g[k]}" for k in keys if k in g
            )
            print(line)
            md += ["", line]
    (folder / "table.md").write_text("\n".join(md) + "\n")
    print(f"\nwrote {folder / 'table.md'}")


def throughput(args) -> None:
    work = args.work.resolve()
    folder = work / "throughput"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    server = StubServer(Behaviour(models=("stub",), latency_s=args.latency)).start()
    base = [
        "task=causal_lm",
        "logger=none",
        "method=blackbox_sft",
        f"data.lm_synthetic.n_train={args.rows}",
        f"data.lm_synthetic.n_eval={args.eval_rows}",
        "train.max_steps=1",  # the generation stage is what is measured; the student takes one step
        *args.override,
    ]
    runs = []
    try:
        for label, concurrency, cache in (
            ("concurrency 1", 1, "cache-c1"),
            ("concurrency 8", 8, "cache-c8"),
            ("concurrency 8, rerun (cache)", 8, "cache-c8"),
        ):
            run_dir = folder / f"run-{len(runs)}"
            overrides = [*base, *_endpoint(server, "stub", concurrency), f"cache_dir={folder / cache}"]
            distillkit([*overrides, f"hydra.run.dir={run_dir}"], folder)
            stage = json.loads((run_dir / "results.json").read_text())["stages"][0]
            runs.append((label, stage["generation"], stage["wall_time_s"]))
    finally:
        server.stop()
    header = ["run", "completions", "completions/s", "paid", "cached hits", "generation wall s"]
    rows = [
        [label, str(g["completions_requested"]), f"{g['completions_per_s']:.1f}", str(g["paid"]), str(g["cached_hits"]),
         f"{wall:.2f}"]
        for label, g, wall in runs
    ]  # fmt: skip
    widths = [max(len(header[i]), *(len(r[i]) for r in rows)) for i in range(len(header))]
    print(f"\nthroughput: blackbox_sft responses, {args.rows} prompts, stub latency {args.latency} s per request")
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)))
    (c1, g1, _), (c8, g8, w8), (_, g_re, w_re) = runs
    summary = (
        f"concurrency 8 vs 1: {g8['completions_per_s'] / max(g1['completions_per_s'], 1e-9):.1f}x completions/s; "
        f"the rerun paid {g_re['paid']} ({g_re['cached_hits']} cached hits), its generation stage took {w_re:.2f} s "
        f"vs {w8:.2f} s"
    )
    print(summary)
    md = [
        f"blackbox_sft responses on {args.rows} prompts of the embedded task; stub latency {args.latency} s per "
        "request.",
        "",
        "| " + " | ".join(header) + " |",
        "| " + " | ".join("---" for _ in header) + " |",
        *("| " + " | ".join(r) + " |" for r in rows),
        "",
        summary,
    ]
    (folder / "table.md").write_text("\n".join(md) + "\n")
    print(f"wrote {folder / 'table.md'}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("part", choices=["quality", "throughput"])
    p.add_argument("--work", type=Path, default=Path("outputs/bench_blackbox"))
    p.add_argument("--name", default="quality", help="the quality sweeps' folder under --work")
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--steps", type=int, default=None, help="train.max_steps of every run (default: the task's)")
    p.add_argument("--rows", type=int, default=None, help="training rows (default: quality 16000, throughput 500)")
    p.add_argument("--eval-rows", type=int, default=None, help="eval rows (default: quality 500, throughput 24)")
    p.add_argument("--methods", nargs="+", default=[s for _, s in METHODS], choices=[s for _, s in METHODS])
    p.add_argument("--wrong-first", nargs="*", default=["add", "count"], help="the flawed stub's wrong kinds")
    p.add_argument("--seed-tasks", type=int, default=16, help="self_instruct's seed tasks (training prompts)")
    p.add_argument("--new-tasks", type=int, default=None, help="self_instruct's new tasks (default rows / 8)")
    p.add_argument("--rouge", type=float, default=0.9, help="self_instruct's method.rouge_threshold")
    p.add_argument("--explain-tokens", type=int, default=48, help="explanations' task.max_new_tokens")
    p.add_argument("--latency", type=float, default=0.05, help="throughput: the stub's seconds per request")
    p.add_argument("--override", nargs="*", default=[], help="config overrides for every run")
    p.add_argument("--jobs", type=int, default=1, help="quality: sweeps run at once (default 1)")
    p.add_argument("--star-override", nargs="*", default=[], help="config overrides for the star runs only")
    args = p.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    if args.part == "quality":
        args.rows, args.eval_rows = args.rows or 16000, args.eval_rows or 500
        quality(args)
    else:
        args.rows, args.eval_rows = args.rows or 500, args.eval_rows or 24
        throughput(args)


if __name__ == "__main__":
    main()
