"""Can a small decoder built from a config learn the embedded instruction task (distillkit.lm_synthetic) on a
CPU in minutes, and is a larger one clearly better at equal training? Trains a byte-level BPE tokenizer on the
train split, builds a Llama- or GPT-2-style causal LM from a config, then SFT in a bare PyTorch loop
(next-token loss on the response + eos only, right-padded batches, AdamW, linear warm-up/decay, clipping 1.0,
fp32); after each epoch greedy-decodes --n-gen eval prompts (left padding, model.generate) and prints exact
match overall and per kind, with the wall times.

    OMP_NUM_THREADS=1 python scripts/explore_lm_task.py --layers 4 --hidden 256 --heads 4 --intermediate 1024

Seen on the shared 2-core machine (OMP_NUM_THREADS=1, load average 1.6-3.0 from another job, so times may
vary), llama, default task (seed 0, n_train 8000, n_eval 500, all kinds), BPE vocab 1000, batch 32 (250
steps/epoch), 6 epochs, warm-up 5 % then linear decay to 0, AdamW wd 0.01, dropout none; exact match on the
first 300 eval prompts (75 add, 60 sort, 60 reverse, 60 lookup, 45 count, so one prompt = 1.3-2.2 points).
Texts are 14.8 tokens on average (max 28), responses + eos 3.4 (max 7). Per epoch: overall (add sort reverse
lookup count):
  teacher  --layers 4 --hidden 256 --heads 4 (mlp 1024): 4.453M params (4.197M without the tied embeddings),
           91-111 s/epoch training + 2-3 s generating, ~10 min in all
    --lr 1e-3  0.157 (.027 .117 .000 .417 .289)  0.220 (.027 .250 .000 .333 .644)  0.303 (.013 .283 .017 .467 .978)
               0.333 (.027 .250 .000 .633 1.00)  0.453 (.013 .450 .300 .750 1.00)  0.493 (.053 .450 .367 .833 1.00)
    --lr 5e-4  0.140 (.000 .050 .000 .383 .356)  0.237 (.040 .300 .083 .267 .644)  0.440 (.000 .433 .583 .567 .822)
               0.570 (.027 .450 .817 .817 .978)  0.660 (.053 .600 .917 .967 1.00)  0.673 (.053 .633 .933 .983 1.00)
    --lr 3e-3  started, stopped by hand after 24 s (no figures): the student was worse at 3e-3.
  student  --layers 2 --hidden 128 --heads 4 (mlp 512): 0.653M params (0.525M without the tied embeddings),
           16-21 s/epoch training, generating < 1 s, ~2 min in all
    --lr 1e-3  0.133 (.000 .000 .000 .367 .400)  0.210 (.013 .250 .000 .300 .644)  0.377 (.040 .367 .233 .517 .956)
               0.467 (.027 .367 .583 .733 .822)  0.590 (.000 .500 .800 .917 .978)  0.643 (.067 .583 .883 .917 1.00)
    --lr 5e-4  0.123 (.013 .017 .000 .383 .267)  0.237 (.013 .217 .017 .350 .778)  0.370 (.040 .467 .217 .483 .844)
               0.490 (.013 .617 .683 .533 .800)  0.610 (.027 .667 .850 .750 1.00)  0.667 (.053 .733 .883 .900 1.00)
    --lr 3e-3  0.133 (.040 .000 .000 .367 .333)  0.143 (.013 .067 .000 .267 .489)  0.270 (.027 .150 .017 .533 .822)
               0.340 (.067 .217 .300 .417 .911)  0.397 (.027 .267 .367 .633 .911)  0.447 (.067 .367 .450 .617 .956)
(commands: OMP_NUM_THREADS=1 python scripts/explore_lm_task.py --layers L --hidden H --heads 4 --epochs 6
--lr LR [--show 3]; the 2x128 one at 1e-3 ran right after the 4x256 one.)
Readings: both sizes learn the task in minutes (count ~1.0, lookup 0.9-0.98, reverse 0.9, sort 0.6-0.7), but
at equal training the 4x256 teacher is NOT clearly better than the 2x128 student at the end: 0.673 vs 0.667
at 5e-4 (teacher ahead on lookup .983/.900 and reverse, behind on sort), and worse at 1e-3 (0.493 vs 0.643).
At 5e-4 the teacher leads mid-schedule (0.440/0.370 after epoch 3, 0.570/0.490 after 4). The 4x256 model
wants the lower rate; 3e-3 hurt the student. Addition is not learnt by either (<= 0.067: errors such as
'8 plus 8' -> '13'); sort errors are a wrong order or a wrong or repeated word, reverse errors a wrong, swapped
or repeated word. The response starts right after SEP ("\\n"), so its first word is the BPE token without
the leading-space marker ('album', vs 'Ġalbum' in the prompt): a separate token to map to (several student
reverse errors were in the first word).
"""

