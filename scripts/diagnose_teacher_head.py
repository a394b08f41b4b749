"""Diagnostic behind the embedded teacher's recipe: how fast does a BERT-style encoder trained from scratch
learn the embedded task, by depth, head, learning rates and the identity-attention initialisation?
A bare PyTorch loop (no Trainer) on the same data and tokenizer as `python -m distillkit`.

Seen on 2026-11-22 (2 cores; 8000 training examples, batch 64, eval accuracy after the last epoch):
    --layers 2 --epochs 6 --head hf                                     0.51  (transformers' tanh-pooler head)
    --layers 2 --epochs 6 --head linear                                 0.61-0.67 (linear on [CLS], 2 seeds)
    --layers 0 --epochs 6 --head mean                                   0.62  (a bag of words)
    --layers 12 --epochs 4 --head hf                                    0.47-0.49 (any head, lr 3e-4 or 1e-3)
    --layers 12 --epochs 4 --head mean --lr 3e-3 --layer-lr 1e-4        0.64
    --layers 12 --epochs 4 --head hf --lr 3e-3 --layer-lr 1e-4          0.49
    --layers 12 --epochs 4 --head hf --lr 3e-3 --layer-lr 1e-4 --identity-layers 1      0.66
Seen on 2026-11-23 (batch 32; the last two with length-grouped batches, as the Trainer's group_by_length):
    --layers 12 --epochs 8 --lr 3e-3 --layer-lr 1e-4 --identity-layers 1                0.467 0.489 0.589 0.646
                                                                       0.700 0.716 0.724 0.726 (per epoch)
    --layers 12 --epochs 4 --lr 3e-3 --layer-lr 3e-4 --identity-layers 1                0.522 (faster layers: worse)
    --layers 12 --epochs 4 --lr 3e-3 --layer-lr 1e-4 --identity-layers 1 --pos-init sinusoidal    0.638
So the 12-layer teacher gains little from more epochs within the first run's time budget (≤ 5 min).
Superseded on 2026-12-02 (scripts/explore_teacher.py): without dropout (--dropout 0) the same recipe learns
faster and steps faster, 0.79 after 7 epochs, so the embedded teacher now trains 10 epochs without dropout.
"""

import argparse
import math
import tempfile
import time

import torch
import torch.nn.functional as F
from transformers import AutoConfig, AutoModelForSequenceClassification

from distillkit.models.loading import identity_attention
from distillkit.tasks.classification.data import train_wordpiece
from distillkit.tasks.classification.synthetic import generate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--head",
        choices=["hf", "linear", "mean"],
        default="hf",
        help="hf: transformers' head; linear: a linear layer on [CLS]; mean: on the mean token",
    )
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--lr", type=float, default=1e-3, help="embeddings and head (and layers without --layer-lr)")
    parser.add_argument("--layer-lr", type=float, default=None, help="the encoder layers' learning rate")
    parser.add_argument("--identity-layers", type=int, default=0, help="identity attention value/output init")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument(
        "--pos-init",
        choices=["random", "sinusoidal"],
        default="random",
        help="position embeddings: BERT's random init, or sinusoids (Vaswani et al.)",
    )
    parser.add_argument("--n-train", type=int, default=8000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    data = generate(n_train=args.n_train, n_eval=1000)
    tok = train_wordpiece([r["text"] for r in data.train], 2000, tempfile.mkdtemp())

    def encode(rows):
        enc = tok([r["text"] for r in rows], padding=True, return_tensors="pt")
        return enc["input_ids"], enc["attention_mask"], torch.tensor([r["label"] for r in rows])

    x, m, y = encode(data.train)
    ex, em, ey = encode(data.eval)
    torch.manual_seed(args.seed)
    cfg = AutoConfig.for_model(
        "megatron-bert",
        vocab_size=len(tok),
        hidden_size=128,
        num_hidden_layers=args.layers,
        num_attention_heads=4,
        intermediate_size=512,
        num_labels=8,
        pad_token_id=0,
        hidden_dropout_prob=args.dropout,
        attention_probs_dropout_prob=args.dropout,
    )
    model = AutoModelForSequenceClassification.from_config(cfg)
    identity_attention(model, args.identity_layers)
    if args.pos_init == "sinusoidal":
        pos = model.base_model.embeddings.position_embeddings.weight
        t = torch.arange(pos.shape[0])[:, None] / 10000 ** (torch.arange(0, 128, 2) / 128)
        with torch.no_grad():
            pos.copy_(torch.stack([t.sin(), t.cos()], -1).flatten(1) * pos.std() * 2**0.5)
    head = torch.nn.Linear(128, 8)

    def logits(ids, mask):
        if args.head == "hf":
            return model(input_ids=ids, attention_mask=mask).logits
        hidden = model.bert(input_ids=ids, attention_mask=mask).last_hidden_state
        if args.head == "mean":
            return head((hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True))
        return head(hidden[:, 0])

    layer_params = [p for n, p in model.named_parameters() if ".encoder.layer." in n]
    other = [p for n, p in model.named_parameters() if ".encoder.layer." not in n]
    other += list(head.parameters()) if args.head != "hf" else []
    opt = torch.optim.AdamW(
        [{"params": layer_params, "lr": args.layer_lr or args.lr}, {"params": other}], lr=args.lr, weight_decay=0.01
    )
    params = layer_params + other
    steps = args.epochs * math.ceil(len(y) / args.batch)
    warm = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda t: (t + 1) / warm if t < warm else max(0.0, (steps - t) / (steps - warm))
    )
    start = time.time()
    for epoch in range(args.epochs):
        model.train()
        # group_by_length, as the Trainer does: shuffled batches of similar lengths (little padding)
        perm = torch.randperm(len(y))
        chunks = perm.split(args.batch * 50)
        order = torch.cat([c[m[c].sum(1).argsort(descending=True)] for c in chunks])
        batches = list(order.split(args.batch))
        for k in torch.randperm(len(batches)).tolist():
            i = batches[k]
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
        print(
            f"head={args.head} layers={args.layers} epoch {epoch + 1}: eval accuracy {acc:.3f} "
            f"({time.time() - start:.0f} s)",
            flush=True,
        )


if __name__ == "__main__":
    main()
