"""Experiments behind the embedded teacher's recipe: optional MLM pre-training on generated text
(transformers' Trainer and MLM collator on a separate stream of the generator, never the eval split), then
fine-tuning on the labelled training split with the run's
teacher recipe in a bare PyTorch loop (length-grouped batches, AdamW, linear warm-up/decay, clipping 1.0,
layers vs embeddings+head learning rates). Prints eval accuracy after each epoch and the wall times.

    OMP_NUM_THREADS=1 python scripts/explore_teacher.py --mlm-texts 16000 --mlm-epochs 1 --epochs 3

Seen on 2026-12-02 (OMP_NUM_THREADS=1 on the shared 2-core machine, often 2-4 jobs at once, so the times vary
2-4x; 12 layers x 128, batch 32, lr 3e-3 / layers 1e-4 unless said; eval accuracy after each epoch of the
schedule, which decays linearly to 0 at --epochs):
    --epochs 4 (the recipe until today; dropout 0.1)                    0.465 after epoch 1 (154 s/epoch), stopped;
                                                                        0.66 after 4 in diagnose_teacher_head.py
    --mlm-texts 16000 --mlm-epochs 1 --epochs 3   MLM 250 steps × 64, loss 5.13 (still unigram level), 282 s;
                                                                        then 0.458 0.467 (stopped): no gain
    --emb-std 1.0 --epochs 3 (embeddings re-initialised at std 1)       0.318 0.464 (stopped): worse
    --model-type roformer --epochs 3 (rotary positions, post-LN)        0.470 0.497 0.525: worse
    --model-type roformer --epochs 3 --layer-lr 3e-4                    0.483 0.477 0.477: worse
    --qk-std 0.1 --epochs 4 (larger query/key init)                     0.478 0.508 0.536 (stopped): no gain
    --qk-std 0.3 --epochs 4                                             0.432 0.479 0.489 (stopped): worse
    --model-type esm --epochs 4 (rotary positions, pre-LN)              0.493 0.567 (stopped)
    --dropout 0 --epochs 4                                              0.468 0.554 0.637 0.663 (~100 s/epoch vs
                                                                        ~150 s with dropout, under the same load)
    --model-type esm --dropout 0 --epochs 4                             0.469 0.620 0.682 0.735
    --dropout 0 --epochs 7                                              0.455 0.573 0.663 0.692 0.715 0.775 0.790
In `python -m distillkit` (the Trainer, dropout 0): teacher.prepare_epochs=9 0.796, =10 0.831 (1 thread).
Adopted: dropout 0 and more preparation epochs (conf/teacher/embedded-bert-12l.yaml). Rotary positions (esm)
learn faster still, but would change the teacher's model type, which every method and derived student reads.
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
from distillkit.tasks.classification.synthetic import _split, generate


def parse():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--layers", type=int, default=12)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--model-type", default="megatron-bert")
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--identity-layers", type=int, default=1)
    p.add_argument("--init-range", type=float, default=0.02, help="config.initializer_range (BERT: 0.02)")
    p.add_argument("--qk-std", type=float, default=None, help="re-initialise attention query/key weights with this std")
    p.add_argument("--emb-std", type=float, default=None, help="re-initialise word/position embeddings with this std")
    p.add_argument("--mlm-texts", type=int, default=0, help="generated sentences for MLM (0: no pre-training)")
    p.add_argument("--mlm-epochs", type=float, default=1.0)
    p.add_argument("--mlm-lr", type=float, default=1e-3)
    p.add_argument("--mlm-batch", type=int, default=64)
    p.add_argument("--mlm-mask", type=float, default=0.15)
    p.add_argument("--epochs", type=float, default=4)
    p.add_argument("--lr", type=float, default=3e-3, help="embeddings, pooler and head")
    p.add_argument("--layer-lr", type=float, default=1e-4, help="the encoder layers")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--warmup", type=float, default=0.06)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args()


def main() -> None:
    args = parse()
    started = time.time()
    data = generate(n_train=8000, n_eval=1000)
    tok = train_wordpiece([r["text"] for r in data.train], 2000, tempfile.mkdtemp())
    cfg = AutoConfig.for_model(
        args.model_type,
        vocab_size=len(tok),
        hidden_size=args.hidden,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        intermediate_size=4 * args.hidden,
        num_labels=8,
        pad_token_id=0,
        hidden_dropout_prob=args.dropout,
        attention_probs_dropout_prob=args.dropout,
        initializer_range=args.init_range,
        **(
            dict(position_embedding_type="rotary", token_dropout=False, mask_token_id=4, emb_layer_norm_before=False)
            if args.model_type == "esm"
            else {}
        ),
    )
    torch.manual_seed(args.seed)
    model = AutoModelForSequenceClassification.from_config(cfg)
    identity_attention(model, args.identity_layers)
    scale_embeddings(model, args.emb_std)
    if args.qk_std is not None:
        with torch.no_grad():
            for layer in model.base_model.encoder.layer:
                layer.attention.self.query.weight.normal_(0.0, args.qk_std)
                layer.attention.self.key.weight.normal_(0.0, args.qk_std)
    if args.mlm_texts:
        texts = [t for t, _ in _split(0, "pretrain", args.mlm_texts)]
        pretrain_mlm(model, cfg, texts, tok, args)
    finetune(model, tok, data, args, started)


def pretrain_mlm(model, cfg, texts, tok, args) -> None:
    """MLM on ``texts`` (15 % masked, transformers' collator), then copy the encoder into ``model``."""
    import datasets
    from transformers import AutoModelForMaskedLM, DataCollatorForLanguageModeling, Trainer, TrainingArguments

    mlm = AutoModelForMaskedLM.from_config(cfg)
    identity_attention(mlm, args.identity_layers)
    enc = tok(texts, truncation=True, max_length=64, return_special_tokens_mask=True)
    train_args = TrainingArguments(
        output_dir=tempfile.mkdtemp(),
        num_train_epochs=args.mlm_epochs,
        learning_rate=args.mlm_lr,
        weight_decay=0.01,
        warmup_steps=0.06,
        per_device_train_batch_size=args.mlm_batch,
        use_cpu=True,
        seed=args.seed,
        save_strategy="no",
        logging_steps=50,
        report_to="none",
        train_sampling_strategy="group_by_length",
    )
    trainer = Trainer(
        model=mlm,
        args=train_args,
        train_dataset=datasets.Dataset.from_dict(dict(enc)),
        data_collator=DataCollatorForLanguageModeling(tok, mlm_probability=args.mlm_mask, seed=args.seed),
    )
    t0 = time.time()
    out = trainer.train()
    model.base_model.load_state_dict(mlm.base_model.state_dict(), strict=False)  # the pooler stays new
    print(
        f"MLM: {trainer.state.global_step} steps, loss {out.metrics['train_loss']:.3f}, {time.time() - t0:.0f} s",
        flush=True,
    )


def scale_embeddings(model, std) -> None:
    if std is None:
        return
    emb = model.base_model.embeddings
    with torch.no_grad():
        for table in (emb.word_embeddings, emb.position_embeddings, emb.token_type_embeddings):
            table.weight.normal_(0.0, std)
        emb.word_embeddings.weight[0].zero_()


def encode(tok, rows):
    enc = tok([r["text"] for r in rows], padding=True, truncation=True, max_length=64, return_tensors="pt")
    return enc["input_ids"], enc["attention_mask"], torch.tensor([r["label"] for r in rows])


def finetune(model, tok, data, args, started) -> None:
    x, m, y = encode(tok, data.train)
    ex, em, ey = encode(tok, data.eval)
    layer_params = [p for n, p in model.named_parameters() if ".encoder.layer." in n]
    other = [p for n, p in model.named_parameters() if ".encoder.layer." not in n]
    opt = torch.optim.AdamW(
        [{"params": layer_params, "lr": args.layer_lr}, {"params": other}], lr=args.lr, weight_decay=0.01
    )
    per_epoch = math.ceil(len(y) / args.batch)
    steps = int(args.epochs * per_epoch)
    warm = max(1, int(steps * args.warmup))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda t: (t + 1) / warm if t < warm else max(0.0, (steps - t) / (steps - warm))
    )
    step, t0 = 0, time.time()
    while step < steps:
        model.train()
        perm = torch.randperm(len(y))
        order = torch.cat([c[m[c].sum(1).argsort(descending=True)] for c in perm.split(args.batch * 50)])
        batches = list(order.split(args.batch))
        for k in torch.randperm(len(batches)).tolist():
            if step >= steps:
                break
            i = batches[k]
            width = int(m[i].sum(1).max())
            loss = F.cross_entropy(model(input_ids=x[i][:, :width], attention_mask=m[i][:, :width]).logits, y[i])
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            step += 1
        model.eval()
        with torch.no_grad():
            acc = (model(input_ids=ex, attention_mask=em).logits.argmax(-1) == ey).float().mean().item()
        print(
            f"epoch {step / per_epoch:.2f}: eval accuracy {acc:.3f} (fine-tune {time.time() - t0:.0f} s, "
            f"total {time.time() - started:.0f} s)",
            flush=True,
        )


if __name__ == "__main__":
    main()
