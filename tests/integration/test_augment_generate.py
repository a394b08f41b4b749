"""The small embedded MLM that augmentation=mlm_replace trains when the teacher has no MLM head: it learns, saves and
is deterministic (the rest of distillkit/augment/generate.py: tests/unit/augment/test_augment_generate.py)."""

from __future__ import annotations

import pytest
import torch

from distillkit.augment.generate import has_mlm_head, load_mlm, train_mlm
from distillkit.tasks.classification.data import train_wordpiece
from distillkit.tasks.classification.synthetic import generate

KEY = "augmentation.mlm_replace.model"


@pytest.fixture(scope="module")
def texts() -> list[str]:
    return [row["text"] for row in generate(seed=0, n_train=400, n_eval=8, label_noise=0.0).train]


@pytest.fixture(scope="module")
def tokenizer(texts, tmp_path_factory):
    return train_wordpiece(texts, 150, tmp_path_factory.mktemp("tok"))


# ---------------------------------------------------------------------------------------------- train_mlm
def _masked_loss(model, tokenizer, texts) -> float:
    gen = torch.Generator().manual_seed(123)
    enc = tokenizer(texts, padding=True, return_tensors="pt")
    ids = enc["input_ids"]
    pick = (torch.rand(ids.shape, generator=gen) < 0.15) & (ids > 4)  # ids 0-4: the special tokens
    with torch.no_grad():
        logits = model(
            input_ids=ids.masked_fill(pick, tokenizer.mask_token_id), attention_mask=enc["attention_mask"]
        ).logits
    return torch.nn.functional.cross_entropy(logits[pick], ids[pick]).item()


def test_train_mlm_learns_saves_and_is_deterministic(texts, tokenizer, tmp_path):
    from transformers import AutoConfig, AutoModelForMaskedLM

    state = torch.get_rng_state()
    out = train_mlm(texts, tokenizer, tmp_path / "a", seed=0, steps=60, batch_size=32)
    assert torch.equal(torch.get_rng_state(), state)
    model, loaded_tokenizer = load_mlm(str(out), KEY)
    assert loaded_tokenizer.get_vocab() == tokenizer.get_vocab() and has_mlm_head(str(out))
    torch.manual_seed(0)
    untrained = AutoModelForMaskedLM.from_config(AutoConfig.from_pretrained(out)).eval()
    assert _masked_loss(model, tokenizer, texts[:100]) < _masked_loss(untrained, tokenizer, texts[:100]) - 1.0
    again, _ = load_mlm(str(train_mlm(texts, tokenizer, tmp_path / "b", seed=0, steps=60, batch_size=32)), KEY)
    assert all(torch.equal(p, q) for p, q in zip(model.state_dict().values(), again.state_dict().values()))
