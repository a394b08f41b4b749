"""Data parallel from the one entry point: 2 CPU workers (gloo) started by distillkit itself."""

import json
from pathlib import Path

import pytest

from tests.conftest import TINY
from tests.helpers import cli

pytestmark = pytest.mark.slow

# Enough steps at a high learning rate for the student to move away from its initialisation.
SETTINGS = [o for o in TINY if not o.startswith(("train.max_steps", "hardware.per_device_batch_size"))] + [
    "train.max_steps=16",
    "train.learning_rate=2e-3",
    "teacher.prepare_learning_rate=2e-3",
]


def test_two_process_ddp_matches_single_process_and_exits_cleanly(tmp_path, cache_dir):
    single = cli(
        [
            "distillkit",
            *SETTINGS,
            f"cache_dir={cache_dir}-ddp",
            "hardware.per_device_batch_size=16",
            "hydra.run.dir=single",
        ],
        tmp_path,
    )
    assert single.returncode == 0, single.stderr[-3000:]
    runs = []
    for attempt in range(2):  # exits 0 every time, not just once
        proc = cli(
            [
                "distillkit",
                *SETTINGS,
                f"cache_dir={cache_dir}-ddp",
                "hardware=ddp",
                "hardware.devices=2",
                "hardware.accelerator=cpu",
                "hardware.per_device_batch_size=8",
                f"hydra.run.dir=ddp{attempt}",
            ],
            tmp_path,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "Starting 2 data-parallel workers" in proc.stdout + proc.stderr
        runs.append(json.loads((tmp_path / f"ddp{attempt}" / "results.json").read_text()))
    ref = json.loads((tmp_path / "single" / "results.json").read_text())
    for res in runs:
        assert res["run"]["world_size"] == 2 and ref["run"]["world_size"] == 1
        # teacher preparation has its own hardware-free recipe: the 2-process run reuses the very same teacher
        assert res["stages"][0]["name"] == "teacher_prep" and res["stages"][0]["cached"] is True
        assert res["stages"][0]["cache_dir"] == ref["stages"][0]["cache_dir"]
        assert res["teacher"]["accuracy"] == ref["teacher"]["accuracy"]
        assert res["stages"][-1]["steps"] == ref["stages"][-1]["steps"] == 16
        # the student trajectory matches within dropout noise and sampler order
        assert res["stages"][-1]["train_loss"] == pytest.approx(ref["stages"][-1]["train_loss"], rel=0.1)
        assert abs(res["student"]["accuracy"] - ref["student"]["accuracy"]) <= 0.1
    # only rank 0 wrote: one metrics line per logging step, not two
    lines = [json.loads(x) for x in (tmp_path / "ddp0" / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in lines if r["stage"] == "distill" and "loss" in r]
    assert len(steps) == len(set(steps))


def _average_in_worker(rank, port, out):
    import torch

    from distillkit.training.trainer import average_gradients

    torch.distributed.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        param = torch.nn.Parameter(torch.zeros(3))
        param.grad = torch.full((3,), float(rank + 1))  # rank 0: 1, rank 1: 2
        untouched = torch.nn.Parameter(torch.zeros(1))  # no gradient: skipped
        average_gradients([param, untouched], 2)
        torch.save({"grad": param.grad, "untouched": untouched.grad}, f"{out}/rank{rank}.pt")
    finally:
        torch.distributed.destroy_process_group()


def test_adapter_gradients_are_averaged_over_processes(tmp_path):
    import socket

    import torch
    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_average_in_worker, args=(port, str(tmp_path)), nprocs=2, join=True)
    for rank in range(2):
        saved = torch.load(tmp_path / f"rank{rank}.pt")
        assert torch.equal(saved["grad"], torch.full((3,), 1.5)) and saved["untouched"] is None


def test_ddp_run_of_a_two_stage_method_with_adapters(tmp_path, cache_dir):
    proc = cli(
        [
            "distillkit",
            *SETTINGS,
            f"cache_dir={cache_dir}-ddp",
            "method=fitnets",
            "hardware=ddp",
            "hardware.devices=2",
            "hardware.accelerator=cpu",
            "hardware.per_device_batch_size=8",
            "train.max_steps=4",
            "hydra.run.dir=ddp-fitnets",
        ],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((tmp_path / "ddp-fitnets" / "results.json").read_text())
    assert [s["name"] for s in results["stages"]][-2:] == ["hints", "distill"] and results["run"]["world_size"] == 2
    hint = results["stages"][-2]["final_loss_terms"]["hint"]
    assert 0 < hint < float("inf")  # an MSE between different models' states: positive and finite


@pytest.mark.parametrize(
    "method",
    [
        ["method=born_again", "method.generations=1"],
        ["method=ema_teacher"],
        ["method=kd", "augmentation=[synonym,mixup,consistency]"],
    ],
    ids=["born_again", "ema_teacher", "augmentation"],
)
def test_two_process_self_distillation_matches_single_process(tmp_path, cache_dir, method):
    """Generations (a stage's teacher: the model an earlier stage produced), the EMA teacher (updated from
    the student's weights after each step, the same on every process) and augmentation (the offline pool made
    once, the same for every process count; mixup per process batch) under DDP: exit 0, same trajectory."""
    common = [*SETTINGS, f"cache_dir={cache_dir}-ddp", *method]
    single = cli(["distillkit", *common, "hardware.per_device_batch_size=16", "hydra.run.dir=single"], tmp_path)
    assert single.returncode == 0, single.stderr[-3000:]
    ddp = cli(
        [
            "distillkit",
            *common,
            "hardware=ddp",
            "hardware.devices=2",
            "hardware.accelerator=cpu",
            "hardware.per_device_batch_size=8",
            "hydra.run.dir=ddp",
        ],
        tmp_path,
    )
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    ref, res = (json.loads((tmp_path / d / "results.json").read_text()) for d in ("single", "ddp"))
    assert res["run"]["world_size"] == 2
    trained = [(a, b) for a, b in zip(ref["stages"], res["stages"]) if a["name"] != "teacher_prep"]
    assert [a["name"] for a, _ in trained] == [b["name"] for _, b in trained] and trained
    # the 16-step budget split the same way on one and two processes
    assert sum(a["steps"] for a, _ in trained) == res["budget"]["total"]["steps"] == 16
    for a, b in trained:
        assert a["steps"] == b["steps"] and a["train_examples"] == b["train_examples"]
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=0.1), a["name"]
        if a.get("eval"):
            assert abs(a["eval"]["accuracy"] - b["eval"]["accuracy"]) <= 0.1, a["name"]


def test_two_processes_build_the_teacher_cache_once_in_shards_and_read_it(tmp_path, cache_dir):
    """The sharded build: each process computes its share of the batches into the same entry; every row is
    written, the entry is made once, and training reads it (same trajectory as one process with the teacher
    online)."""
    import numpy as np

    common = [*SETTINGS, f"cache_dir={cache_dir}-ddp", "data.synthetic.seed=21"]
    ddp = cli(
        [
            "distillkit",
            *common,
            "teacher.cache_outputs=always",
            "hardware=ddp",
            "hardware.devices=2",
            "hardware.accelerator=cpu",
            "hardware.per_device_batch_size=8",
            "hydra.run.dir=ddp",
        ],
        tmp_path,
    )
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    single = cli(
        [
            "distillkit",
            *common,
            "teacher.cache_outputs=never",
            "hardware.per_device_batch_size=16",
            "hydra.run.dir=single",
        ],
        tmp_path,
    )
    assert single.returncode == 0, single.stderr[-3000:]
    ref, res = (json.loads((tmp_path / d / "results.json").read_text()) for d in ("single", "ddp"))
    record = res["stages"][-1]["teacher_cache"]
    assert record["used"] and record["built"] and not ref["stages"][-1]["teacher_cache"]["used"]
    entry = Path(record["entry"])
    logits = np.load(entry / "logits.npy")
    assert logits.shape[0] == res["stages"][-1]["train_examples"] and (np.abs(logits).sum(1) > 0).all()
    assert not any(p.name.startswith(".building") for p in entry.parent.iterdir())
    assert res["stages"][-1]["train_loss"] == pytest.approx(ref["stages"][-1]["train_loss"], rel=0.1)


@pytest.mark.parametrize("method", ["forward_kl", "gkd", "seq_kd"])
def test_two_process_causal_lm_matches_single_process(tmp_path, cache_dir, method):
    """task=causal_lm under DDP: the top-k teacher cache (forward_kl) and the teacher's responses (seq_kd) are built
    by rank 0 and read by both; on-policy samples (gkd, every batch) are drawn per process inside the step."""
    from tests.conftest import TINY_LM

    base = [o for o in TINY_LM if not o.startswith(("train.max_steps", "hardware.per_device_batch_size"))] + [
        "train.max_steps=8",
        f"method={method}",
        f"cache_dir={cache_dir}-lm-ddp",
    ]
    if method == "gkd":  # with an NTP anchor: the samples and the dataset's rows in one DDP forward per step
        base += ["method.on_policy=1.0", "method.sampling.max_new_tokens=4", "method.ntp_weight=0.25"]
    proc = cli(
        [
            "distillkit",
            *base,
            "hardware=ddp",
            "hardware.devices=2",
            "hardware.accelerator=cpu",
            "hardware.per_device_batch_size=8",
            "hydra.run.dir=ddp",
        ],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    single = cli(["distillkit", *base, "hardware.per_device_batch_size=16", "hydra.run.dir=single"], tmp_path)
    assert single.returncode == 0, single.stderr[-3000:]
    ref, res = (json.loads((tmp_path / d / "results.json").read_text()) for d in ("single", "ddp"))
    assert res["run"]["world_size"] == 2 and res["budget"]["total"]["steps"] == ref["budget"]["total"]["steps"] == 8
    assert res["stages"][-1]["steps"] == ref["stages"][-1]["steps"] == round(8 * ref["stages"][-1]["share"])
    assert res["budget"]["total"]["examples"] == ref["budget"]["total"]["examples"]  # 2 processes × 8 rows = 16
    assert ref["stages"][0]["cached"] is True  # the teacher the 2-process run prepared, reused by one process
    assert res["teacher"]["perplexity"] == pytest.approx(ref["teacher"]["perplexity"], rel=1e-5)
    assert res["stages"][-1]["train_loss"] == pytest.approx(ref["stages"][-1]["train_loss"], rel=0.15)
    if method == "forward_kl":  # built by the 2-process run (rank 0), complete: the single run only reads it
        assert res["stages"][-1]["teacher_cache"]["built"] and not ref["stages"][-1]["teacher_cache"]["built"]
        assert res["stages"][-1]["teacher_cache"]["entry"] == ref["stages"][-1]["teacher_cache"]["entry"]
    if method == "gkd":
        assert set(res["stages"][-1]["final_loss_terms"]) == {"jsd", "ntp", "on_policy_batches"}
    assert not list(Path(f"{cache_dir}-lm-ddp").rglob(".tmp-*"))


@pytest.mark.parametrize("task", ["causal_lm", "classification"])
def test_teacher_sharded_with_fsdp_follows_the_replicated_teacher(tmp_path, cache_dir, task):
    """hardware.shard_teacher: the frozen teacher split over 2 gloo processes with FSDP2 (half its weights on each),
    its outputs not cached; the run, its evaluations on both processes included, gives the replicated run's
    teacher scores and student trajectory."""
    from tests.conftest import TINY_LM

    tiny = TINY_LM if task == "causal_lm" else TINY
    base = [o for o in tiny if not o.startswith(("train.max_steps", "hardware.per_device_batch_size"))] + [
        "train.max_steps=6",
        f"cache_dir={cache_dir}-shard-{task}",
        "hardware=ddp",
        "hardware.devices=2",
        "hardware.accelerator=cpu",
        "hardware.per_device_batch_size=8",
        "teacher.cache_outputs=never",
    ]
    runs = {}
    for name, extra in (("replicated", []), ("sharded", ["hardware.shard_teacher=true"])):
        proc = cli(["distillkit", *base, *extra, f"hydra.run.dir={name}"], tmp_path)
        assert proc.returncode == 0, proc.stderr[-3000:]
        runs[name] = json.loads((tmp_path / name / "results.json").read_text())
        if extra:
            assert "Teacher sharded with FSDP over 2 processes" in proc.stdout + proc.stderr
    ref, res = runs["replicated"], runs["sharded"]
    metric = "perplexity" if task == "causal_lm" else "accuracy"
    assert res["teacher"][metric] == pytest.approx(ref["teacher"][metric], rel=1e-5)
    assert res["teacher"]["params"] == ref["teacher"]["params"]  # counted whole, not the local shard
    assert res["stages"][-1]["train_loss"] == pytest.approx(ref["stages"][-1]["train_loss"], rel=1e-4)
    assert res["stages"][-1]["teacher_cache"]["reason"].startswith("the teacher is sharded")
