#!/usr/bin/env python
"""Sanity report for distillkit.synthetic: statistics, examples and how much word order matters.

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

from distillkit import synthetic  # noqa: E402


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
    toks = ["<s>"] + text.split() + ["</s>"] if n > 1 else text.split()
    out = list(toks) if n > 1 else toks
    if n > 1:
        out = [w for w in toks[1:-1]] + [f"{a} {b}" for a, b in zip(toks, toks[1:])]
    return out


def encode_bag(texts, vocab, ngram):
    ids, offsets = [], []
    for t in texts:
        offsets.append(len(ids))
        ids.extend(vocab.get(g, 0) for g in ngrams(t, ngram))
    return torch.tensor(ids), torch.tensor(offsets)


def train_linear(train, eval_, ngram: int, epochs: int = 5, seed: int = 0) -> float:
    """Multinomial logistic regression on n-gram counts (an EmbeddingBag with sum = sparse X @ W)."""
    torch.manual_seed(seed)
    vocab = build_vocab([e["text"] for e in train], ngram, min_count=1 if ngram == 1 else 2)
    xi, xo = encode_bag([e["text"] for e in train], vocab, ngram)
    yi = torch.tensor([e["label"] for e in train])
    ei, eo = encode_bag([e["text"] for e in eval_], vocab, ngram)
    ey = torch.tensor([e["label"] for e in eval_])
    model = nn.EmbeddingBag(len(vocab), synthetic.NUM_CLASSES, mode="sum")
    nn.init.zeros_(model.weight)
    bias = nn.Parameter(torch.zeros(synthetic.NUM_CLASSES))
    opt = torch.optim.Adam(list(model.parameters()) + [bias], lr=0.01)
    n = len(train)
    starts = xo.tolist() + [len(xi)]
    for _ in range(epochs):
        perm = torch.randperm(n)
        for b in range(0, n, 128):
            idx = perm[b : b + 128].tolist()
            seg = [xi[starts[i] : starts[i + 1]] for i in idx]
            off = torch.tensor([0] + [len(s) for s in seg[:-1]]).cumsum(0)
            logits = model(torch.cat(seg), off) + bias
            loss = nn.functional.cross_entropy(logits, yi[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        pred = (model(ei, eo) + bias).argmax(-1)
    return (pred == ey).float().mean().item()


class GRUClassifier(nn.Module):
    def __init__(self, vocab_size: int, dim: int = 64, hidden: int = 64) -> None:
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


def train_gru(train, eval_, epochs: int = 8, seed: int = 0) -> float:
    torch.manual_seed(seed)
    words = sorted({w for e in train for w in e["text"].split()})
    vocab = {w: i + 2 for i, w in enumerate(words)}  # 0 pad, 1 unk
    x, lx = encode_seq([e["text"] for e in train], vocab)
    y = torch.tensor([e["label"] for e in train])
    ex, elx = encode_seq([e["text"] for e in eval_], vocab)
    ey = torch.tensor([e["label"] for e in eval_])
    model = GRUClassifier(len(vocab) + 2)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(len(train))
        for b in range(0, len(train), 64):
            idx = perm[b : b + 64]
            bl = lx[idx]
            logits = model(x[idx, : int(bl.max())], bl)
            loss = nn.functional.cross_entropy(logits, y[idx])
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
    model.eval()
    with torch.no_grad():
        pred = model(ex, elx).argmax(-1)
    return (pred == ey).float().mean().item()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-train", type=int, default=8000)
    p.add_argument("--n-eval", type=int, default=1000)
    p.add_argument("--label-noise", type=float, default=0.1)
    p.add_argument("--examples", type=int, default=3, help="examples printed per class")
    p.add_argument("--skip-models", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))

    t0 = time.perf_counter()
    synthetic.generate(seed=args.seed, n_train=20000, n_eval=1000, label_noise=args.label_noise)
    gen_time = time.perf_counter() - t0

    s = synthetic.generate(seed=args.seed, n_train=args.n_train, n_eval=args.n_eval, label_noise=args.label_noise)
    names = s.label_names
    print(f"== distillkit.synthetic  seed={args.seed} n_train={args.n_train} n_eval={args.n_eval} "
          f"label_noise={args.label_noise}")
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
    print(f"tokens per example: mean {lens.mean():.1f}, min {lens.min()}, p50 {np.percentile(lens, 50):.0f}, "
          f"p95 {np.percentile(lens, 95):.0f}, p99 {np.percentile(lens, 99):.0f}, max {lens.max()}")

    # Ambiguity of the clean eval split, from the generator's own bookkeeping.
    meta = [m for _, _, m in synthetic._split(args.seed, "eval", args.n_eval, with_meta=True)]
    frames = collections.Counter(m["frame"] for m in meta)
    mild = np.mean([m["mild"] for m in meta])
    no_topic = np.mean([not m["topic_explicit"] for m in meta])
    print("eval frames: " + ", ".join(f"{k} {v / len(meta):.0%}" for k, v in sorted(frames.items())))
    print(f"eval examples whose deciding phrase is mild/hedged: {mild:.1%}; "
          f"without an explicit topic cue (only a domain-generic noun): {no_topic:.1%}")
    # Bayes ceiling estimate: mild phrases agree with the label with prob ~0.7, generic-only topic 0.5.
    p_mild_ok = synthetic._P_MILD_NEUTRAL * 0.5 + (1 - synthetic._P_MILD_NEUTRAL) * synthetic._P_MILD_AGREES
    ceiling = np.mean([(p_mild_ok if m["mild"] else 1.0) * (0.5 if not m["topic_explicit"] else 1.0) for m in meta])
    print(f"approximate Bayes-optimal eval accuracy: {ceiling:.3f}   (chance: {1 / len(names):.3f})")

    print("\nexamples (train; * = noisy label):")
    for i, n in enumerate(names):
        print(f"  [{n}]")
        for e in [e for e in s.eval if e["label"] == i][: args.examples]:
            print(f"      {e['text']}")
    print("  noisy train examples (label shown is the flipped one):")
    for e in flips[:4]:
        print(f"    * [{names[e['label']]}] {e['text']}")

    if args.skip_models:
        return
    print("\neval accuracy (trained on the noisy train split):")
    t = time.perf_counter()
    acc = train_linear(s.train, s.eval, ngram=1)
    print(f"  bag-of-words logistic regression        {acc:.3f}   ({time.perf_counter() - t:.1f} s)")
    t = time.perf_counter()
    acc = train_linear(s.train, s.eval, ngram=2)
    print(f"  uni+bigram logistic regression          {acc:.3f}   ({time.perf_counter() - t:.1f} s)")
    t = time.perf_counter()
    acc = train_gru(s.train, s.eval)
    print(f"  2-layer bidirectional GRU (order-aware) {acc:.3f}   ({time.perf_counter() - t:.1f} s)")


if __name__ == "__main__":
    main()
