"""The classification task's report: results.json's ``task`` section, the printed table's rows and a stage's line
in the table's list of the models the stages produced."""

from __future__ import annotations

from distillkit.speed import spread_text as _spread


def task_section(task_data, train_examples: int, eval_examples: int) -> dict:
    return {
        "name": "classification",
        "metric": "accuracy",
        "num_labels": task_data.num_labels,
        "label_names": task_data.label_names,
        "train_examples": train_examples,
        "eval_examples": eval_examples,
    }


def rows(results: dict) -> list[tuple[str, str, str, str]]:
    """The printed table's rows (``report.format_table``)."""
    t, s, c = results["teacher"], results["student"], results["comparison"]
    if t is None:  # no teacher model (teacher=none, or an endpoint): the student alone
        labelled = _labelled_accuracy(results)  # blackbox_label: the endpoint's own labels of the eval split
        return [
            (
                "accuracy",
                "" if labelled is None else f"{labelled:.4f} (its labels)",
                f"{s['accuracy']:.4f}",
                "" if not labelled else f"retention {s['accuracy'] / labelled * 100:.1f}%",
            ),
            ("F1 (macro)", "", f"{s['f1_macro']:.4f}", ""),
            ("parameters", "", f"{s['params']:,}", ""),
            ("latency (ms, batch 1)", "", f"{s['latency_ms']:.2f}{_spread(s, 'latency_ms')}", ""),
            ("throughput (samples/s)", "", f"{s['throughput_samples_s']:.0f}{_spread(s, 'throughput_samples_s')}", ""),
        ]
    return [
        ("accuracy", f"{t['accuracy']:.4f}", f"{s['accuracy']:.4f}", f"retention {c['retention'] * 100:.1f}%"),
        ("F1 (macro)", f"{t['f1_macro']:.4f}", f"{s['f1_macro']:.4f}", ""),
        ("parameters", f"{t['params']:,}", f"{s['params']:,}", f"compression {c['compression']:.2f}×"),
        (
            "latency (ms, batch 1)",
            f"{t['latency_ms']:.2f}{_spread(t, 'latency_ms')}",
            f"{s['latency_ms']:.2f}{_spread(s, 'latency_ms')}",
            f"speed-up {c['latency_speedup']:.2f}×{_spread(c, 'latency_speedup')}",
        ),
        (
            "throughput (samples/s)",
            f"{t['throughput_samples_s']:.0f}{_spread(t, 'throughput_samples_s')}",
            f"{s['throughput_samples_s']:.0f}{_spread(s, 'throughput_samples_s')}",
            f"speed-up {c['speedup']:.2f}×{_spread(c, 'speedup')}",
        ),
        ("agreement with teacher", "", f"{c['agreement'] * 100:.1f}%", ""),
        ("KL(teacher ‖ student)", "", f"{c['kl_to_teacher']:.4f}", ""),
    ]


def _labelled_accuracy(results: dict) -> float | None:
    """The teacher's accuracy on the eval split from its written labels (a label stage's record), or None."""
    for stage in results.get("stages") or []:
        labelled = ((stage.get("generation") or {}).get("eval") or {}).get("teacher_accuracy")
        if labelled is not None:
            return labelled
    return None


def eval_text(scores: dict) -> str:
    text = f"accuracy {scores['accuracy']:.4f} · F1 {scores['f1_macro']:.4f}"
    if scores.get("teacher_accuracy") is not None:
        text += (
            f" · its teacher {scores['teacher_accuracy']:.4f} · agreement {scores['agreement_with_teacher'] * 100:.1f}%"
        )
    return text