import argparse
import math
import random
import time
from collections import defaultdict

import torch
import torch.nn.functional as F
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoModelForCausalLM, GPT2Config, LlamaConfig, PreTrainedTokenizerFast

from distillkit.lm_metrics import exact_match
from distillkit.lm_synthetic import KINDS, SEP, generate, texts_for_tokenizer

PAD, EOS = "<pad>", "<eos>"


def parse():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-type", choices=("llama", "gpt2"), default="llama")
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--intermediate", type=int, default=None, help="MLP width (default 4 x hidden)")
    p.add_argument("--dropout", type=float, default=0.0, help="gpt2 only (llama has none)")
    p.add_argument("--vocab", type=int, default=1000, help="BPE vocabulary size")
    p.add_argument("--epochs", type=float, default=3)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--warmup", type=float, default=0.05, help="fraction of the steps")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--n-train", type=int, default=8000)
    p.add_argument("--n-eval", type=int, default=500)
    p.add_argument("--n-gen", type=int, default=300, help="eval prompts decoded after each epoch")
    p.add_argument("--gen-batch", type=int, default=100)
    p.add_argument("--max-new-tokens", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--kinds", nargs="+", default=None, choices=KINDS)
    p.add_argument("--show", type=int, default=0, help="print this many wrong generations per kind at the end")
    return p.parse_args()


def train_tokenizer(texts: list[str], vocab: int) -> PreTrainedTokenizerFast:
    """Byte-level BPE (GPT-2's pre-tokenizer, no prefix space) with <pad> = 0 and <eos> = 1; deterministic."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab, min_frequency=2, special_tokens=[PAD, EOS],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=PAD, eos_token=EOS)


def build_model(args, tok):
    inter = args.intermediate or 4 * args.hidden
    common = dict(vocab_size=len(tok), pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                  bos_token_id=tok.eos_token_id, tie_word_embeddings=True)
    if args.model_type == "llama":
        cfg = LlamaConfig(hidden_size=args.hidden, intermediate_size=inter, num_hidden_layers=args.layers,
                          num_attention_heads=args.heads, num_key_value_heads=args.heads,
                          max_position_embeddings=128, **common)
    else:
        cfg = GPT2Config(n_embd=args.hidden, n_inner=inter, n_layer=args.layers, n_head=args.heads, n_positions=128,
                         resid_pdrop=args.dropout, embd_pdrop=args.dropout, attn_pdrop=args.dropout, **common)
    torch.manual_seed(args.seed)
    return AutoModelForCausalLM.from_config(cfg)


def encode_train(tok, rows):
    """(ids, labels) lists per example: prompt + SEP, then response + eos; labels -100 on the prompt."""
    out = []
    for r in rows:
        p = tok(r["prompt"] + SEP, add_special_tokens=False)["input_ids"]
        a = tok(r["response"], add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        out.append((p + a, [-100] * len(p) + a))
    return out


def collate(examples, pad_id):
    width = max(len(ids) for ids, _ in examples)
    ids = torch.full((len(examples), width), pad_id)
    labels = torch.full((len(examples), width), -100)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for k, (x, y) in enumerate(examples):  # right padding
        ids[k, :len(x)], labels[k, :len(y)], mask[k, :len(x)] = torch.tensor(x), torch.tensor(y), 1
    return ids, labels, mask


@torch.no_grad()
def evaluate(model, tok, rows, args):
    model.eval()
    tok.padding_side = "left"
    preds = []
    for s in range(0, len(rows), args.gen_batch):
        chunk = rows[s:s + args.gen_batch]
        enc = tok([r["prompt"] + SEP for r in chunk], padding=True, add_special_tokens=False, return_tensors="pt")
        out = model.generate(**enc, max_new_tokens=args.max_new_tokens, do_sample=False,
                             pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
        preds += tok.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    tok.padding_side = "right"
    refs = [r["response"] for r in rows]
    by_kind = defaultdict(lambda: ([], []))
    for r, p in zip(rows, preds):
        by_kind[r["kind"]][0].append(p)
        by_kind[r["kind"]][1].append(r["response"])
    per_kind = {k: exact_match(*by_kind[k]) for k in KINDS if k in by_kind}
    return exact_match(preds, refs), per_kind, preds


def main() -> None:
    args = parse()
    started = time.time()
    data = generate(args.seed, args.n_train, args.n_eval, args.kinds)
    tok = train_tokenizer(texts_for_tokenizer(data), args.vocab)
    train = encode_train(tok, data.train)
    gen_rows = data.eval[:args.n_gen]
    lens = [len(x) for x, _ in train]
    resp = [sum(t != -100 for t in y) for _, y in train]
    model = build_model(args, tok)
    n_params = sum(p.numel() for p in model.parameters())
    n_emb = model.get_input_embeddings().weight.numel()
    mlp = args.intermediate or 4 * args.hidden
    print(f"{args.model_type} {args.layers}x{args.hidden} heads {args.heads} mlp {mlp}: {n_params / 1e6:.3f}M params"
          f" ({(n_params - n_emb) / 1e6:.3f}M without the tied embeddings); vocab "
          f"{len(tok)}; train {len(train)} texts, tokens mean {sum(lens) / len(lens):.1f} max {max(lens)}, "
          f"response+eos mean {sum(resp) / len(resp):.1f} max {max(resp)}; setup {time.time() - started:.1f} s",
          flush=True)

    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay, betas=(0.9, 0.98))
    per_epoch = math.ceil(len(train) / args.batch)
    steps = int(args.epochs * per_epoch)
    warm = max(1, int(steps * args.warmup))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda t: (t + 1) / warm if t < warm else max(0.0, (steps - t) / max(1, steps - warm)))
    rng = random.Random(args.seed)
    step, epoch = 0, 0
    while step < steps:
        epoch += 1
        model.train()
        t0, losses = time.time(), []
        order = list(range(len(train)))
        rng.shuffle(order)
        for s in range(0, len(order), args.batch):
            if step >= steps:
                break
            ids, labels, mask = collate([train[i] for i in order[s:s + args.batch]], tok.pad_token_id)
            logits = model(input_ids=ids, attention_mask=mask).logits
            loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1),
                                   ignore_index=-100)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            step += 1
            losses.append(loss.item())
            if step % 50 == 0:
                print(f"  step {step}/{steps}: loss {sum(losses[-50:]) / len(losses[-50:]):.3f}", flush=True)
        t_train = time.time() - t0
        t1 = time.time()
        em, per_kind, preds = evaluate(model, tok, gen_rows, args)
        kinds = " ".join(f"{k} {v:.3f}" for k, v in per_kind.items())
        print(f"epoch {step / per_epoch:.2f}: train loss {sum(losses) / len(losses):.3f}, exact match {em:.3f} "
              f"({kinds}); train {t_train:.0f} s, generate {time.time() - t1:.0f} s, "
              f"total {time.time() - started:.0f} s",
              flush=True)
    if args.show:
        wrong = defaultdict(list)
        for r, p in zip(gen_rows, preds):
            if " ".join(p.split()) != r["response"]:
                wrong[r["kind"]].append(f"    {r['prompt']!r} -> {p!r} (want {r['response']!r})")
        for k, lines in wrong.items():
            print(f"  wrong {k}:", *lines[:args.show], sep="\n")


if __name__ == "__main__":
    main()
