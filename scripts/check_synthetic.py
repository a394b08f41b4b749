#!/usr/bin/env python
"""Sanity report for distillkit.tasks.classification.synthetic: statistics, examples and how much word order matters.

Trains three small models with torch on the train split (CPU, well under a minute) and reports their
accuracy on the clean eval split:
  1. bag-of-words logistic regression (unigram counts; blind to word order),
  2. logistic regression on unigrams + bigrams (local word order),
  3. a tiny 2-layer bidirectional GRU (full word order).

    python scripts/check_synthetic.py [--seed 0] [--n-train 8000] [--n-eval 1000] [--label-noise 0.1]
"""

from __future__ import annotations

import argparse
import collections
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from distillkit.tasks.classification import synthetic  # noqa: E402 (after the sys.path set-up above)


def build_vocab(texts, ngram: int, min_count: int = 1) -> dict[str, int]:
    counts = collections.Counter()
    for t in texts:
        counts.update(ngrams(t, ngram))
    vocab = {"<unk>": 0}
    for w, c in sorted(counts.items()):
        if c >= min_count:
            vocab[w] = len(vocab)
    return vocab


def ngrams(text: str, n: int) -> list[str]:
    """Unigrams, plus bigrams (with sentence boundary markers) when n == 2."""
    toks = text.split()
    if n == 1:
        return toks
    padded = ["<s>"] + toks + ["</s>"]
    return toks + [f"{a} {b}" for a, b in zip(padded, padded[1:])]


def encode_bag(texts, vocab, ngram, pad: int) -> torch.Tensor:
    """Padded [n, max_len] matrix of n-gram ids (pad = an all-zero, frozen row)."""
    rows = [[vocab.get(g, 0) for g in ngrams(t, ngram)] for t in texts]
    x = torch.full((len(rows), max(map(len, rows))), pad, dtype=torch.long)
    for i, r in enumerate(rows):
        x[i, : len(r)] = torch.tensor(r)
    return x


def train_linear(train, eval_, ngram: int, epochs: int = 5, seed: int = 0) -> torch.Tensor:
    """Multinomial logistic regression on n-gram counts (an EmbeddingBag with sum = sparse X @ W)."""
    torch.manual_seed(seed)
    vocab = build_vocab([e["text"] for e in train], ngram, min_count=1 if ngram == 1 else 2)
    pad = len(vocab)
    x = encode_bag([e["text"] for e in train], vocab, ngram, pad)
    y = torch.tensor([e["label"] for e in train])
    ex = encode_bag([e["text"] for e in eval_], vocab, ngram, pad)
    model = nn.EmbeddingBag(len(vocab) + 1, synthetic.NUM_CLASSES, mode="sum", padding_idx=pad)
    nn.init.zeros_(model.weight)
    bias = nn.Parameter(torch.zeros(synthetic.NUM_CLASSES))
    opt = torch.optim.Adam(list(model.parameters()) + [bias], lr=0.01)
    for _ in range(epochs):
        perm = torch.randperm(len(y))
        for b in range(0, len(y), 128):
            idx = perm[b : b + 128]
            loss = nn.functional.cross_entropy(model(x[idx]) + bias, y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        return (model(ex) + bias).argmax(-1)


class GRUClassifier(nn.Module):
    def __init__(self, vocab_size: int, dim: int = 48, hidden: int = 48) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab_size, dim, padding_idx=0)
        self.gru = nn.GRU(dim, hidden, num_layers=2, batch_first=True, bidirectional=True, dropout=0.1)
        self.out = nn.Linear(2 * hidden, synthetic.NUM_CLASSES)

    def forward(self, x, lengths):
        h = self.emb(x)
        packed = nn.utils.rnn.pack_padded_sequence(h, lengths, batch_first=True, enforce_sorted=False)
        _, hn = self.gru(packed)  # (layers*2, B, H)
        return self.out(torch.cat([hn[-2], hn[-1]], dim=-1))


def encode_seq(texts, vocab):
    seqs = [[vocab.get(w, 1) for w in t.split()] for t in texts]
    lengths = torch.tensor([len(s) for s in seqs])
    x = torch.zeros(len(seqs), int(lengths.max()), dtype=torch.long)
    for i, s in enumerate(seqs):
        x[i, : len(s)] = torch.tensor(s)
    return x, lengths


