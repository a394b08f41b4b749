"""task=causal_lm end to end: every method on the embedded instruction task, local files and local "hub" dirs,
the plan-time errors, seq_kd's cached teacher responses, on-policy batches, and the glob sweep of the task."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from distillkit.config.schema import validate
from distillkit.errors import ConfigError
from tests.conftest import TINY_LM, compose_config

LOSS_TERMS = {
    "sft": {"ntp"},
    "forward_kl": {"kd", "ntp"},
    "reverse_kl": {"reverse_kl", "on_policy_batches"},
    "gkd": {"jsd", "on_policy_batches"},
    "minillm": {"single_step", "long_term", "on_policy_batches"},
    "seq_kd": {"ntp"},
    "blackbox_sft": {
        "ntp"
    },  # the embedded teacher writes the answers (tests/integration/test_blackbox.py: an endpoint)
}


@pytest.fixture
def run_lm(tmp_path, cache_dir):
    from distillkit.run import RunContext, run

    def _run(overrides=(), out=None, without=()):
        base = [o for o in TINY_LM if not o.startswith(tuple(without))] if without else TINY_LM
        cfg = validate(compose_config(base + [f"cache_dir={cache_dir}"] + list(overrides)))
        out = Path(out or tmp_path / "run")
        out.mkdir(parents=True, exist_ok=True)
        return run(cfg, RunContext(output_dir=out, job_name="test", overrides=tuple(overrides))), out

    return _run


# gkd and reverse_kl split the run's budget: sft_share 0.5 of it, then distill; 8 steps give distill the 4 steps the
# single-stage methods get from the tiny config's train.max_steps=4
ON_POLICY_BUDGET = ["train.max_steps=8"]


def _check_results(results: dict, method: str) -> None:
    assert results["status"] == "complete" and results["task"]["name"] == "causal_lm"
    assert results["task"]["metric"] == "exact_match"
    for who in ("teacher", "student"):
        scores = results[who]
        assert 0.0 <= scores["exact_match"] <= 1.0 and 0.0 <= scores["rouge_l"] <= 1.0
        assert scores["perplexity"] > 1.0 and math.isfinite(scores["perplexity"])
        assert scores["generated"] == 16 and scores["gen_tokens_per_s"] > 0
    c = results["comparison"]
    assert 0.0 <= c["agreement"] <= 1.0 and c["compression"] > 1.0 and c["gen_speedup"] > 0
    distill = results["stages"][-1]  # the run's steps, or its share of them after an sft stage
    budget = results["budget"]
    spent = sum(s["steps"] for s in results["stages"] if s["name"] != "teacher_prep")
    assert budget["total"]["steps"] == budget["planned_steps"] == spent
    assert distill["name"] == "distill" and distill["steps"] == round(budget["planned_steps"] * distill["share"])
    assert set(distill["final_loss_terms"]) == LOSS_TERMS[method], distill["final_loss_terms"]
    assert all(math.isfinite(v) for v in distill["final_loss_terms"].values())
    assert distill["eval"]["generated"] == 8 and distill["eval"]["perplexity"] > 1.0
    assert len(results["generations"]) == 8 and {"prompt", "reference", "teacher", "student"} <= set(
        results["generations"][0]
    )


@pytest.mark.parametrize("method", ["sft", "forward_kl"])
def test_off_policy_methods_end_to_end(run_lm, method):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    results, out = run_lm([f"method={method}"])
    _check_results(results, method)
    student = AutoModelForCausalLM.from_pretrained(out / "student")  # the exported student loads as a causal LM
    tokenizer = AutoTokenizer.from_pretrained(out / "student")
    assert student.config.num_hidden_layers == 1 and tokenizer.eos_token == "<eos>"
    if method == "forward_kl":  # off-policy with a top-k form: the teacher's top-k log-probs are cached
        assert results["stages"][-1]["teacher_cache"]["used"] and results["stages"][-1]["teacher_cache"]["topk"] == 64


@pytest.mark.slow
@pytest.mark.parametrize("method", ["reverse_kl", "gkd", "seq_kd"])
def test_on_policy_and_sequence_level_methods_end_to_end(run_lm, method, monkeypatch):
    import distillkit.tasks.causal_lm.evaluate as lm_eval

    rollouts = []
    real = lm_eval.rollout
    monkeypatch.setattr(lm_eval, "rollout", lambda *a, **k: rollouts.append(1) or real(*a, **k))
    results, _ = run_lm([f"method={method}"] + (ON_POLICY_BUDGET if method != "seq_kd" else []))
    _check_results(results, method)
    assert results["stages"][-1]["steps"] == 4
    if method != "seq_kd":  # on_policy=1 (reverse_kl) or 0.5 (gkd): the share of sampled batches is logged
        # Which of the distill stage's 4 steps sample is the trainer's coin, seeded by (stage seed 42, step): at
        # gkd's on_policy=0.5 only step 1 draws below it (0.48, 0.79, 0.52, 0.85); reverse_kl samples every step.
        sampled = [1.0, 1.0, 1.0, 1.0] if method == "reverse_kl" else [1.0, 0.0, 0.0, 0.0]
        assert len(rollouts) == sum(sampled)
        share = results["stages"][-1]["final_loss_terms"]["on_policy_batches"]
        assert share == sum(sampled[2:]) / 2  # the mean over the last logging window (logging_steps=2): steps 3, 4


def test_gkd_samples_exactly_the_on_policy_share(run_lm, monkeypatch):
    """on_policy=1: every training batch is the student's own samples; on_policy=0: none is (no rollout at all)."""
    import distillkit.tasks.causal_lm.evaluate as lm_eval

    calls = []
    real = lm_eval.rollout
    monkeypatch.setattr(lm_eval, "rollout", lambda *a, **k: calls.append(1) or real(*a, **k))
    results, _ = run_lm(["method=gkd", "method.on_policy=1.0", "method.sampling.max_new_tokens=4", *ON_POLICY_BUDGET])
    assert len(calls) == 4 and results["stages"][-1]["final_loss_terms"]["on_policy_batches"] == 1.0
    calls.clear()
    results, _ = run_lm(["method=gkd", "method.on_policy=0.0"])
    assert calls == [] and "on_policy_batches" not in results["stages"][-1]["final_loss_terms"]


