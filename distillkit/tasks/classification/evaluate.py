"""Teacher and student on the same eval split: task metrics, agreement, KL, size and speed.

Speed is timed with the shared pieces of ``distillkit/speed.py``: ``eval.threads`` CPU threads, warm-up passes,
the two models taking turns batch by batch, ``eval.repeats`` repetitions summarised by their median and spread,
and speed-ups taken per repetition; here the timed pass is one forward pass of a batch."""

from __future__ import annotations

import gc
import statistics
import time

import torch
from torch.utils.data import DataLoader

from distillkit.losses.logits import kl_per_example
from distillkit.models.features import model_inputs
from distillkit.models.loading import count_parameters
from distillkit.speed import SPREAD, cpu_threads, in_turn, median_spread, sync


@torch.no_grad()
def predict(model, dataset, collator, batch_size: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (N, C) in fp32 on the CPU, and labels (N,), in dataset order."""
    model.eval()
    logits, labels = [], []
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collator):
        batch = {k: v.to(device) for k, v in batch.items()}
        logits.append(model(**model_inputs(batch)).logits.float().cpu())
        labels.append(batch["labels"].cpu())
    return torch.cat(logits), torch.cat(labels)


def classification_metrics(logits: torch.Tensor, labels: torch.Tensor, num_labels: int) -> dict[str, float]:
    """Accuracy and macro-averaged F1: the unweighted mean of per-class F1 over the classes that occur
    in the labels or the predictions (a class that occurs in neither is left out)."""
    pred = logits.argmax(-1)
    accuracy = (pred == labels).float().mean().item()
    f1s = []
    for c in range(num_labels):
        tp = ((pred == c) & (labels == c)).sum().item()
        fp = ((pred == c) & (labels != c)).sum().item()
        fn = ((pred != c) & (labels == c)).sum().item()
        if tp + fp + fn == 0:
            continue
        f1s.append(2 * tp / (2 * tp + fp + fn))
    return {"accuracy": accuracy, "f1_macro": sum(f1s) / len(f1s) if f1s else 0.0}


def agreement_metrics(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> dict[str, float]:
    """How closely the student follows the teacher: top-1 agreement and mean KL(teacher ‖ student) at T=1."""
    agree = (student_logits.argmax(-1) == teacher_logits.argmax(-1)).float().mean().item()
    return {"agreement": agree, "kl_to_teacher": kl_per_example(student_logits, teacher_logits).mean().item()}


def _timer(model, device, clock):
    """A function that runs ``model`` on one batch and returns the forward pass's time (s) on ``clock``."""

    def timed(batch) -> float:
        batch = {k: v.to(device) for k, v in model_inputs(batch).items()}
        sync(device)
        t0 = clock()
        model(**batch)
        sync(device)
        return clock() - t0

    return timed


def _repetitions(timers: dict, singles: list, fulls: list, repeats: int, warmup: int) -> dict:
    """Per model, per repetition: median single-example latency (ms) and samples/s over the full batches,
    the models taking turns batch by batch (``speed.in_turn``), so a repetition's speed-up compares passes
    taken moments apart."""
    samples = sum(len(b["input_ids"]) for b in fulls)
    for _ in range(warmup):
        in_turn(timers, singles[:1] + fulls[:1], 0)
    reps = {name: {"latency_ms": [], "throughput_samples_s": []} for name in timers}
    gc_was_enabled = gc.isenabled()
    gc.disable()  # a collection inside one model's pass would count against that model alone
    try:
        for r in range(repeats):
            for name, times in in_turn(timers, singles, r).items():
                reps[name]["latency_ms"].append(statistics.median(times) * 1000)
            for name, times in in_turn(timers, fulls, r).items():
                reps[name]["throughput_samples_s"].append(samples / sum(times))
    finally:
        if gc_was_enabled:
            gc.enable()
    return reps


@torch.no_grad()
def measure_speed(
    teacher,
    student,
    dataset,
    collator,
    device,
    batch_size: int,
    latency_batches: int,
    throughput_batches: int,
    threads: int | None = 1,
    repeats: int = 5,
    warmup: int = 2,
) -> dict:
    """Latency (median ms of single-example forward passes) and throughput (samples/s over eval batches) of
    teacher and student, timed in turn ``repeats`` times with ``threads`` CPU threads, after ``warmup``
    untimed passes, on the same examples. Each figure is the median over repetitions with its spread
    (``SPREAD``); the speed-ups are computed per repetition, then their median, so a slow moment of the
    machine divides out instead of landing on one model. Returns the report's sections:
    ``{"teacher": {...}, "student": {...}, "comparison": {...}, "speed": {how it was measured}}``."""
    teacher.eval()
    student.eval()
    singles = [collator([dataset[i]]) for i in range(min(latency_batches, len(dataset)))]
    fulls = list(DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collator))[:throughput_batches]
    with cpu_threads(threads, device) as used:
        # One CPU thread computes the whole forward pass on this thread: its CPU time is the time the pass
        # takes on an idle core, and, unlike wall time, excludes the moments other processes held the core.
        clock = time.thread_time if used == 1 else time.perf_counter
        timers = {"teacher": _timer(teacher, device, clock), "student": _timer(student, device, clock)}
        reps = _repetitions(timers, singles, fulls, repeats, warmup)
    out = {}
    for name, figures in reps.items():
        out[name] = {}
        for key, values in figures.items():
            out[name][key], out[name][f"{key}_spread"] = median_spread(values)
    t, s = reps["teacher"], reps["student"]
    lat, lat_spread = median_spread([a / b for a, b in zip(t["latency_ms"], s["latency_ms"])])
    thr, thr_spread = median_spread([b / a for a, b in zip(t["throughput_samples_s"], s["throughput_samples_s"])])
    out["comparison"] = {
        "speedup": thr,
        "speedup_spread": thr_spread,
        "latency_speedup": lat,
        "latency_speedup_spread": lat_spread,
    }
    out["speed"] = _how_measured(device, used, clock, repeats, warmup, singles, fulls, batch_size)
    return out


