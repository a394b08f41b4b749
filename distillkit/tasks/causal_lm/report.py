"""The causal-LM task's numbers: results.json's teacher / student / comparison / speed sections, a stage's eval
line, the printed table's rows, and the sample of generations that goes to the log and to W&B."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader

from distillkit.models.loading import count_parameters
from distillkit.speed import spread_text


def _loader(dataset, collator, batch_size: int, limit: int | None = None):
    if limit is not None and limit < len(dataset):
        dataset = dataset.select(range(limit))
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collator)


def _scores(tokens: dict, gens: dict, model) -> dict:
    from distillkit.tasks.causal_lm import evaluate as lm_eval

    return {
        **lm_eval.generation_scores(gens),
        "perplexity": tokens["perplexity"],
        "nll": tokens["nll"],
        "response_tokens": tokens["tokens"],
        "generated": len(gens["predictions"]),
        "mean_generated_tokens": gens["new_tokens"] / max(1, len(gens["predictions"])),
        "params": count_parameters(model),
    }


def evaluate_run(teacher, student, eval_set, collator, tokenizer, device, cfg) -> dict:
    """Teacher and student on the eval split: perplexity and token agreement over every response token; exact
    match and ROUGE-L of greedy generations for ``task.eval_generations`` prompts; generation speed (each model
    generating exactly ``task.max_new_tokens`` tokens for ``task.speed_batches`` prompt batches, in turn,
    ``eval.repeats`` times). ``generations`` holds the first ``task.show_generations`` examples."""
    from distillkit.tasks.causal_lm import evaluate as lm_eval

    t, bs = cfg.task, cfg.hardware.eval_batch_size
    models = {"student": student} if teacher is None else {"teacher": teacher, "student": student}
    for model in models.values():
        model.to(device)
    tokens = lm_eval.token_pass(
        models, _loader(eval_set, collator, bs), device, reference="teacher" if teacher is not None else None
    )
    gens = {
        name: lm_eval.generations(
            model, tokenizer, _loader(eval_set, collator, bs, t.eval_generations), device, t.max_new_tokens
        )
        for name, model in models.items()
    }
    batches = list(_loader(eval_set, collator, bs))[: t.speed_batches]
    speed = lm_eval.generation_speed(
        models,
        batches,
        device,
        t.max_new_tokens,
        tokenizer.eos_token_id,
        tokenizer.pad_token_id,
        threads=cfg.eval.threads,
        repeats=cfg.eval.repeats,
        warmup=cfg.eval.warmup,
    )
    out = {name: {**_scores(tokens[name], gens[name], model), **speed[name]} for name, model in models.items()}
    cpu = torch.device(device).type == "cpu"
    how = {
        "device": torch.device(device).type,
        "threads": cfg.eval.threads,
        "repeats": cfg.eval.repeats,
        "clock": "thread_cpu" if cpu and cfg.eval.threads == 1 else "wall",
        "warmup": cfg.eval.warmup,
        "batches": len(batches),
        "batch_size": bs,
        "new_tokens": t.max_new_tokens,
        "what": "greedy generation, every model generating exactly new_tokens tokens per prompt",
    }
    result = {
        "teacher": out.get("teacher"),
        "student": out["student"],
        "comparison": None,
        "speed": how,
        "generations": _sample(gens, t.show_generations),
    }
    if teacher is not None:
        s, te = out["student"], out["teacher"]
        result["comparison"] = {
            "agreement": tokens["student"]["agreement"],
            "retention": s["exact_match"] / te["exact_match"] if te["exact_match"] else 0.0,
            "rouge_l_retention": s["rouge_l"] / te["rouge_l"] if te["rouge_l"] else 0.0,
            "perplexity_ratio": s["perplexity"] / te["perplexity"],
            "compression": te["params"] / s["params"],
            **speed["comparison"],
        }
    return result


def _sample(gens: dict, n: int) -> list[dict]:
    names = list(gens)
    first = gens[names[0]]
    rows = []
    for i in range(min(n, len(first["predictions"]))):
        row = {"prompt": first["prompts"][i], "reference": first["references"][i]}
        row.update({name: gens[name]["predictions"][i] for name in names})
        rows.append(row)
    return rows


@torch.no_grad()
def stage_scores(model, source, eval_set, collator, tokenizer, device, cfg) -> dict:
    """A stage's model when the stage ends: perplexity, exact match and ROUGE-L on ``task.stage_generations``
    prompts, and top-1 token agreement with the stage's teacher when it is one frozen model."""
    from distillkit.tasks.causal_lm import evaluate as lm_eval

    bs = cfg.hardware.eval_batch_size
    models = {"model": model}
    frozen = source.modules() if source is not None else []
    if len(frozen) == 1:
        models["teacher"] = frozen[0]
    tokens = lm_eval.token_pass(
        models, _loader(eval_set, collator, bs), device, reference="teacher" if "teacher" in models else None
    )
    gens = lm_eval.generations(
        model, tokenizer, _loader(eval_set, collator, bs, cfg.task.stage_generations), device, cfg.task.max_new_tokens
    )
    scores = _scores(tokens["model"], gens, model)
    del scores["params"]
    if "teacher" in models:
        scores["agreement_with_teacher"] = tokens["model"]["agreement"]
    return scores