def train_gru(train, eval_, epochs: int = 6, seed: int = 0, batch_size: int = 64) -> torch.Tensor:
    torch.manual_seed(seed)
    words = sorted({w for e in train for w in e["text"].split()})
    vocab = {w: i + 2 for i, w in enumerate(words)}  # 0 pad, 1 unk
    x, lx = encode_seq([e["text"] for e in train], vocab)
    y = torch.tensor([e["label"] for e in train])
    ex, elx = encode_seq([e["text"] for e in eval_], vocab)
    model = GRUClassifier(len(vocab) + 2)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(len(train))
        for b in range(0, len(train), batch_size):
            idx = perm[b : b + batch_size]
            bl = lx[idx]
            logits = model(x[idx, : int(bl.max())], bl)
            loss = nn.functional.cross_entropy(logits, y[idx])
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
    model.eval()
    with torch.no_grad():
        return model(ex, elx).argmax(-1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-train", type=int, default=8000)
    p.add_argument("--n-eval", type=int, default=1000)
    p.add_argument("--label-noise", type=float, default=0.1)
    p.add_argument("--examples", type=int, default=3, help="examples printed per class")
    p.add_argument("--skip-models", action="store_true")
    args = p.parse_args()
    # These models are tiny: one thread is faster than two fighting over a busy 2-core machine.
    torch.set_num_threads(1)

    t0 = time.perf_counter()
    synthetic.generate(seed=args.seed, n_train=20000, n_eval=1000, label_noise=args.label_noise)
    gen_time = time.perf_counter() - t0

    s = synthetic.generate(seed=args.seed, n_train=args.n_train, n_eval=args.n_eval, label_noise=args.label_noise)
    names = s.label_names
    print(
        f"== distillkit.tasks.classification.synthetic  seed={args.seed} n_train={args.n_train} n_eval={args.n_eval} "
        f"label_noise={args.label_noise}"
    )
    print(f"generation time for 20k train + 1k eval: {gen_time:.3f} s")

    tc = collections.Counter(e["label"] for e in s.train)
    ec = collections.Counter(e["label"] for e in s.eval)
    print("\nclass counts (train / eval):")
    for i, n in enumerate(names):
        print(f"  {i}  {n:<18} {tc[i]:>6} / {ec[i]:>5}")
    n_noisy = sum(e["noisy"] for e in s.train)
    flips = [e for e in s.train if e["noisy"]]
    print(f"noisy train labels: {n_noisy} ({n_noisy / len(s.train):.3f})")

    lens = np.array([len(e["text"].split()) for e in s.train + s.eval])
    vocab = {w for e in s.train + s.eval for w in e["text"].split()}
    print(f"vocabulary size (whitespace tokens, train+eval): {len(vocab)}")
    print(
        f"tokens per example: mean {lens.mean():.1f}, min {lens.min()}, p50 {np.percentile(lens, 50):.0f}, "
        f"p95 {np.percentile(lens, 95):.0f}, p99 {np.percentile(lens, 99):.0f}, max {lens.max()}"
    )

    # Ambiguity of the clean eval split, from the generator's own bookkeeping.
    meta = [m for _, _, m in synthetic._split(args.seed, "eval", args.n_eval, with_meta=True)]
    frames = collections.Counter(m["frame"] for m in meta)
    mild = np.mean([m["mild"] for m in meta])
    no_topic = np.mean([not m["topic_explicit"] for m in meta])
    print("eval frames: " + ", ".join(f"{k} {v / len(meta):.0%}" for k, v in sorted(frames.items())))
    print(
        f"eval examples whose deciding phrase is mild/hedged: {mild:.1%}; "
        f"without an explicit topic cue (only a domain-generic noun): {no_topic:.1%}"
    )
    # Bayes ceiling estimate: mild phrases agree with the label with prob ~0.7, generic-only topic 0.5.
    p_mild_ok = synthetic._P_MILD_NEUTRAL * 0.5 + (1 - synthetic._P_MILD_NEUTRAL) * synthetic._P_MILD_AGREES
    ceiling = np.mean([(p_mild_ok if m["mild"] else 1.0) * (0.5 if not m["topic_explicit"] else 1.0) for m in meta])
    print(f"approximate Bayes-optimal eval accuracy: {ceiling:.3f}   (chance: {1 / len(names):.3f})")

    print("\nexamples per class (clean eval split):")
    for i, n in enumerate(names):
        print(f"  [{n}]")
        for e in [e for e in s.eval if e["label"] == i][: args.examples]:
            print(f"      {e['text']}")
    print("  noisy train examples (label shown is the flipped one):")
    for e in flips[:4]:
        print(f"    * [{names[e['label']]}] {e['text']}")

    if args.skip_models:
        return
    print("\neval accuracy (trained on the noisy train split), overall and per sentence frame:")
    gold = torch.tensor([e["label"] for e in s.eval])
    frame_names = sorted(frames)
    print(f"  {'model':<40} {'all':>6} {'time':>6}  " + " ".join(f"{f:>8}" for f in frame_names))
    models = [
        ("bag-of-words logistic regression", lambda: train_linear(s.train, s.eval, ngram=1)),
        ("uni+bigram logistic regression", lambda: train_linear(s.train, s.eval, ngram=2)),
        ("2-layer bidirectional GRU (order-aware)", lambda: train_gru(s.train, s.eval)),
    ]
    for name, fit in models:
        t = time.perf_counter()
        ok = (fit() == gold).tolist()
        per_frame = [np.mean([o for o, m in zip(ok, meta) if m["frame"] == f]) for f in frame_names]
        print(
            f"  {name:<40} {np.mean(ok):>6.3f} {time.perf_counter() - t:>5.1f}s  "
            + " ".join(f"{a:>8.3f}" for a in per_frame)
        )


if __name__ == "__main__":
    main()