def test_an_ntp_anchor_beside_on_policy_reverse_kl(run_lm, monkeypatch):
    """method.ntp_weight=μ: every step samples (on_policy=1) and the loss adds μ·NTP on the dataset's responses,
    from the same student forward (lm_eval.forward_on_both, checked in test_lm_eval.py)."""
    import distillkit.tasks.causal_lm.evaluate as lm_eval

    calls = []
    real = lm_eval.forward_on_both
    monkeypatch.setattr(lm_eval, "forward_on_both", lambda *a: calls.append(1) or real(*a))
    results, _ = run_lm(
        ["method=reverse_kl", "method.ntp_weight=0.25", "method.sampling.max_new_tokens=4", *ON_POLICY_BUDGET]
    )
    distill = results["stages"][-1]
    assert len(calls) == 4 and distill["final_loss_terms"]["on_policy_batches"] == 1.0
    assert set(distill["final_loss_terms"]) == {"reverse_kl", "ntp", "on_policy_batches"}
    assert distill["formula"].startswith("L = 0.75·T²·KL(p_s ‖ p_t) + 0.25·NTP(y, p_s)")
    assert "μ=ntp_weight=0.25" in distill["formula"]
    with pytest.raises(ConfigError) as err:
        validate(compose_config(TINY_LM + ["method=gkd", "method.ntp_weight=1.0"]))
    assert err.value.key == "method.ntp_weight"


