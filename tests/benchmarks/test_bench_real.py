"""scripts/bench_real.py: the real-checkpoint tier's runner, on tiny checkpoints saved to local directories as
scripts/get_real_checkpoints.py writes the real ones (config, weights, tokenizer) and tiny local data files as
scripts/get_real_data.sh writes them (train.jsonl, dev.jsonl): the teacher=hub path at a local directory, the
local data, a sweep per method, the table and the plot, without network."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT
from tests.integration.test_causal_lm import _jsonl as write_jsonl

FAST = [
    "hardware=cpu",
    "hardware.per_device_batch_size=16",
    "teacher.prepare_epochs=1",
    "train.logging_steps=2",
    "train.save_steps=50",
    "eval.latency_batches=2",
    "eval.throughput_batches=1",
    "eval.repeats=1",
    "eval.warmup=0",
]


def _jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_jsonl(path, rows)


def _bench(tmp_path: Path, args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "scripts/bench_real.py", "--work", str(tmp_path / "work"), "--name", "smoke", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "MPLBACKEND": "Agg"},
    )


def _rows(out: str) -> dict[str, list[str]]:
    """The markdown table's rows by method: its cells."""
    rows = [line.strip("|").split("|") for line in out.splitlines() if line.startswith("| ") and "---" not in line]
    return {cells[0].strip(): [c.strip() for c in cells] for cells in rows[1:]}


@pytest.mark.slow
def test_classification_on_a_local_bert_checkpoint(tmp_path):
    """A 4-layer BERT with its WordPiece tokenizer in a directory (no head: the teacher preparation adds one, as
    for all-MiniLM-L6-v2), a 2-layer student taken from its layers, none and a kd variant (temperature 2) over two
    seeds."""
    from transformers import BertConfig, BertModel

    from distillkit.tasks.classification.data import train_wordpiece
    from distillkit.tasks.classification.synthetic import generate

    data = generate(n_train=96, n_eval=24)
    names = data.label_names
    _jsonl(tmp_path / "data" / "train.jsonl", [{"text": r["text"], "label": names[r["label"]]} for r in data.train])
    _jsonl(tmp_path / "data" / "dev.jsonl", [{"text": r["text"], "label": names[r["label"]]} for r in data.eval])
    ckpt = tmp_path / "bert"
    tokenizer = train_wordpiece([r["text"] for r in data.train], 300, ckpt)
    config = BertConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64
    )
    BertModel(config).save_pretrained(ckpt)
    tokenizer.save_pretrained(ckpt)

    args = ["--teacher", str(ckpt), "--data", str(tmp_path / "data"), "--methods", "none", "kd:temperature=2"]
    args += ["--seeds", "1", "2"]
    proc = _bench(tmp_path, [*args, "--steps", "4", "--override", "student=bert-2l", "data.max_length=32", *FAST])
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = _rows(proc.stdout)
    kd = "kd+temperature-2"  # a method variant: its own row and folder
    assert set(rows) == {"none", kd} and rows["none"][1] == rows[kd][1] == "2", proc.stdout
    assert rows["none"][-3] == rows[kd][-3] == "4", proc.stdout  # the budget: 4 optimizer steps each
    assert "gap teacher minus label-only student (none), accuracy: " in proc.stdout
    folder = tmp_path / "work" / "smoke"
    assert (folder / "plot.png").stat().st_size > 0
    assert (
        "method=kd" in (folder / "table.md").read_text() and f"teacher.path={ckpt}" in (folder / "table.md").read_text()
    )
    results = json.loads(next((folder / kd).glob("*/results.json")).read_text())
    assert results["run"]["teacher"] == "hub" and results["task"]["label_names"] == sorted(names)
    assert "method.temperature=2" in results["run"]["overrides"] and results["budget"]["total"]["steps"] == 4
    # one prepared teacher for both methods and both seeds: prepared by the first run, read by the three others
    preps = [json.loads(p.read_text())["stages"][0] for p in sorted(folder.glob("*/*/results.json"))]
    assert len(preps) == 4 and len({s["cache_dir"] for s in preps}) == 1
    assert [s["cached"] for s in preps].count(False) == 1


@pytest.mark.slow
def test_causal_lm_on_a_local_llama_checkpoint(tmp_path):
    """A 2-layer Llama and its tokenizer in a directory, prompt/response files, sft and forward_kl over one seed:
    the causal-LM table (exact match, ROUGE-L, perplexity); and blackbox_sft against the same teacher served over
    the chat-completions API (``--blackbox``): a row of its own at the same budget, every training prompt answered
    by the served model, its student the white-box runs' starting student saved once."""
    from distillkit.tasks.causal_lm.synthetic import generate
    from tests.integration.test_causal_lm import _saved_decoder

    data = generate(0, 64, 12)
    _jsonl(tmp_path / "data" / "train.jsonl", [{"prompt": r["prompt"], "response": r["response"]} for r in data.train])
    _jsonl(tmp_path / "data" / "dev.jsonl", [{"prompt": r["prompt"], "response": r["response"]} for r in data.eval])
    ckpt = tmp_path / "llama"
    _saved_decoder(ckpt, layers=2)  # the integration tests' tiny Llama with its byte-level BPE

    args = ["--task", "causal_lm", "--teacher", str(ckpt), "--data", str(tmp_path / "data"), "--seeds", "1"]
    lm = ["student.num_layers=1", "student.hidden_size=16", "student.intermediate_size=32", "task.max_new_tokens=6"]
    lm += ["task.eval_generations=8", "task.stage_generations=4", "task.speed_batches=1"]
    # the tiny random teacher never stops within 6 tokens: its truncated answers are kept
    blackbox = ["--blackbox", "blackbox_sft", "--blackbox-override", "teacher.sampling.max_tokens=6"]
    blackbox += ["method.drop_truncated=false"]
    proc = _bench(
        tmp_path, [*args, "--methods", "sft", "forward_kl", *blackbox, "--steps", "3", "--override", *lm, *FAST]
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    header = next(line for line in proc.stdout.splitlines() if line.startswith("| method |"))
    assert "exact_match (pts) | rouge_l (pts) | perplexity | Δ vs sft | Δ vs forward_kl" in header
    rows = _rows(proc.stdout)
    assert set(rows) == {"sft", "forward_kl", "bb_blackbox_sft"}, proc.stdout
    assert rows["sft"][-3] == rows["forward_kl"][-3] == rows["bb_blackbox_sft"][-3] == "3", proc.stdout
    assert "gap teacher minus label-only student (sft), exact_match: " in proc.stdout
    work = tmp_path / "work" / "smoke"
    (result,) = [json.loads(p.read_text()) for p in (work / "bb_blackbox_sft").glob("*/results.json")]
    (generate,) = [s for s in result["stages"] if s["name"] == "generate"]
    assert generate["generation"]["paid"] == 64 and result["run"]["method"] == "blackbox_sft", generate
    init = json.loads((work / "student-init" / "config.json").read_text())
    assert (init["num_hidden_layers"], init["hidden_size"]) == (1, 16)
