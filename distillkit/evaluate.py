"""Teacher and student on the same eval split: task metrics, agreement, KL, size and speed."""

from __future__ import annotations

import statistics
import time

import torch
from torch.utils.data import DataLoader

from distillkit.features import model_inputs
from distillkit.losses.logits import kl_per_example
from distillkit.models import count_parameters


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


def _sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


@torch.no_grad()
def measure_speed(model, dataset, collator, device, batch_size: int, latency_batches: int, throughput_batches: int):
    """Latency: median ms of single-example forward passes. Throughput: samples/s over full eval batches.
    Both after a warm-up pass, on the same examples for every model."""
    model.eval()
    singles = [collator([dataset[i]]) for i in range(min(latency_batches, len(dataset)))]
    fulls = list(DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collator))[:throughput_batches]

    def forward(batch):
        model(**model_inputs({k: v.to(device) for k, v in batch.items()}))

    forward(singles[0])
    forward(fulls[0])
    times = []
    for batch in singles:
        _sync(device)
        t0 = time.perf_counter()
        forward(batch)
        _sync(device)
        times.append(time.perf_counter() - t0)
    _sync(device)
    t0 = time.perf_counter()
    for batch in fulls:
        forward(batch)
    _sync(device)
    elapsed = time.perf_counter() - t0
    samples = sum(len(b["input_ids"]) for b in fulls)
    return {"latency_ms": statistics.median(times) * 1000, "throughput_samples_s": samples / elapsed}


def evaluate_pair(teacher, student, dataset, collator, num_labels: int, device, batch_size: int,
                  latency_batches: int, throughput_batches: int) -> dict:
    """The report's numbers: ``{"teacher": {...}, "student": {...}, "comparison": {...}}``."""
    t_logits, labels = predict(teacher, dataset, collator, batch_size, device)
    s_logits, _ = predict(student, dataset, collator, batch_size, device)
    out = {}
    for name, model, logits in (("teacher", teacher, t_logits), ("student", student, s_logits)):
        out[name] = {**classification_metrics(logits, labels, num_labels), "params": count_parameters(model),
                     **measure_speed(model, dataset, collator, device, batch_size, latency_batches, throughput_batches)}
    t, s = out["teacher"], out["student"]
    out["comparison"] = {
        **agreement_metrics(s_logits, t_logits),
        "retention": s["accuracy"] / t["accuracy"] if t["accuracy"] else 0.0,
        "compression": t["params"] / s["params"],
        "speedup": s["throughput_samples_s"] / t["throughput_samples_s"],
        "latency_speedup": t["latency_ms"] / s["latency_ms"],
    }
    return out
