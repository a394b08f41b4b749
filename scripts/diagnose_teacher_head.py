"""Diagnostic for the open quality gap: does BERT's tanh pooler slow from-scratch learning on the
embedded task? Trains a 2-layer pre-LN BERT (MegatronBERT layout) in a bare PyTorch loop, either with
transformers' sequence-classification head (pooler dense+tanh → classifier) or with a plain linear
layer on the final-LayerNorm [CLS] vector, and prints eval accuracy per epoch.

    python scripts/diagnose_teacher_head.py --head hf        # seen 2026-11-22: 0.51 after 6 epochs
    python scripts/diagnose_teacher_head.py --head linear    # seen 2026-11-22: 0.685 after 6 epochs
"""

import argparse
import math
import tempfile

import torch
import torch.nn.functional as F
from transformers import AutoConfig, AutoModelForSequenceClassification

from distillkit.data import train_wordpiece
from distillkit.synthetic import generate


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--head", choices=["hf", "linear"], default="hf")
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    data = generate(n_train=8000, n_eval=1000)
    tok = train_wordpiece([r["text"] for r in data.train], 2000, tempfile.mkdtemp())

    def encode(rows):
        enc = tok([r["text"] for r in rows], padding=True, return_tensors="pt")
        return enc["input_ids"], enc["attention_mask"], torch.tensor([r["label"] for r in rows])

    x, m, y = encode(data.train)
    ex, em, ey = encode(data.eval)
    torch.manual_seed(0)
    cfg = AutoConfig.for_model("megatron-bert", vocab_size=len(tok), hidden_size=128, num_hidden_layers=args.layers,
                               num_attention_heads=4, intermediate_size=512, num_labels=8, pad_token_id=0)
    model = AutoModelForSequenceClassification.from_config(cfg)
    head = torch.nn.Linear(128, 8)

    def logits(ids, mask):
        if args.head == "hf":
            return model(input_ids=ids, attention_mask=mask).logits
        return head(model.bert(input_ids=ids, attention_mask=mask).last_hidden_state[:, 0])

    params = list(model.parameters()) + (list(head.parameters()) if args.head == "linear" else [])
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01)
    steps = args.epochs * math.ceil(len(y) / args.batch)
    warm = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda t: (t + 1) / warm if t < warm else max(0.0, (steps - t) / (steps - warm)))
    for epoch in range(args.epochs):
        model.train()
        perm = torch.randperm(len(y))
        for b in range(0, len(y), args.batch):
            i = perm[b:b + args.batch]
            width = int(m[i].sum(1).max())
            loss = F.cross_entropy(logits(x[i][:, :width], m[i][:, :width]), y[i])
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
        model.eval()
        with torch.no_grad():
            acc = (logits(ex, em).argmax(-1) == ey).float().mean().item()
        print(f"head={args.head} epoch {epoch + 1}: eval accuracy {acc:.3f}", flush=True)


if __name__ == "__main__":
    main()
