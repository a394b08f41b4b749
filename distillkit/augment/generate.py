"""The model-driven offline augmentations: TinyBERT's MLM word replacement and back-translation, plus loading
(and, for the embedded task, training) the models they run.

MLM replacement (TinyBERT: Jiao et al. 2020, "TinyBERT: Distilling BERT for Natural Language Understanding",
Algorithm 1, with p_t = 0.4, K = 15 candidates, N_a = 20 copies): each single-piece word of a text is chosen
with probability p_t and replaced by a word drawn uniformly from the K most likely predictions of a masked
language model at that position. TinyBERT masks one word at a time on the original sentence; here the chosen
positions are split into rounds that each mask at most ~15% of the text's tokens (BERT's pre-training rate),
the other chosen words still showing their original word, so a text needs a few forwards, batched across
texts. Words of several word pieces are kept: TinyBERT replaces them with GloVe neighbours, which distillkit
does not ship. Only alphabetic words are replaced and only by alphabetic whole-word tokens (no punctuation,
numbers, ``##`` continuations or special tokens), and never by themselves.

Back-translation (Sennrich et al. 2016, "Improving Neural Machine Translation Models with Monolingual Data";
as paraphrasing for consistency training in Xie et al. 2020, "Unsupervised Data Augmentation for Consistency
Training", which samples rather than beam-searches for diversity): translate to a pivot language and back.

No weights are downloaded here: ``check_model_available`` and the loaders raise ``ConfigError`` with the key
and how to provide the model when the hub is switched off and the cache does not hold it.
"""

from __future__ import annotations

import logging
import math
import os
import random
import time
from pathlib import Path

import torch

from distillkit.errors import ConfigError, first_line
from distillkit.losses import IGNORE_INDEX
from distillkit.models.loading import looks_local

log = logging.getLogger("distillkit")

MASK_SHARE = 0.15  # most of a text's tokens masked in one MLM forward (BERT's masking rate)
_WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


# ------------------------------------------------------------------------------------------ MLM replacement
def mlm_replace(
    texts: list[str],
    model,
    tokenizer,
    seed: int,
    p: float = 0.4,
    top_k: int = 15,
    batch_size: int = 64,
    device="cpu",
    protected: frozenset = frozenset(),
) -> list[str]:
    """TinyBERT's augmentation of each text: its eligible words (single word piece, alphabetic, not special,
    lowercase form not in ``protected``) chosen with probability ``p``, each replaced by one of the MLM's
    ``top_k`` candidates for that position, drawn uniformly. Text i draws from ``random.Random`` seeded by
    (seed, i), so its result does not depend on ``batch_size`` or on the other texts. ``model`` must already
    be on ``device``. Returns the texts as their whitespace words joined by single spaces."""
    words = [text.split() for text in texts]
    if not any(words):
        return [" ".join(w) for w in words]
    rngs = [random.Random(f"mlm_replace:{seed}:{i}") for i in range(len(texts))]
    ids, chosen = _choose(words, tokenizer, rngs, p, protected, _max_length(model, tokenizer))
    jobs = [(i, positions) for i in range(len(texts)) for positions in _rounds(chosen[i], len(ids[i]))]
    valid = _candidate_ids(tokenizer, model.config.vocab_size)
    candidates = _predict(model, ids, jobs, valid, top_k, batch_size, tokenizer, device)
    out = []
    for i, text_words in enumerate(words):
        new = list(text_words)
        for position, word in sorted(chosen[i].items()):
            options = candidates[i, position]
            if options:
                new[word] = _token_text(tokenizer, options[rngs[i].randrange(len(options))])
        out.append(" ".join(new))
    return out


def _max_length(model, tokenizer) -> int:
    return min(tokenizer.model_max_length, getattr(model.config, "max_position_embeddings", 512))


