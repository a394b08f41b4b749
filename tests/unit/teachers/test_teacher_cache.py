"""The cached teacher source (distillkit/teacher_cache.py): what is stored, how it is served, when it is used."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from distillkit.errors import ConfigError
from distillkit.models.features import FeatureSpec, HookSpec, forward_features
from distillkit.teachers import output_cache as tc
from distillkit.teachers import output_store as store
from distillkit.teachers.sources import EMATeacher, FrozenModel

QUERY = HookSpec("query", "bert.encoder.layer.{layer}.attention.self.query", (1, 2), "test")
FULL = FeatureSpec(hidden_states=(0, 2), attentions=(1, 2), hooks=(QUERY,))


def tiny_model(seed: int = 0, hidden: int = 16):
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=50,
        hidden_size=hidden,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        num_labels=3,
        max_position_embeddings=64,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        attn_implementation="eager",
    )
    return BertForSequenceClassification(config).eval()


def dataset(n: int = 37, seed: int = 0, max_len: int = 12):
    import datasets

    rng = np.random.default_rng(seed)
    lengths = rng.integers(2, max_len, n)
    ids = [[1] + rng.integers(5, 50, int(k) - 1).tolist() for k in lengths]
    return datasets.Dataset.from_dict(
        {
            "input_ids": ids,
            "attention_mask": [[1] * len(x) for x in ids],
            "labels": rng.integers(0, 3, n).tolist(),
            "idx": list(range(n)),
        }
    )


def collate(rows, left: bool = False):
    """Pad to the longest row (right, or left with ``left``); tensors of every column."""
    width = max(len(r["input_ids"]) for r in rows)
    out = {}
    for key in rows[0]:
        if isinstance(rows[0][key], list):
            pad = [[0] * (width - len(r[key])) for r in rows]
            out[key] = torch.tensor([p + r[key] if left else r[key] + p for r, p in zip(rows, pad)])
        else:
            out[key] = torch.tensor([r[key] for r in rows])
    return out


def built_source(tmp_path: Path, model, data, spec: FeatureSpec, precision: str = "fp32", batch_size: int = 8):
    source = FrozenModel(model)
    meta, problem = store.build(tmp_path, source, data, spec, collate, batch_size, torch.device("cpu"), precision)
    assert problem is None
    np.save(tmp_path / "lengths.npy", tc.row_lengths(data))
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    return source, tc.CachedSource(source, tmp_path, spec)


# ------------------------------------------------------------------------------------------ storage
def test_layout_offsets_and_token_index():
    layout = tc.Layout([3, 1, 2])
    assert layout.token_offsets.tolist() == [0, 3, 4, 6]
    assert layout.pair_offsets.tolist() == [0, 9, 10, 14]
    assert layout.token_index([2, 0]).tolist() == [4, 5, 0, 1, 2]


def test_row_lengths_follow_the_attention_masks():
    import datasets

    data = datasets.Dataset.from_dict(
        {"input_ids": [[1, 2, 3], [4], [5, 6]], "attention_mask": [[1, 1, 0], [1], [1, 1]]}
    )
    assert tc.row_lengths(data).tolist() == [2, 1, 2]
    assert tc.row_lengths(data.select([2, 0])).tolist() == [2, 2]


def test_data_digest_is_the_content_row_by_row():
    import datasets

    data = dataset()
    same = datasets.Dataset.from_dict(data.to_dict())
    assert store.data_digest(data) == store.data_digest(same)
    assert store.data_digest(data) == store.data_digest(data.remove_columns("labels"))  # the teacher never sees labels
    changed = data.to_dict()
    changed["input_ids"][5][1] += 1
    assert store.data_digest(datasets.Dataset.from_dict(changed)) != store.data_digest(data)
    assert store.data_digest(data.select(range(1, len(data)))) != store.data_digest(data)  # rows are addressed by index
    moved = data.to_dict()  # the same tokens, split differently between two rows
    moved["input_ids"][0], moved["input_ids"][1] = (
        moved["input_ids"][0] + moved["input_ids"][1][:1],
        moved["input_ids"][1][1:],
    )
    moved["attention_mask"] = [[1] * len(x) for x in moved["input_ids"]]
    assert store.data_digest(datasets.Dataset.from_dict(moved)) != store.data_digest(data)


def test_weights_digest_sees_every_weight_and_dtype():
    a, b = tiny_model(0), tiny_model(0)
    assert store.weights_digest(a) == store.weights_digest(b)
    with torch.no_grad():
        b.classifier.bias[0] += 1e-6
    assert store.weights_digest(a) != store.weights_digest(b)
    assert store.weights_digest(a) != store.weights_digest(tiny_model(0).to(torch.bfloat16))


@pytest.mark.parametrize("left", [False, True])
def test_served_features_equal_the_online_teacher_at_real_tokens(tmp_path, left):
    model, data = tiny_model(), dataset()
    source, cached = built_source(tmp_path, model, data, FULL)
    rows = [5, 0, 17, 36, 2]
    batch = collate([{**data[r], tc.ROW: r} for r in rows], left=left)
    if left:  # absolute positions count from the first real token, as a left-padding model is run
        batch["position_ids"] = (batch["attention_mask"].cumsum(1) - 1).clamp(min=0)
    online = forward_features(model, batch, FULL)
    served = cached.outputs(batch, FULL)
    mask = batch["attention_mask"].bool()
    if not left:  # BERT pools position 0, a pad under left padding: its logits are another model's
        torch.testing.assert_close(served.logits, online.logits, atol=1e-5, rtol=1e-5)
    for layer in FULL.hidden_states:
        torch.testing.assert_close(served.hidden[layer][mask], online.hidden[layer][mask], atol=1e-5, rtol=1e-5)
        assert served.hidden[layer][~mask].abs().sum() == 0  # padding is zero
    for layer in FULL.attentions:
        pairs = mask[:, None, :, None] & mask[:, None, None, :]
        pairs = pairs.expand_as(online.attentions[layer])
        torch.testing.assert_close(
            served.attentions[layer][pairs], online.attentions[layer][pairs], atol=1e-5, rtol=1e-5
        )
    for layer in QUERY.layers:
        torch.testing.assert_close(
            served.captured["query"][layer][mask], online.captured["query"][layer][mask], atol=1e-5, rtol=1e-5
        )
    assert cached.served_rows == len(rows)


def test_fp16_and_bf16_features_are_close_and_logits_stay_float32(tmp_path):
    model, data = tiny_model(), dataset()
    spec = FeatureSpec(hidden_states=(2,))
    batch = collate([{**data[r], tc.ROW: r} for r in range(6)])
    online = forward_features(model, batch, spec)
    mask = batch["attention_mask"].bool()
    for precision, rtol in (("fp16", 2e-3), ("bf16", 1.6e-2)):
        directory = tmp_path / precision
        directory.mkdir()
        _, cached = built_source(directory, model, data, spec, precision)
        assert np.load(directory / "logits.npy").dtype == np.float32
        assert np.load(directory / "hidden.2.npy").dtype.itemsize == 2
        served = cached.outputs(batch, spec)
        assert served.hidden[2].dtype == torch.float32  # served in the teacher's dtype
        torch.testing.assert_close(served.logits, online.logits, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(served.hidden[2][mask], online.hidden[2][mask], rtol=rtol, atol=rtol)
        assert not torch.equal(served.hidden[2][mask], online.hidden[2][mask])  # the rounding is real


def test_batches_without_rows_or_with_unheld_features_go_to_the_teacher(tmp_path):
    model, data = tiny_model(), dataset()
    _, cached = built_source(tmp_path, model, data, FeatureSpec())
    calls = []
    cached.inner.outputs = lambda batch, spec, training=True: calls.append(spec) or "online"
    batch = collate([data[0], data[1]])
    assert cached.outputs(batch, FeatureSpec(), training=False) == "online"  # an eval batch: no teacher_row
    batch[tc.ROW] = torch.tensor([0, 1])
    assert cached.outputs(batch, FeatureSpec(hidden_states=(1,))) == "online"  # not in the entry
    assert cached.outputs(batch, FeatureSpec()).logits.shape == (2, 3)
    assert len(calls) == 2


def test_fp16_overflow_is_reported_not_stored(tmp_path):
    model, data = tiny_model(), dataset()
    with torch.no_grad():
        model.bert.embeddings.LayerNorm.weight.mul_(1e6)  # hidden state 0 beyond fp16
    meta, problem = store.build(
        tmp_path, FrozenModel(model), data, FeatureSpec(hidden_states=(0,)), collate, 8, torch.device("cpu"), "fp16"
    )
    assert problem is not None and "teacher.cache_precision=fp16" in problem and "bf16" in problem


# ----------------------------------------------------------------------------------------- decisions
def stage_like(kind="prepared", models=(), online=(), epochs=3.0, model="student", reads_logits=True):
    from distillkit.recipe.stage import Budget, EMAOptions, SnapshotOptions, StudentSpec, TeacherSpec

    objective = SimpleNamespace(
        reads_logits=reads_logits, teacher_features=FeatureSpec(), needs_teacher=True, uncacheable=None, topk=None
    )
    options = {"ema": EMAOptions(0.9), "snapshots": SnapshotOptions()}.get(kind)
    return SimpleNamespace(
        name="distill",
        teacher=TeacherSpec(kind, tuple(models), options),
        student=StudentSpec(model),
        objective=objective,
        budget=Budget(epochs=epochs),
        trains_teacher=False,
    )


def cfg_like(mode="auto", online=(), budget=8.0, precision="fp16"):
    return SimpleNamespace(
        teacher=SimpleNamespace(cache_outputs=mode, cache_budget_gb=budget, cache_precision=precision),
        augmentation=SimpleNamespace(online=list(online)),
        method=SimpleNamespace(name="kd"),
    )


DIMS = {"num_labels": 2, "hidden_size": 768, "num_heads": 12}


def test_decide_caches_a_frozen_teacher_on_fixed_inputs(tmp_path):
    decision = tc.decide(cfg_like(), stage_like(), 100, 1000, 10000, FeatureSpec(), DIMS, tmp_path)
    assert decision.use and "logits" in decision.reason


@pytest.mark.parametrize(
    "stage, cfg, words",
    [
        (stage_like("ema"), cfg_like(), "changes as the student trains"),
        (stage_like("snapshots"), cfg_like(), "changes as the student trains"),
        (stage_like("stage", ("student",)), cfg_like(), "the model the stage trains"),
        (stage_like(), cfg_like(online=["mixup"]), "online augmentation (mixup)"),
        (stage_like(), cfg_like("never"), "teacher.cache_outputs=never"),
        (stage_like("stage", ("gen0",), epochs=1.0), cfg_like(), "seen for one epoch"),
    ],
)
def test_decide_says_why_not(tmp_path, stage, cfg, words):
    decision = tc.decide(cfg, stage, 100, 1000, 10000, FeatureSpec(), DIMS, tmp_path)
    assert not decision.use and words in decision.reason


def test_consistency_does_not_reach_a_stage_that_reads_no_logits(tmp_path):
    """augmentation=consistency is a term on the logits: it keeps the teacher of a stage that reads them online,
    and a stage that reads no logits is decided as if no online augmentation were on (cached, for that reason)."""
    decide = lambda cfg, stage: tc.decide(cfg, stage, 100, 1000, 10000, FeatureSpec(), DIMS, tmp_path)  # noqa: E731 (a one-line local function)
    consistency = cfg_like(online=["consistency"])
    reads_logits = decide(consistency, stage_like())
    assert not reads_logits.use and "online augmentation (consistency)" in reads_logits.reason
    features_only = decide(consistency, stage_like(reads_logits=False))
    assert features_only == decide(cfg_like(), stage_like(reads_logits=False))
    assert features_only.use and features_only.reason.startswith("frozen teacher, the same inputs every epoch")


def test_auto_weighs_the_size_against_the_budget(tmp_path):
    spec = FeatureSpec(hidden_states=tuple(range(13)))  # 67k examples × 30 tokens × 13 × 768 in fp16 ≈ 40 GB
    rows, tokens = 67_000, 67_000 * 30
    size = tc.estimate_bytes(rows, tokens, 0, spec, DIMS, "fp16")
    assert size == rows * 2 * 4 + rows * 8 + tokens * 13 * 768 * 2
    decision = tc.decide(cfg_like(budget=8.0), stage_like(), rows, tokens, 0, spec, DIMS, tmp_path)
    assert not decision.use and "teacher.cache_budget_gb=8" in decision.reason
    assert tc.decide(cfg_like(budget=8.0), stage_like(), rows, tokens, 0, FeatureSpec(), DIMS, tmp_path).use
    # logits of a 67k-example, 2-class task: 67k × 2 × 4 bytes + the 8-byte row lengths
    assert tc.estimate_bytes(rows, tokens, 0, FeatureSpec(), DIMS, "fp16") == rows * 16


def test_always_refuses_a_stage_it_cannot_cache_before_anything_runs():
    stages = [stage_like(), stage_like("ema")]
    with pytest.raises(ConfigError) as err:
        tc.check(cfg_like("always"), stages)
    assert err.value.key == "teacher.cache_outputs" and "teacher.cache_outputs=auto" in str(err.value)
    with pytest.raises(ConfigError, match="augmentation=mixup"):
        tc.check(cfg_like("always", online=["mixup"]), [stage_like()])
    tc.check(cfg_like("auto", online=["mixup"]), stages)  # auto: decided (and logged) per stage instead


# --------------------------------------------------------------------------------- prepare, in a stage
def workspace(tmp_path, mode="auto"):
    cfg = SimpleNamespace(
        teacher=SimpleNamespace(cache_outputs=mode, cache_budget_gb=8.0, cache_precision="fp32"),
        augmentation=SimpleNamespace(online=[]),
        method=SimpleNamespace(name="kd"),
    )
    return SimpleNamespace(
        cfg=cfg,
        plan=SimpleNamespace(cache_root=tmp_path, kind=SimpleNamespace(teacher_outputs="outputs")),
        collator=collate,
    )


def stage_with(spec):
    stage = stage_like()
    stage.objective.teacher_features = spec
    return stage


def test_prepare_builds_once_then_reuses_and_adds_the_row_column(tmp_path):
    model, data = tiny_model(), dataset()
    ws, stage = workspace(tmp_path), stage_with(FeatureSpec(hidden_states=(1,)))
    source, view, record = tc.prepare(stage, FrozenModel(model), data, ws, torch.device("cpu"), 8)
    assert isinstance(source, tc.CachedSource) and record["used"] and record["built"]
    assert view[tc.ROW] == list(range(len(data))) and tc.ROW not in data.column_names
    assert record["size_bytes"] == sum(f.stat().st_size for f in Path(record["entry"]).iterdir())
    spec = json.loads((Path(record["entry"]) / "spec.json").read_text())
    assert spec["weights"] == [store.weights_digest(model)] and spec["precision"]["features"] == "fp32"
    again = tc.prepare(stage, FrozenModel(tiny_model()), data, ws, torch.device("cpu"), 8)[2]
    assert again["entry"] == record["entry"] and not again["built"] and again["build_s"] == 0
    other = tc.prepare(stage, FrozenModel(tiny_model(seed=1)), data, ws, torch.device("cpu"), 8)[2]
    assert other["built"] and other["entry"] != record["entry"]  # another teacher, another entry


def test_prepare_leaves_a_stage_it_should_not_cache_alone(tmp_path):
    data, ws = dataset(), workspace(tmp_path)
    source = EMATeacher(0.9)
    stage = stage_like("ema")
    same, view, record = tc.prepare(stage, source, data, ws, torch.device("cpu"), 8)
    assert same is source and view is data and record == {"used": False, "reason": record["reason"]}
    assert not (tmp_path / tc.KIND).exists()


def test_a_build_that_fails_leaves_nothing_that_looks_complete(tmp_path, monkeypatch):
    model, data, ws = tiny_model(), dataset(), workspace(tmp_path)
    stage = stage_with(FeatureSpec())
    real = store._write
    calls = []

    def failing(*args):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("disk full")
        return real(*args)

    monkeypatch.setattr(store, "_write", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        tc.prepare(stage, FrozenModel(model), data, ws, torch.device("cpu"), 8)
    assert [p.name for p in (tmp_path / tc.KIND).iterdir() if not p.name.endswith(".lock")] == []
    monkeypatch.setattr(store, "_write", real)
    record = tc.prepare(stage, FrozenModel(model), data, ws, torch.device("cpu"), 8)[2]
    assert record["built"] and (Path(record["entry"]) / "meta.json").exists()


def test_overflow_in_prepare_runs_the_stage_online_and_says_why(tmp_path, caplog):
    model, data, ws = tiny_model(), dataset(), workspace(tmp_path)
    ws.cfg.teacher.cache_precision = "fp16"
    with torch.no_grad():
        model.bert.embeddings.LayerNorm.weight.mul_(1e6)  # hidden state 0 beyond fp16
    source = FrozenModel(model)
    same, view, record = tc.prepare(
        stage_with(FeatureSpec(hidden_states=(0,))), source, data, ws, torch.device("cpu"), 8
    )
    assert same is source and view is data and not record["used"] and "fp16" in record["reason"]
    assert "runs with the teacher online" in caplog.text
    assert [p for p in (tmp_path / tc.KIND).iterdir() if not p.name.endswith(".lock")] == []


def test_concurrent_jobs_build_one_entry(tmp_path, monkeypatch):
    """Two jobs of a sweep that need the same missing entry: one builds, the other waits for its lock and reads."""
    model, data, ws = tiny_model(), dataset(), workspace(tmp_path)
    builds, results = [], []
    real = store.build

    def counting(*args, **kwargs):
        builds.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(store, "build", counting)

    def job():
        results.append(tc.prepare(stage_with(FeatureSpec()), FrozenModel(model), data, ws, torch.device("cpu"), 8)[2])

    threads = [threading.Thread(target=job) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(builds) == 1 and len(results) == 2
    assert {r["entry"] for r in results} == {results[0]["entry"]}
    assert sorted(r["built"] for r in results) == [False, True]


@pytest.mark.parametrize(
    "overrides", [["teacher.cache_outputs=sometimes"], ["teacher.cache_precision=int8"], ["teacher.cache_budget_gb=0"]]
)
def test_bad_cache_settings_are_refused(overrides):
    from distillkit.config.schema import validate
    from tests.conftest import TINY, compose_config

    with pytest.raises(ConfigError) as err:
        validate(compose_config(TINY + overrides))
    assert err.value.key == overrides[0].split("=")[0]
