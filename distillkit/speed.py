"""Latency and throughput timing shared by every task: the pieces each task's speed measurement is built from.

Speed is timed so that two measurements of one pair agree on a shared, loaded machine: a fixed number of CPU threads
(``cpu_threads``), warm-up passes, the models taking turns batch by batch (``in_turn``), repetitions summarised by
their median and spread (``median_spread``, ``SPREAD``), and speed-ups taken per repetition. With one CPU thread the
clock is the thread's CPU time, which other processes' load does not inflate. A task times its own forward pass or
generation with these (``tasks/classification/evaluate.py``, ``tasks/causal_lm/evaluate.py``).
"""

from __future__ import annotations

import contextlib
import statistics

import torch

SPREAD = "half the min-max range of the repetitions, relative to their median"


def sync(device) -> None:
    """Wait for the device's queued work (CUDA), so a clock read after it counts the work."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


@contextlib.contextmanager
def cpu_threads(threads: int | None, device):
    """Run the block with ``threads`` torch CPU threads and restore the count after, so the figures say
    how many threads produced them and a loaded machine's cores are not oversubscribed. ``None``, or a
    GPU (which does the work whatever the CPU threads), leaves torch's setting alone. Yields the count
    in force (None on GPU)."""
    if torch.device(device).type != "cpu":
        yield None
        return
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


def median_spread(values: list[float]) -> tuple[float, float]:
    """(median, spread): the spread is half the min-max range relative to the median (``SPREAD``), so
    ``2.9 (±4%)`` means every repetition fell within about 4 % of 2.9."""
    mid = statistics.median(values)
    return mid, ((max(values) - min(values)) / 2 / mid if mid else 0.0)


def in_turn(timers: dict, batches: list, start: int) -> dict[str, list[float]]:
    """Each batch through every model back to back, the first model alternating from batch to batch:
    a change in machine load lands on both models of a pair alike."""
    names, times = list(timers), {name: [] for name in timers}
    for i, batch in enumerate(batches):
        for name in names if (start + i) % 2 == 0 else names[::-1]:
            times[name].append(timers[name](batch))
    return times


def spread_text(section: dict, key: str) -> str:
    """`` (±4%)`` from ``<key>_spread`` (a fraction of the median), or nothing when there is none: how the
    printed tables show a timed figure."""
    spread = section.get(f"{key}_spread")
    return "" if spread is None else f" (±{spread * 100:.0f}%)"