def _choose(
    words: list[list[str]], tokenizer, rngs: list[random.Random], p: float, protected: frozenset, max_length: int
) -> tuple[list[list[int]], list[dict[int, int]]]:
    """Each text's token ids, and its chosen words as {token position: word index}."""
    vocab = sorted({w for ws in words for w in ws})
    single = {w: len(ids) == 1 for w, ids in zip(vocab, tokenizer(vocab, add_special_tokens=False)["input_ids"])}
    special = set(tokenizer.all_special_ids)
    enc = tokenizer(words, is_split_into_words=True, truncation=True, max_length=max_length, add_special_tokens=True)
    chosen = []
    for i, ws in enumerate(words):
        ids = enc["input_ids"][i]
        picks = {}
        for position, word in enumerate(enc.word_ids(i)):
            w = ws[word] if word is not None else ""
            eligible = w.isalpha() and single[w] and ids[position] not in special and w.lower() not in protected
            if eligible and rngs[i].random() < p:
                picks[position] = word
        chosen.append(picks)
    return enc["input_ids"], chosen


def _rounds(chosen: dict[int, int], n_tokens: int) -> list[list[int]]:
    """Disjoint groups of the chosen positions, each at most MASK_SHARE of the text's ``n_tokens`` (specials
    included; at least one), interleaved so the positions masked together lie apart."""
    positions = sorted(chosen)
    if not positions:
        return []
    per_round = max(1, int(MASK_SHARE * n_tokens))
    n_rounds = math.ceil(len(positions) / per_round)
    return [positions[r::n_rounds] for r in range(n_rounds)]


def _candidate_ids(tokenizer, size: int) -> torch.Tensor:
    """Which output ids may replace a word: alphabetic whole-word tokens, not special, not ``##`` pieces."""
    special = set(tokenizer.all_special_ids)
    tokens = tokenizer.convert_ids_to_tokens(list(range(min(size, len(tokenizer)))))
    valid = torch.zeros(size, dtype=torch.bool)
    for i, token in enumerate(tokens):
        if token is not None and i not in special and not token.startswith("##"):
            valid[i] = _token_text(tokenizer, i).isalpha()
    return valid


def _token_text(tokenizer, token_id: int) -> str:
    return tokenizer.convert_tokens_to_string([tokenizer.convert_ids_to_tokens(token_id)]).strip()


@torch.inference_mode()
def _predict(
    model,
    ids: list[list[int]],
    jobs: list[tuple[int, list[int]]],
    valid: torch.Tensor,
    top_k: int,
    batch_size: int,
    tokenizer,
    device,
) -> dict[tuple[int, int], list[int]]:
    """{(text, position): the top_k allowed ids other than the original} from one forward per job, a job
    masking ``positions`` of text ``i``; jobs batched by length."""
    jobs = sorted(jobs, key=lambda job: len(ids[job[0]]))
    out = {}
    for start in range(0, len(jobs), batch_size):
        batch = jobs[start : start + batch_size]
        width = max(len(ids[i]) for i, _ in batch)
        input_ids = torch.full((len(batch), width), tokenizer.pad_token_id, dtype=torch.long)
        attention = torch.zeros((len(batch), width), dtype=torch.long)
        rows, cols = [], []
        for b, (i, positions) in enumerate(batch):
            input_ids[b, : len(ids[i])] = torch.tensor(ids[i])
            attention[b, : len(ids[i])] = 1
            rows += [b] * len(positions)
            cols += positions
        original = input_ids[rows, cols]
        input_ids[rows, cols] = tokenizer.mask_token_id
        logits = model(input_ids=input_ids.to(device), attention_mask=attention.to(device)).logits
        scores = logits[rows, cols].float().cpu().masked_fill(~valid, -math.inf)
        scores[torch.arange(len(rows)), original] = -math.inf
        best = scores.topk(min(top_k, scores.shape[1]), dim=1)
        for r, (b, col) in enumerate(zip(rows, cols)):
            out[batch[b][0], col] = best.indices[r][best.values[r].isfinite()].tolist()
    return out