def task_section(cfg, train_examples: int, eval_examples: int) -> dict:
    """results.json's ``task`` section."""
    return {
        "name": "causal_lm",
        "metric": "exact_match",
        "train_examples": train_examples,
        "eval_examples": eval_examples,
        "max_new_tokens": cfg.task.max_new_tokens,
        "eval_generations": cfg.task.eval_generations,
    }


def rows(results: dict) -> list[tuple[str, str, str, str]]:
    """The printed table's rows (``report.format_table``)."""
    t, s, c = results["teacher"], results["student"], results["comparison"]
    if t is None:
        return [
            ("exact match", "", f"{s['exact_match']:.4f}", ""),
            ("ROUGE-L", "", f"{s['rouge_l']:.4f}", ""),
            ("perplexity", "", f"{s['perplexity']:.3f}", ""),
            ("parameters", "", f"{s['params']:,}", ""),
            ("generation (tokens/s)", "", f"{s['gen_tokens_per_s']:.0f}{spread_text(s, 'gen_tokens_per_s')}", ""),
        ]
    return [
        ("exact match", f"{t['exact_match']:.4f}", f"{s['exact_match']:.4f}", f"retention {c['retention'] * 100:.1f}%"),
        ("ROUGE-L", f"{t['rouge_l']:.4f}", f"{s['rouge_l']:.4f}", ""),
        ("perplexity", f"{t['perplexity']:.3f}", f"{s['perplexity']:.3f}", ""),
        ("parameters", f"{t['params']:,}", f"{s['params']:,}", f"compression {c['compression']:.2f}×"),
        (
            "generation (tokens/s)",
            f"{t['gen_tokens_per_s']:.0f}{spread_text(t, 'gen_tokens_per_s')}",
            f"{s['gen_tokens_per_s']:.0f}{spread_text(s, 'gen_tokens_per_s')}",
            f"speed-up {c['gen_speedup']:.2f}×{spread_text(c, 'gen_speedup')}",
        ),
        ("token agreement with teacher", "", f"{c['agreement'] * 100:.1f}%", ""),
    ]


def eval_text(scores: dict) -> str:
    """A stage's ``eval`` in the printed table's list of the models the stages produced."""
    text = f"exact match {scores['exact_match']:.4f} · ROUGE-L {scores['rouge_l']:.4f} · ppl {scores['perplexity']:.3f}"
    return text + (
        f" · agreement {scores['agreement_with_teacher'] * 100:.1f}%" if "agreement_with_teacher" in scores else ""
    )


def show_generations(results: dict, wandb_run=None) -> str:
    """The sample of generations as text (for the log), and as a W&B table when a run is open."""
    sample = results.get("generations") or []
    if not sample:
        return ""
    columns = list(sample[0])
    if wandb_run is not None:
        import wandb

        wandb_run.log({"generations": wandb.Table(columns=columns, data=[[r[c] for c in columns] for r in sample])})
    lines = ["Generations (eval prompts, greedy):"]
    for r in sample:
        lines.append("  prompt: " + r["prompt"].strip().replace("\n", " ⏎ "))
        lines.extend(f"    {c}: {r[c]!r}" for c in columns if c != "prompt")
    return "\n".join(lines)