def _how_measured(device, threads, clock, repeats, warmup, singles, fulls, batch_size) -> dict:
    """results.json's ``speed`` section: how the figures were measured."""
    return {
        "device": torch.device(device).type,
        "threads": threads,
        "clock": "thread_cpu" if clock is time.thread_time else "wall",
        "repeats": repeats,
        "warmup": warmup,
        "latency_examples": len(singles),
        "throughput_batches": len(fulls),
        "batch_size": batch_size,
        "spread": SPREAD,
    }


def evaluate_pair(
    teacher,
    student,
    dataset,
    collator,
    num_labels: int,
    device,
    batch_size: int,
    latency_batches: int,
    throughput_batches: int,
    threads: int | None = 1,
    repeats: int = 5,
    warmup: int = 2,
) -> dict:
    """The report's numbers: ``{"teacher": {...}, "student": {...}, "comparison": {...}, "speed": {...}}``."""
    t_logits, labels = predict(teacher, dataset, collator, batch_size, device)
    s_logits, _ = predict(student, dataset, collator, batch_size, device)
    speed = measure_speed(
        teacher,
        student,
        dataset,
        collator,
        device,
        batch_size,
        latency_batches,
        throughput_batches,
        threads,
        repeats,
        warmup,
    )
    out = {}
    for name, model, logits in (("teacher", teacher, t_logits), ("student", student, s_logits)):
        out[name] = {
            **classification_metrics(logits, labels, num_labels),
            "params": count_parameters(model),
            **speed[name],
        }
    t, s = out["teacher"], out["student"]
    out["comparison"] = {
        **agreement_metrics(s_logits, t_logits),
        "retention": s["accuracy"] / t["accuracy"] if t["accuracy"] else 0.0,
        "compression": t["params"] / s["params"],
        **speed["comparison"],
    }
    out["speed"] = speed["speed"]
    return out