# ------------------------------------------------------------------------------------------ the embedded MLM
def train_mlm(
    texts: list[str],
    tokenizer,
    out_dir: Path,
    seed: int,
    steps: int = 600,
    hidden: int = 64,
    layers: int = 2,
    heads: int = 2,
    batch_size: int = 128,
    lr: float = 5e-3,
) -> Path:
    """A small BertForMaskedLM trained from scratch on ``texts`` (BERT's masking: 15% of the tokens, of which
    80% [MASK], 10% a random token, 10% kept), saved with ``tokenizer`` in ``out_dir``. No dropout (a model
    this small on this little compute underfits); AdamW with 5% warm-up and linear decay; all randomness from
    ``seed``, the global RNG state left as it was."""
    from transformers import BertConfig, BertForMaskedLM

    start = time.perf_counter()
    ids = tokenizer(list(texts), truncation=True, max_length=128)["input_ids"]
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=4 * hidden,
        max_position_embeddings=512,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        pad_token_id=tokenizer.pad_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = BertForMaskedLM(config)
        losses = _train(model, ids, tokenizer, steps, batch_size, lr, torch.Generator().manual_seed(seed))
    tail = losses[-max(1, steps // 10) :]
    log.info(
        "augmentation: MLM trained in %.0f s, %d steps, loss %.3f → %.3f (mean of the last %d steps)",
        time.perf_counter() - start,
        steps,
        losses[0],
        sum(tail) / len(tail),
        len(tail),
    )
    model.eval().save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return Path(out_dir)


def _train(
    model, ids: list[list[int]], tokenizer, steps: int, batch_size: int, lr: float, gen: torch.Generator
) -> list[float]:
    """The MLM training loop; returns the loss of each step."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    warmup = max(1, steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, max(0.0, (steps - s) / max(1, steps - warmup)))
    )
    special = torch.tensor(sorted(set(tokenizer.all_special_ids)))
    model.train()
    losses = []
    for batch in _batches(len(ids), batch_size, steps, gen):
        input_ids, attention = _pad([ids[i] for i in batch], tokenizer.pad_token_id)
        input_ids, labels = _mask_tokens(input_ids, special, tokenizer.mask_token_id, len(tokenizer), gen)
        hidden_states = model.bert(input_ids=input_ids, attention_mask=attention).last_hidden_state
        predicted = labels != IGNORE_INDEX  # the vocabulary projection runs on the predicted positions only
        loss = torch.nn.functional.cross_entropy(model.cls(hidden_states[predicted]), labels[predicted])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
    return losses


def _batches(n: int, batch_size: int, steps: int, gen: torch.Generator):
    """``steps`` batches of example indices, walking through shuffled epochs."""
    order, at = torch.randperm(n, generator=gen), 0
    for _ in range(steps):
        if at + batch_size > n and at > 0:
            order, at = torch.randperm(n, generator=gen), 0
        yield order[at : at + batch_size].tolist()
        at += batch_size


def _pad(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    input_ids = torch.tensor([r + [pad_id] * (width - len(r)) for r in rows])
    attention = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
    return input_ids, attention


def _mask_tokens(
    input_ids: torch.Tensor, special: torch.Tensor, mask_id: int, vocab_size: int, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's masking: 15% of the non-special tokens predicted; of those 80% [MASK], 10% random, 10% kept."""
    can = ~torch.isin(input_ids, special)
    picked = (torch.rand(input_ids.shape, generator=gen) < 0.15) & can
    if not picked.any():  # a batch of very short texts: predict its first token rather than nothing
        picked = can & (can.flatten().cumsum(0).view_as(can) == 1)
    labels = input_ids.masked_fill(~picked, IGNORE_INDEX)
    draw = torch.rand(input_ids.shape, generator=gen)
    input_ids = input_ids.masked_fill(picked & (draw < 0.8), mask_id)
    randomised = picked & (draw >= 0.8) & (draw < 0.9)
    noise = torch.randint(vocab_size, input_ids.shape, generator=gen)
    return torch.where(randomised, noise, input_ids), labels


# ------------------------------------------------------------------------------------------ loading models
def has_mlm_head(path_or_id: str, revision: str | None = None) -> bool:
    """Whether the checkpoint's weights include an MLM head, read from the weight files' key names (no weights
    loaded): the head modules of the architecture's ``AutoModelForMaskedLM`` class (BERT's ``cls``, RoBERTa's
    ``lm_head``, ...) must appear. False when the architecture has no MLM class or the checkpoint cannot be read."""
    from transformers import AutoConfig, AutoModelForMaskedLM

    try:
        config = AutoConfig.from_pretrained(path_or_id, revision=revision)
        with torch.device("meta"):
            skeleton = AutoModelForMaskedLM.from_config(config)
        keys = _checkpoint_keys(path_or_id, revision)
    except (OSError, ValueError, KeyError) as err:
        log.debug("has_mlm_head(%s): %s", path_or_id, err)
        return False
    heads = [
        name
        for name, module in skeleton.named_children()
        if name != skeleton.base_model_prefix and any(True for _ in module.parameters())
    ]
    return any(key.startswith(f"{head}.") for head in heads for key in keys)


def _checkpoint_keys(path_or_id: str, revision: str | None) -> list[str]:
    """The parameter names stored in the checkpoint's first weight file found (or its shard index)."""
    import json

    from transformers.utils import cached_file

    for name in _WEIGHT_FILES:
        file = cached_file(path_or_id, name, revision=revision, _raise_exceptions_for_missing_entries=False)
        if file is None:
            continue
        if name.endswith(".index.json"):
            return list(json.loads(Path(file).read_text())["weight_map"])
        if name.endswith(".safetensors"):
            from safetensors import safe_open

            with safe_open(file, framework="pt") as f:
                return list(f.keys())
        return list(torch.load(file, map_location="cpu", mmap=True, weights_only=True))
    raise OSError(f"no weight file ({', '.join(_WEIGHT_FILES)}) in {path_or_id}")


def load_mlm(path_or_id: str, key: str, revision: str | None = None) -> tuple:
    """(AutoModelForMaskedLM, AutoTokenizer) from a hub id or a local directory, in eval mode."""
    from transformers import AutoModelForMaskedLM

    return _load(AutoModelForMaskedLM, path_or_id, key, revision)


def load_seq2seq(path_or_id: str, key: str, revision: str | None = None) -> tuple:
    """(AutoModelForSeq2SeqLM, AutoTokenizer) from a hub id or a local directory, in eval mode."""
    from transformers import AutoModelForSeq2SeqLM

    return _load(AutoModelForSeq2SeqLM, path_or_id, key, revision)


def _load(auto_class, path_or_id: str, key: str, revision: str | None) -> tuple:
    from transformers import AutoTokenizer

    check_model_available(path_or_id, key, revision)
    path = os.path.expanduser(path_or_id)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, revision=revision)
        model = auto_class.from_pretrained(path, revision=revision)
    except (OSError, ValueError) as err:
        problem = f"could not be loaded as {auto_class.__name__} ({first_line(err)})."
        raise _unavailable(key, path_or_id, problem) from None
    return model.eval(), tokenizer


def check_model_available(path_or_id: str, key: str, revision: str | None = None) -> None:
    """A cheap check before training starts (no weights read): a local directory must hold config.json; with
    the hub switched off (HF_HUB_OFFLINE=1) a hub id's config.json must be in the local cache."""
    from huggingface_hub import try_to_load_from_cache

    if looks_local(path_or_id):
        local = os.path.expanduser(path_or_id)
        if not os.path.isdir(local):
            raise _unavailable(
                key, path_or_id, "is a file, not a directory." if os.path.exists(local) else "does not exist."
            )
        if not os.path.isfile(os.path.join(local, "config.json")):
            raise _unavailable(key, path_or_id, "is a directory without config.json, so not a saved model.")
        return
    if not _hub_offline():
        return
    try:
        cached = try_to_load_from_cache(path_or_id, "config.json", revision=revision)
    except ValueError as err:  # HFValidationError: not a valid repo id
        problem = f"is neither a local directory nor a valid hub id ({first_line(err)})."
        raise _unavailable(key, path_or_id, problem) from None
    if not isinstance(cached, str):
        raise _unavailable(key, path_or_id, "is not a local directory, and the local hub cache has no copy of it.")


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in ("1", "ON", "YES", "TRUE")


def _unavailable(key: str, path_or_id: str, problem: str) -> ConfigError:
    hub = (
        "The hub is switched off (HF_HUB_OFFLINE=1), so nothing is downloaded."
        if _hub_offline()
        else "The hub is reachable in principle (HF_HUB_OFFLINE is not set)."
    )
    return ConfigError(
        key,
        path_or_id,
        f"{problem} {hub}",
        f"set {key} to a local directory saved with save_pretrained (config.json, weights and "
        "tokenizer), or download the model once with network, e.g. "
        "`huggingface-cli download Helsinki-NLP/opus-mt-en-de`, and run again.",
    )


# ------------------------------------------------------------------------------------------ back-translation
def back_translate(
    texts: list[str],
    forward: tuple,
    backward: tuple,
    seed: int,
    batch_size: int = 32,
    num_beams: int = 1,
    do_sample: bool = True,
    top_p: float = 0.9,
    temperature: float = 1.0,
    max_new_tokens: int | None = None,
    device="cpu",
) -> list[str]:
    """Each text translated by ``forward`` = (model, tokenizer) to the pivot language and back by ``backward``,
    whitespace collapsed; one text per input, in input order. Texts are batched by length. With sampling the
    torch RNG is seeded per batch from (seed, the batch's first text index), so a text's paraphrase depends on
    the batch it lands in (batch_size and the other texts), not only on the seed; beam search and greedy
    decoding do not depend on it. A translation that comes back empty is replaced by its input; how many were
    is logged. ``max_new_tokens=None``: 1.5 × each batch's longest input + 10 tokens. Inputs and outputs are
    cut to the model's positions. Models must be on ``device``."""
    options = {"num_beams": num_beams, "do_sample": do_sample}
    if do_sample:
        options.update(top_p=top_p, temperature=temperature)
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out: list[str] = [""] * len(texts)
    for start in range(0, len(order), batch_size):
        batch = order[start : start + batch_size]
        with torch.random.fork_rng(devices=_cuda_indices(device)):
            torch.manual_seed(seed * 1_000_003 + batch[0])
            pivot = _translate(forward, [texts[i] for i in batch], options, max_new_tokens, device)
            back = _translate(backward, pivot, options, max_new_tokens, device)
        for i, text in zip(batch, back):
            out[i] = text
    empty = [i for i, text in enumerate(out) if not text]
    if empty:
        log.warning(
            "back_translation: %d of %d translations came back empty; kept their inputs.", len(empty), len(texts)
        )
    return [text or texts[i] for i, text in enumerate(out)]


def _cuda_indices(device) -> list[int]:
    """The CUDA device whose RNG state sampling changes (restored after each batch), if any."""
    device = torch.device(device)
    return [device.index or 0] if device.type == "cuda" else []


@torch.inference_mode()
def _translate(pair: tuple, texts: list[str], options: dict, max_new_tokens: int | None, device) -> list[str]:
    model, tokenizer = pair
    max_length = _max_length(model, tokenizer)
    enc = tokenizer(texts, return_tensors="pt", padding=True, truncation=True, max_length=max_length)
    limit = min(max_new_tokens or int(1.5 * enc["input_ids"].shape[1]) + 10, max_length - 1)
    generated = model.generate(
        input_ids=enc["input_ids"].to(device),
        attention_mask=enc["attention_mask"].to(device),
        max_new_tokens=limit,
        **options,
    )
    return [" ".join(text.split()) for text in tokenizer.batch_decode(generated, skip_special_tokens=True)]
