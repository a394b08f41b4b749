"""Speed figures that two measurements agree on: fixed threads (restored after), the models timed in turn,
speed-ups per repetition, the median and its spread; and the benchmark that measures one pair three times."""

import pytest
import torch

from distillkit import speed
from distillkit.errors import ConfigError
from distillkit.tasks.classification import evaluate
from tests.conftest import compose_config
from tests.helpers import ROOT

REPO = ROOT


def test_median_spread_is_half_the_range_relative_to_the_median():
    assert speed.median_spread([1.0, 2.0, 3.0, 4.0, 10.0]) == (3.0, pytest.approx((10 - 1) / 2 / 3))
    assert speed.median_spread([2.0]) == (2.0, 0.0)


def test_threads_are_set_while_timing_and_restored_after():
    before = torch.get_num_threads()
    target = 2 if before == 1 else 1
    with speed.cpu_threads(target, "cpu") as used:
        assert used == target == torch.get_num_threads()
    assert torch.get_num_threads() == before
    with speed.cpu_threads(None, "cpu") as used:  # null: torch's own setting, reported as is
        assert used == before
    with speed.cpu_threads(target, torch.device("cuda")) as used:  # a GPU does the work: threads left alone
        assert used is None and torch.get_num_threads() == before


def test_models_take_turns_batch_by_batch_the_first_alternating():
    calls = []
    timers = {name: (lambda batch, name=name: calls.append((name, batch)) or 0.0) for name in ("teacher", "student")}
    speed.in_turn(timers, ["a", "b", "c"], start=1)
    assert calls == [
        ("student", "a"),
        ("teacher", "a"),
        ("teacher", "b"),
        ("student", "b"),
        ("student", "c"),
        ("teacher", "c"),
    ]


def test_speed_ups_divide_out_a_change_in_machine_load():
    """The machine gets 4× slower halfway through (another job starts): each model's time changes, the
    speed-up (teacher 3 units of work per pass, student 1) must not."""
    calls = {"n": 0}

    def model(work):
        def timed(batch):
            calls["n"] += 1
            return work * len(batch["input_ids"]) * (4.0 if calls["n"] > 150 else 1.0)

        return timed

    singles, fulls = [{"input_ids": [0]}] * 20, [{"input_ids": [0] * 8}] * 2
    reps = evaluate._repetitions({"teacher": model(3.0), "student": model(1.0)}, singles, fulls, repeats=5, warmup=1)
    t, s = reps["teacher"], reps["student"]
    assert max(t["latency_ms"]) == pytest.approx(4 * min(t["latency_ms"]))  # the load did change
    assert [a / b for a, b in zip(t["latency_ms"], s["latency_ms"])] == pytest.approx([3.0] * 5)
    assert [b / a for a, b in zip(t["throughput_samples_s"], s["throughput_samples_s"])] == pytest.approx([3.0] * 5)


class Burn(torch.nn.Module):
    """A model whose forward pass costs ``n`` matrix products: a known ratio of work between two models."""

    def __init__(self, n: int):
        super().__init__()
        self.n, self.w = n, torch.nn.Parameter(torch.randn(96, 96) / 10)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None):
        h = torch.randn(input_ids.shape[0], 96)
        for _ in range(self.n):
            h = torch.tanh(h @ self.w)
        return h


def collate(rows):
    ids = torch.tensor([r["input_ids"] for r in rows])
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def test_measure_speed_reports_medians_spreads_and_how():
    dataset = [{"input_ids": [1, 2, 3]}] * 64
    before = torch.get_num_threads()
    out = evaluate.measure_speed(
        Burn(120),
        Burn(40),
        dataset,
        collate,
        "cpu",
        batch_size=16,
        latency_batches=8,
        throughput_batches=2,
        threads=1,
        repeats=3,
        warmup=1,
    )
    assert torch.get_num_threads() == before
    assert out["speed"] == {
        "device": "cpu",
        "threads": 1,
        "clock": "thread_cpu",
        "repeats": 3,
        "warmup": 1,
        "latency_examples": 8,
        "throughput_batches": 2,
        "batch_size": 16,
        "spread": speed.SPREAD,
    }
    for name in ("teacher", "student"):
        assert set(out[name]) == {
            "latency_ms",
            "latency_ms_spread",
            "throughput_samples_s",
            "throughput_samples_s_spread",
        }
        assert out[name]["latency_ms"] > 0 and out[name]["latency_ms_spread"] >= 0
    c = out["comparison"]
    assert 2.0 < c["latency_speedup"] < 4.0 and 2.0 < c["speedup"] < 4.0  # 3× the work
    assert c["latency_speedup_spread"] >= 0 and c["speedup_spread"] >= 0
    wall = evaluate.measure_speed(
        Burn(3), Burn(1), dataset, collate, "cpu", 16, 2, 1, threads=None, repeats=1, warmup=0
    )["speed"]
    assert wall["clock"] == ("thread_cpu" if before == 1 else "wall") and wall["threads"] == before


@pytest.mark.parametrize(
    "override, key",
    [("eval.threads=0", "eval.threads"), ("eval.repeats=0", "eval.repeats"), ("eval.warmup=-1", "eval.warmup")],
)
def test_bad_speed_settings_name_the_key(override, key):
    from distillkit.config.schema import validate

    with pytest.raises(ConfigError) as err:
        validate(compose_config([override]))
    assert err.value.key == key
    assert validate(compose_config(["eval.threads=null"])).eval.threads is None