def evaluate_student(
    student,
    dataset,
    collator,
    num_labels: int,
    device,
    batch_size: int,
    latency_batches: int,
    throughput_batches: int,
    threads: int | None = 1,
    repeats: int = 5,
    warmup: int = 2,
) -> dict:
    """The report's numbers when the run has no teacher (``teacher=none``): the student's metrics, size and
    speed; ``teacher`` and ``comparison`` are None."""
    logits, labels = predict(student, dataset, collator, batch_size, device)
    singles = [collator([dataset[i]]) for i in range(min(latency_batches, len(dataset)))]
    fulls = list(DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collator))[:throughput_batches]
    student.eval()
    with torch.no_grad(), cpu_threads(threads, device) as used:
        clock = time.thread_time if used == 1 else time.perf_counter
        reps = _repetitions({"student": _timer(student, device, clock)}, singles, fulls, repeats, warmup)["student"]
    speed = {}
    for key, values in reps.items():
        speed[key], speed[f"{key}_spread"] = median_spread(values)
    return {
        "teacher": None,
        "comparison": None,
        "student": {**classification_metrics(logits, labels, num_labels), "params": count_parameters(student), **speed},
        "speed": _how_measured(device, used, clock, repeats, warmup, singles, fulls, batch_size),
    }


def evaluate_run(teacher, student, dataset, collator, num_labels: int, device, batch_size: int, ev) -> dict:
    """``evaluate_pair`` (or ``evaluate_student`` without a teacher) with the ``eval`` group's settings."""
    student.to(device)
    args = (
        dataset,
        collator,
        num_labels,
        device,
        batch_size,
        ev.latency_batches,
        ev.throughput_batches,
        ev.threads,
        ev.repeats,
        ev.warmup,
    )
    if teacher is None:
        return evaluate_student(student, *args)
    teacher.to(device)
    return evaluate_pair(teacher, student, *args)


@torch.no_grad()
def stage_scores(model, source, dataset, collator, num_labels: int, device, batch_size: int) -> dict:
    """A stage's model on the eval split when the stage ends: its accuracy and macro-F1, and, when the stage had
    a teacher source, the teacher's own accuracy (an EMA, a snapshot or generation ensemble: whatever the
    stage learned from) and the model's top-1 agreement with it."""
    from distillkit.models.features import FeatureSpec

    logits, labels = predict(model, dataset, collator, batch_size, device)
    scores = classification_metrics(logits, labels, num_labels)
    if source is None:
        return scores
    teacher = []
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collator):
        out = source.outputs({k: v.to(device) for k, v in batch.items()}, FeatureSpec(), training=False)
        if out is None:  # a snapshot source that never took a snapshot
            return scores
        teacher.append(out.logits.float().cpu())
    teacher = torch.cat(teacher)
    t_scores = classification_metrics(teacher, labels, num_labels)
    return {
        **scores,
        "teacher_accuracy": t_scores["accuracy"],
        "agreement_with_teacher": (logits.argmax(-1) == teacher.argmax(-1)).float().mean().item(),
    }


def describe_scores(scores: dict) -> str:
    text = f"eval accuracy {scores['accuracy']:.4f}, macro-F1 {scores['f1_macro']:.4f}"
    if "teacher_accuracy" in scores:
        text += (
            f"; its teacher {scores['teacher_accuracy']:.4f}, agreement {scores['agreement_with_teacher'] * 100:.1f}%"
        )
    return text


def trainer_metrics(num_labels: int):
    """The Trainer's ``compute_metrics`` for evaluation during training (``eval.every``): accuracy and macro-F1,
    computed exactly as the final report computes them (``classification_metrics``)."""

    def compute(prediction) -> dict[str, float]:
        logits = torch.as_tensor(prediction.predictions).float()
        return classification_metrics(logits, torch.as_tensor(prediction.label_ids), num_labels)

    return compute
