"""The model-driven augmentations (distillkit/augment/generate.py) on tiny random-init models: TinyBERT's MLM
replacement, the small embedded MLM, checkpoint checks and loading errors, and back-translation's code path
(tiny seq2seq models whose translations are gibberish)."""

from __future__ import annotations

import logging
from collections import Counter

import pytest
import torch

from distillkit.augment.generate import (
    back_translate,
    check_model_available,
    has_mlm_head,
    load_mlm,
    load_seq2seq,
    mlm_replace,
)
from distillkit.errors import ConfigError
from distillkit.tasks.classification.data import train_wordpiece
from distillkit.tasks.classification.synthetic import generate

PROTECTED = frozenset({"the", "a", "and", "not", "never", "was", "is", "i"})
KEY = "augmentation.mlm_replace.model"


@pytest.fixture(scope="module")
def texts() -> list[str]:
    return [row["text"] for row in generate(seed=0, n_train=400, n_eval=8, label_noise=0.0).train]


@pytest.fixture(scope="module")
def tokenizer(texts, tmp_path_factory):
    """A vocabulary small enough that the rarer words are several word pieces."""
    return train_wordpiece(texts, 150, tmp_path_factory.mktemp("tok"))


@pytest.fixture(scope="module")
def mlm(tokenizer):
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        pad_token_id=tokenizer.pad_token_id,
    )
    return BertForMaskedLM(config).eval()


def _kind(word: str, tokenizer) -> str:
    if not word.isalpha():
        return "other"
    if word in PROTECTED:
        return "protected"
    return "eligible" if len(tokenizer.tokenize(word)) == 1 else "multi-piece"


def _replace(texts, mlm, tokenizer, **kw):
    return mlm_replace(texts, mlm, tokenizer, **{"seed": 0, "protected": PROTECTED, **kw})


# ---------------------------------------------------------------------------------------------- mlm_replace
def test_p_zero_keeps_texts(texts, mlm, tokenizer):
    assert _replace(texts[:20], mlm, tokenizer, p=0.0) == texts[:20]


def test_p_one_replaces_every_eligible_word_and_nothing_else(texts, mlm, tokenizer):
    out = _replace(texts[:50], mlm, tokenizer, p=1.0)
    kinds = Counter()
    for before, after in zip(texts[:50], out):
        old, new = before.split(), after.split()
        assert len(old) == len(new)
        for w, v in zip(old, new):
            kinds[_kind(w, tokenizer)] += 1
            if _kind(w, tokenizer) == "eligible":
                assert v != w and _kind(v, tokenizer) in ("eligible", "protected")
            else:
                assert v == w, (w, before, after)
    assert min(kinds.values()) > 10 and len(kinds) == 4, kinds  # the sample has every kind of word


def test_changed_share_is_close_to_p(texts, mlm, tokenizer):
    out = _replace(texts, mlm, tokenizer, p=0.4)
    eligible = changed = 0
    for before, after in zip(texts, out):
        for w, v in zip(before.split(), after.split()):
            eligible += _kind(w, tokenizer) == "eligible"
            changed += w != v
    assert eligible > 1000
    assert abs(changed / eligible - 0.4) < 0.05


def test_seeded_and_independent_of_batching_and_other_texts(texts, mlm, tokenizer):
    base = _replace(texts[:40], mlm, tokenizer, batch_size=64)
    assert _replace(texts[:40], mlm, tokenizer, batch_size=64) == base
    assert _replace(texts[:40], mlm, tokenizer, batch_size=3) == base
    assert _replace(texts[:15], mlm, tokenizer, batch_size=5) == base[:15]
    assert _replace(texts[:40], mlm, tokenizer, seed=1) != base


def test_each_forward_masks_at_most_15_percent_once_per_word(texts, mlm, tokenizer, monkeypatch):
    seen = []
    forward = mlm.forward

    def spy(input_ids, attention_mask, **kw):
        seen.append((input_ids.eq(tokenizer.mask_token_id).sum(1), attention_mask.sum(1)))
        return forward(input_ids=input_ids, attention_mask=attention_mask, **kw)

    monkeypatch.setattr(mlm, "forward", spy)
    out = _replace(texts[:30], mlm, tokenizer, p=1.0, batch_size=8)
    masked = torch.cat([m for m, _ in seen])
    lengths = torch.cat([n for _, n in seen])
    assert (masked <= torch.clamp((0.15 * lengths).long(), min=1)).all()
    changed = sum(w != v for a, b in zip(texts[:30], out) for w, v in zip(a.split(), b.split()))
    assert masked.sum().item() == changed and len(masked) > 30  # several rounds per text, each word masked once


def test_replacement_is_among_the_top_k_of_a_direct_forward(texts, mlm, tokenizer, monkeypatch):
    """With one word masked per forward, a direct forward masking that word alone must agree."""
    monkeypatch.setattr("distillkit.augment.generate.MASK_SHARE", 0.0)
    short = texts[:30]
    out = _replace(short, mlm, tokenizer, p=1.0, top_k=5)
    tokens = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    allowed = torch.tensor([t.isalpha() and i not in tokenizer.all_special_ids for i, t in enumerate(tokens)])
    checked = 0
    for before, after in zip(short, out):
        words = before.split()
        enc = tokenizer(words, is_split_into_words=True, return_tensors="pt")
        for position, j in enumerate(enc.word_ids(0)):
            if j is None or words[j] == after.split()[j]:
                continue
            ids = enc["input_ids"].clone()
            original, ids[0, position] = ids[0, position].item(), tokenizer.mask_token_id
            with torch.no_grad():
                scores = mlm(input_ids=ids).logits[0, position].masked_fill(~allowed, -float("inf"))
            scores[original] = -float("inf")
            top = tokenizer.convert_ids_to_tokens(scores.topk(5).indices.tolist())
            assert after.split()[j] in top
            checked += 1
    assert checked > 100