@pytest.mark.slow
def test_a_sweep_of_the_on_policy_methods_with_a_key_the_default_method_lacks(tmp_path, cache_dir):
    """`-m task=causal_lm method=reverse_kl,gkd method.ntp_weight=0.25`: Hydra's multirun composes the default method
    (forward_kl, no ntp_weight) first and refused the key before preflight handed it over as ++."""
    from tests.helpers import cli

    proc = cli(
        [
            "distillkit",
            "-m",
            *TINY_LM,
            f"cache_dir={cache_dir}",
            "method=reverse_kl,gkd",
            "method.ntp_weight=0.25",
            "method.sampling.max_new_tokens=4",
            "hydra.sweep.dir=sweep",
        ],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = [json.loads(p.read_text()) for p in sorted((tmp_path / "sweep").glob("*/results.json"))]
    assert [r["run"]["method"] for r in runs] == ["reverse_kl", "gkd"]
    assert all("ntp" in r["stages"][-1]["final_loss_terms"] and "0.25·NTP" in r["stages"][-1]["formula"] for r in runs)


def test_minillm_samples_from_the_teacher_mix_and_reports_its_terms(run_lm, monkeypatch):
    """method=minillm: every distill step samples from α·p_teacher + (1 − α)·q_student (lm_eval.sample_mixed, with
    the prepared teacher), the single-step and long-term terms are logged, and the run completes with its report."""
    import distillkit.tasks.causal_lm.evaluate as lm_eval

    alphas = []
    real = lm_eval.sample_mixed
    monkeypatch.setattr(lm_eval, "sample_mixed", lambda *a, **k: alphas.append(a[6]) or real(*a, **k))
    results, out = run_lm(["method=minillm", "method.sampling.max_new_tokens=6", *ON_POLICY_BUDGET])
    _check_results(results, "minillm")
    distill = results["stages"][-1]
    assert alphas == [0.2] * 4 and distill["final_loss_terms"]["on_policy_batches"] == 1.0
    assert distill["formula"].startswith("L = 1·w·KL(p_s ‖ p_t) + 1·[−w·R^Norm_{t+1}·log p_s(y_t)]")
    assert "α=teacher_mix=0.2" in distill["formula"] and "ε=ratio_clip=0.2" in distill["formula"]
    # the single-step term is a weighted KL (w ≥ 0): never negative; the long-term one is −mean(w·R^Norm)
    assert distill["final_loss_terms"]["single_step"] >= 0.0
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    training = [r for r in logged if r["stage"] == "distill" and "loss" in r]
    assert training and all(math.isfinite(r["loss/long_term"]) and r["loss/single_step"] >= 0 for r in training)


def test_seq_kd_trains_on_cached_teacher_responses(run_lm, tmp_path, monkeypatch):
    import distillkit.tasks.causal_lm.seq_kd as seq_kd

    results, _ = run_lm(["method=seq_kd"], out=tmp_path / "first")
    assert "teacher_cache" not in results["stages"][-1]  # its loss reads no teacher: nothing to cache or say
    monkeypatch.setattr(seq_kd, "decode_all", lambda *a, **k: pytest.fail("the teacher decoded again"))
    again, _ = run_lm(["method=seq_kd"], out=tmp_path / "second")
    assert again["student"]["perplexity"] == pytest.approx(results["student"]["perplexity"])


def _jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_local_files_train_with_the_loss_on_responses(run_lm, tmp_path):
    from distillkit.tasks.causal_lm.synthetic import generate

    made = generate(0, 64, 16)
    train = _jsonl(tmp_path / "train.jsonl", [{"q": r["prompt"], "a": r["response"]} for r in made.train])
    evals = _jsonl(tmp_path / "dev.jsonl", [{"q": r["prompt"], "a": r["response"]} for r in made.eval])
    results, _ = run_lm(
        [
            "data=lm_local",
            f"data.train_file={train}",
            f"data.eval_file={evals}",
            "data.max_length=64",
            "data.prompt_field=q",
            "data.response_field=a",
            "method=sft",
        ]
    )
    assert results["task"]["train_examples"] == 64 and results["task"]["eval_examples"] == 16
    assert results["generations"][0]["reference"] == made.eval[0]["response"]


def test_alpaca_preset_on_a_local_dataset_directory(run_lm, tmp_path):
    import datasets

    rows = [
        {"instruction": f"Repeat the word {w}.", "input": "" if i % 2 else "twice", "output": f"{w} {w}"}
        for i, w in enumerate(["cozy", "soup", "album", "ferry", "pasta", "spa"] * 6)
    ]
    datasets.DatasetDict({"train": datasets.Dataset.from_list(rows)}).save_to_disk(str(tmp_path / "alpaca"))
    results, _ = run_lm(
        [
            "data=alpaca",
            f"data.path={tmp_path / 'alpaca'}",
            "data.train_split='train[:-6]'",
            "data.eval_split='train[-6:]'",
            "method=sft",
            "task.eval_generations=6",
        ]
    )
    assert results["task"]["train_examples"] == 30 and results["task"]["eval_examples"] == 6
    assert results["generations"][0]["prompt"].startswith("### Instruction:\n")


def _saved_decoder(path: Path, vocab_rows: int | None = None, layers: int = 2):
    """A tiny Llama + the embedded task's byte-level BPE, saved as a hub checkpoint would be."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    from distillkit.tasks.causal_lm.synthetic import generate, texts_for_tokenizer
    from distillkit.tasks.causal_lm.task import train_byte_bpe

    tok = train_byte_bpe(texts_for_tokenizer(generate(0, 128, 8)), 300, path)
    config = LlamaConfig(
        vocab_size=vocab_rows or len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=layers,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=128,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
    )
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(path)
    return tok


def test_hub_teacher_and_student_from_local_dirs_with_padded_vocabularies(run_lm, tmp_path, caplog):
    caplog.set_level("INFO", logger="distillkit")
    tok = _saved_decoder(tmp_path / "teacher", layers=2)
    _saved_decoder(tmp_path / "student", vocab_rows=len(tok) + 20, layers=1)
    results, _ = run_lm(
        [
            "teacher=hub",
            f"teacher.path={tmp_path / 'teacher'}",
            "student=hub",
            f"student.path={tmp_path / 'student'}",
            "method=forward_kl",
        ],
        without=("teacher.", "student."),
    )
    assert [s["name"] for s in results["stages"]] == ["distill"]  # a causal LM checkpoint is used as it is
    assert "rows beyond" in caplog.text  # the padded rows: said, and sliced off by the losses


@pytest.mark.slow
def test_every_method_of_the_task_in_one_glob_sweep(tmp_path, cache_dir):
    from tests.helpers import cli

    # blackbox_sft, critique_revise and star aside: the tiny teacher (student) writes nothing their filters keep
    # (blank or cut answers), which they refuse to train on; tests/integration/test_blackbox.py runs blackbox_sft with
    # a teacher that answers, tests/integration/test_self_improve.py the other two
    proc = cli(
        [
            "distillkit",
            "-m",
            *TINY_LM,
            f"cache_dir={cache_dir}",
            "method=glob(*,exclude=[blackbox_sft,critique_revise,star])",
            "hydra.sweep.dir=sweep",
        ],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "will be skipped: its method distils classification models and its task is causal_lm" in proc.stdout
    ran = {}
    for job in (tmp_path / "sweep").glob("[0-9]*"):
        if (job / "skipped.txt").exists():
            continue
        results = json.loads((job / "results.json").read_text())
        ran[results["run"]["method"]] = results
    assert sorted(ran) == sorted(set(LOSS_TERMS) - {"blackbox_sft"})
    for method, results in ran.items():
        _check_results(results, method)
    proc = cli(["distillkit.compare", "sweep"], tmp_path)
    assert proc.returncode == 0 and "student exact_match" in proc.stdout, proc.stderr


def test_chat_messages_are_rendered_with_the_teachers_chat_template(run_lm, tmp_path):
    tok = _saved_decoder(tmp_path / "teacher")
    tok.chat_template = (
        "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>{% endif %}"
    )
    tok.save_pretrained(tmp_path / "teacher")
    rows = [
        {
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": f"Say {w}."},
                {"role": "assistant", "content": w},
            ]
        }
        for w in ["cozy", "soup", "album", "ferry"] * 8
    ]
    data = _jsonl(tmp_path / "chat.jsonl", rows)
    results, _ = run_lm(
        [
            "teacher=hub",
            f"teacher.path={tmp_path / 'teacher'}",
            "data=lm_local",
            "method=sft",
            f"data.train_file={data}",
            f"data.eval_file={data}",
            "data.messages_field=messages",
            "task.eval_generations=4",
        ],
        without=("teacher.",),
    )
    shown = results["generations"][0]
    assert shown["prompt"] == "<|system|>Be brief.\n<|user|>Say cozy.\n<|assistant|>" and shown["reference"] == "cozy"


def test_topk_cache_with_k_covering_the_vocabulary_follows_the_online_run(run_lm, tmp_path):
    """k >= V in fp32: the cached top-k targets are the teacher's whole distribution, so the cached run's losses
    equal the online run's step by step; the second run reads the entry (built once)."""
    common = [
        "method=forward_kl",
        "method.temperature=2",
        "teacher.cache_topk=400",
        "teacher.cache_precision=fp32",
        "train.logging_steps=1",
    ]
    online, out_online = run_lm(common + ["teacher.cache_outputs=never"], out=tmp_path / "online")
    cached, out_cached = run_lm(common, out=tmp_path / "cached")
    again, _ = run_lm(common, out=tmp_path / "again")
    record = cached["stages"][-1]["teacher_cache"]
    assert record["used"] and record["built"] and record["topk"] == 300  # k capped at the vocabulary
    assert again["stages"][-1]["teacher_cache"]["built"] is False
    assert online["stages"][-1]["teacher_cache"] == {"used": False, "reason": "teacher.cache_outputs=never"}
    steps = [
        [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        for out in (out_online, out_cached)
    ]
    kd = [[r["loss/kd"] for r in rows if r["stage"] == "distill" and "loss/kd" in r] for rows in steps]
    assert len(kd[0]) == 4 and kd[0] == pytest.approx(kd[1], rel=1e-4, abs=1e-6)
    assert cached["student"]["perplexity"] == pytest.approx(online["student"]["perplexity"], rel=1e-4)


def test_topk_cache_keeps_k_tokens_and_the_tail_mass(run_lm):
    results, _ = run_lm(["method=forward_kl", "teacher.cache_topk=8"])
    entry = Path(results["stages"][-1]["teacher_cache"]["entry"])
    import numpy as np

    indices, logprobs = np.load(entry / "indices.npy"), np.load(entry / "logprobs.npy").astype(np.float64)
    tail, offsets = np.load(entry / "tail.npy").astype(np.float64), np.load(entry / "offsets.npy")
    assert indices.shape[1] == 8 and len(indices) == offsets[-1] == len(tail)
    assert np.all(np.diff(logprobs, axis=1) <= 1e-3)  # sorted, most likely first
    total = np.exp(logprobs).sum(1) + np.exp(tail)  # the k kept tokens and the tail hold all the mass
    assert np.allclose(total, 1.0, atol=5e-3)


@pytest.mark.parametrize("method,why", [("gkd", "whole next-token distribution"), ("reverse_kl", "on-policy")])
def test_objectives_without_a_topk_form_are_not_cached(run_lm, method, why):
    results, _ = run_lm(
        [
            f"method={method}",
            "method.on_policy=0.0" if method == "gkd" else "method.on_policy=1.0",
            "method.sampling.max_new_tokens=4",
        ]
    )
    record = results["stages"][-1]["teacher_cache"]
    assert record["used"] is False and why in record["reason"]


def test_wandb_gets_the_generations_table_and_the_task_metrics(run_lm, tmp_path, monkeypatch):
    from tests.wandb_records import read_finished_run

    monkeypatch.setenv("WANDB_MODE", "offline")
    results, out = run_lm(["logger=wandb", "method=forward_kl"])
    (run_dir,) = (out / "wandb").glob("offline-run-*")
    record = read_finished_run(run_dir)
    assert {"generations/_type", "generations/nrows", "distill/loss/kd"} <= record["history_keys"]  # a wandb.Table
    assert (
        json.loads(record["summary"]["generations/nrows"]) == 8
        and json.loads(record["summary"]["generations/ncols"]) == 4
    )
    assert json.loads(record["summary"]["student/exact_match"]) == pytest.approx(results["student"]["exact_match"])
    assert "comparison/gen_speedup" in record["summary"] and "comparison/agreement" in record["summary"]
