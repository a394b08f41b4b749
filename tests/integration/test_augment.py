"""The augmentation group in runs: what the teacher sees, self-distillation on augmented data, every option in one
glob sweep, and a resumed augmented run (the unit half: tests/unit/augment/test_augment.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.conftest import TINY
from tests.unit.augment.test_augment import OPTIONS, _plan


@pytest.mark.slow
def test_teacher_sees_the_augmented_inputs_and_eval_is_untouched(run_tiny, monkeypatch, cache_dir):
    from transformers import AutoTokenizer

    from distillkit import store as cache
    from distillkit.augment import offline
    from distillkit.teachers.sources import FrozenModel

    seen = []
    real = FrozenModel.outputs

    def spy(self, batch, spec, training=True):  # every call: the teacher-output cache's build passes training=False
        seen.extend(tuple(row[mask.bool()].tolist()) for row, mask in zip(batch["input_ids"], batch["attention_mask"]))
        return real(self, batch, spec, training)

    monkeypatch.setattr(FrozenModel, "outputs", spy)
    overrides = ["augmentation=synonym", "augmentation.synonym.p=0.5", "train.max_steps=-1", "train.epochs=1"]
    results, out = run_tiny(overrides)
    aug = results["augmentation"]
    assert aug["options"] == ["synonym"] and aug["examples"] > 100 and aug["seconds"] >= 0
    distill = results["stages"][-1]
    assert distill["train_examples"] == 256 + aug["examples"] == aug["train_examples"]
    assert results["task"]["eval_examples"] == 64 and results["task"]["train_examples"] == 256
    cfg, plan = _plan(overrides, cache_dir)
    entry = cache.entry_dir(
        plan.cache_root, "augmented", offline.entry_spec(cfg, plan, "synonym", list(plan.task.train["text"]))
    )
    tokenizer = AutoTokenizer.from_pretrained(out / "student")
    encoded = {tuple(tokenizer(r["text"], truncation=True, max_length=48)["input_ids"]) for r in offline._read(entry)}
    assert len(encoded) > 100 and len(encoded & set(seen)) == len(encoded)  # the teacher ran on every new text


@pytest.mark.slow
def test_self_distillation_on_augmented_data_each_stage_sees_what_it_can_use(run_tiny):
    """The seed recipe (augment, then self-distil): born-again's gen0 learns from labels, so it gets the new
    examples that keep a label; gen1 learns from gen0, so it also gets the teacher-only ones."""
    results, _ = run_tiny(
        [
            "teacher=none",
            "method=born_again",
            "method.generations=1",
            "method.gen0=labels",
            "augmentation=[synonym,teacher_pseudo_data]",
            "train.max_steps=2",
        ]
    )
    aug = results["augmentation"]
    by_name = {s["name"]: s for s in results["stages"]}
    assert aug["with_labels"] == aug["kept"]["synonym"] and 0 < aug["with_labels"] < aug["examples"]
    assert by_name["gen0"]["train_examples"] == 256 + aug["with_labels"]
    assert by_name["gen1"]["train_examples"] == 256 + aug["examples"]


# ------------------------------------------------------------------------------------------ end to end
def _tiny_translation_models(tmp_path) -> Path:
    """A tiny seq2seq model from a config with the embedded task's tokenizer (gibberish, but real generation)."""
    from transformers import BartConfig, BartForConditionalGeneration

    from distillkit.tasks.classification.data import train_wordpiece
    from distillkit.tasks.classification.synthetic import generate

    out = tmp_path / "tiny-mt"
    tokenizer = train_wordpiece([r["text"] for r in generate(0, 64, 1, 0.0).train], 120, out)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in ("[PAD]", "[CLS]", "[SEP]")}
    config = BartConfig(
        vocab_size=len(tokenizer),
        d_model=16,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        max_position_embeddings=128,
        pad_token_id=ids["[PAD]"],
        bos_token_id=ids["[CLS]"],
        eos_token_id=ids["[SEP]"],
        decoder_start_token_id=ids["[CLS]"],
        forced_eos_token_id=None,
    )
    torch.manual_seed(0)
    BartForConditionalGeneration(config).save_pretrained(out)
    return out


@pytest.mark.slow
def test_every_option_in_one_glob_sweep(tmp_path, cache_dir):
    from tests.helpers import cli

    mt = _tiny_translation_models(tmp_path)
    proc = cli(
        [
            "distillkit",
            "-m",
            *TINY,
            f"cache_dir={cache_dir}",
            "augmentation=glob(*)",
            "train.max_steps=-1",
            "train.epochs=1",
            "data.synthetic.n_train=64",
            "augmentation.mlm_replace.train_steps=20",
            f"augmentation.back_translation.forward={mt}",
            f"augmentation.back_translation.backward={mt}",
            "augmentation.back_translation.max_new_tokens=12",
            "hydra.sweep.dir=sweep",
        ],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    seen = {}
    for job in sorted((tmp_path / "sweep").glob("[0-9]*"), key=lambda p: int(p.name)):
        results = json.loads((job / "results.json").read_text())
        aug = results["augmentation"]
        name = "+".join(aug["options"]) or "none"
        distill = results["stages"][-1]
        seen[name] = distill["train_examples"]
        if aug["offline"]:
            assert aug["examples"] > 0 and distill["train_examples"] == 64 + aug["examples"], name
        if name == "consistency":
            assert "consistency" in distill["final_loss_terms"]
        assert results["task"]["eval_examples"] == 64 and results["student"]["accuracy"] is not None
    assert set(seen) == set(OPTIONS) | {"none"}


@pytest.mark.slow
def test_an_interrupted_augmented_run_resumes_on_the_same_examples(run_tiny, tmp_path, monkeypatch):
    """Killed after 4 steps of distill (checkpoints at 3 and 4), resumed: the pool comes back from the cache,
    the same size, and the stage continues from its checkpoint to its full step count with mixup still on."""
    from .test_end_to_end import _interrupt

    out = tmp_path / "aug"
    overrides = ["augmentation=[synonym,mixup]"]
    _interrupt(run_tiny, monkeypatch, overrides, out, "distill")
    assert (out / "checkpoints" / "distill" / "checkpoint-4").is_dir() and not (out / "results.json").exists()
    results, _ = run_tiny(overrides, out=out, resume=True)
    aug, distill = results["augmentation"], results["stages"][-1]
    assert aug["from_cache"] == {"synonym": True} and aug["examples"] > 100
    assert distill["resumed_from"].endswith("checkpoint-4") and distill["steps"] == 6
    assert distill["train_examples"] == 256 + aug["examples"]