# ---------------------------------------------------------------------------------------------- checkpoints
def _save(model, tokenizer, path):
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


def test_has_mlm_head(mlm, tokenizer, tmp_path):
    from transformers import BertForSequenceClassification

    assert has_mlm_head(_save(mlm, tokenizer, tmp_path / "mlm"))
    classifier = BertForSequenceClassification(mlm.config)
    assert not has_mlm_head(_save(classifier, tokenizer, tmp_path / "cls"))
    assert not has_mlm_head(str(tmp_path / "missing"))
    legacy = tmp_path / "bin"  # a checkpoint saved as pytorch_model.bin
    mlm.config.save_pretrained(legacy)
    torch.save(mlm.state_dict(), legacy / "pytorch_model.bin")
    assert has_mlm_head(str(legacy))
    torch.save(classifier.state_dict(), legacy / "pytorch_model.bin")
    assert not has_mlm_head(str(legacy))


def test_missing_or_unusable_models_name_the_key(mlm, tokenizer, tmp_path):
    from transformers import BertForSequenceClassification

    (tmp_path / "empty").mkdir()
    for path in (tmp_path / "missing", tmp_path / "empty"):
        for call in (check_model_available, load_mlm, load_seq2seq):
            with pytest.raises(ConfigError) as err:
                call(str(path), KEY)
            assert err.value.key == KEY and "save_pretrained" in err.value.fix
    classifier = _save(BertForSequenceClassification(mlm.config), tokenizer, tmp_path / "cls")
    with pytest.raises(ConfigError, match="AutoModelForSeq2SeqLM"):
        load_seq2seq(classifier, "augmentation.back_translation.forward")


def test_a_path_no_hub_id_can_be_is_looked_for_on_disk(monkeypatch):
    """The augmentation models and the teacher/student tell a path from a hub id alike (``models.looks_local``):
    a backslash path is a missing directory, not an invalid hub id."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ConfigError, match="does not exist"):
        check_model_available("\\no\\such\\model", KEY)


def test_unknown_hub_id_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for call in (check_model_available, load_seq2seq):
        with pytest.raises(ConfigError) as err:
            call("distillkit-tests/no-such-model", "augmentation.back_translation.forward")
        assert err.value.key == "augmentation.back_translation.forward"
        assert "HF_HUB_OFFLINE=1" in err.value.problem and "huggingface-cli download" in err.value.fix


# ---------------------------------------------------------------------------------------------- back_translate
@pytest.fixture(scope="module")
def translators(tokenizer, tmp_path_factory):
    """(forward, backward, mute): tiny random BART models loaded back with load_seq2seq; ``mute`` only ever
    generates the end-of-sequence token."""
    from transformers import BartConfig, BartForConditionalGeneration

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
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.cls_token_id,
        eos_token_id=tokenizer.sep_token_id,
        decoder_start_token_id=tokenizer.cls_token_id,
        forced_eos_token_id=None,
        init_std=1.0,
    )  # large weights: the greedy output depends on the input
    pairs = []
    for seed in (0, 1, 2):
        torch.manual_seed(seed)
        model = BartForConditionalGeneration(config)
        if seed == 2:
            model.final_logits_bias[0, tokenizer.sep_token_id] = 1e4
        path = _save(model, tokenizer, tmp_path_factory.mktemp(f"bart{seed}"))
        pairs.append(load_seq2seq(path, "augmentation.back_translation.forward"))
    return pairs


def test_back_translate_order_is_kept_whatever_the_batching(texts, translators):
    forward, backward, _ = translators
    inputs = texts[:7]
    beams = dict(seed=0, do_sample=False, num_beams=2, max_new_tokens=8)
    one_by_one = back_translate(inputs, forward, backward, batch_size=1, **beams)
    assert len(one_by_one) == len(inputs) and all(isinstance(t, str) and t for t in one_by_one)
    assert back_translate(inputs, forward, backward, batch_size=3, **beams) == one_by_one
    assert len(set(one_by_one)) > 1


def test_back_translate_sampling_is_seeded(texts, translators):
    forward, backward, _ = translators
    state = torch.get_rng_state()
    first = back_translate(texts[:6], forward, backward, seed=0, batch_size=4)
    assert torch.equal(torch.get_rng_state(), state)
    assert back_translate(texts[:6], forward, backward, seed=0, batch_size=4) == first
    assert back_translate(texts[:6], forward, backward, seed=1, batch_size=4) != first
    assert all(" ".join(t.split()) == t for t in first)


def test_back_translate_keeps_the_input_when_the_translation_is_empty(texts, translators, caplog):
    forward, _, mute = translators
    with caplog.at_level(logging.WARNING, logger="distillkit"):
        out = back_translate(texts[:5], forward, mute, seed=0, max_new_tokens=8)
    assert out == texts[:5]
    assert "5 of 5 translations came back empty" in caplog.text
