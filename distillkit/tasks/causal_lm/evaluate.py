"""Evaluation and on-policy sampling for causal-LM distillation: token-level NLL / perplexity / agreement,
greedy generations scored by exact match and ROUGE-L, generation throughput, and student rollouts (GKD, reverse KL;
MiniLLM's teacher-mixed samples, ``sample_mixed``).

Batch format (the LM collator's): ``input_ids`` (B, S) right-padded, ``attention_mask`` (B, S), ``labels``
(B, S) with -100 on prompt and padding and the token ids themselves (UNshifted, HF convention) on response
tokens incl. the final eos, ``prompt_ids`` (B, P) LEFT-padded with ``prompt_mask`` (B, P), and ``idx`` (B,).
Logits at position t predict token t+1, so every token metric reads ``shift(logits, labels)``:
logits[:, :-1] against labels[:, 1:], at the positions where the target is not -100.

Generation always goes through an explicit ``GenerationConfig`` (``_generation_config``) whose decoding
settings are all set: greedy, or pure temperature + top-p sampling (top-k off), repetition penalty 1, so a
checkpoint's ``generation_config.json`` (top_k=20, repetition_penalty=1.05, ...) never changes what is measured.
A DistributedDataParallel / DataParallel wrapper is unwrapped (``.module``) before ``generate``.
"""

from __future__ import annotations

import contextlib
import gc
import inspect
import time

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import GenerationConfig

from distillkit.models.loading import unwrap
from distillkit.speed import SPREAD, cpu_threads, in_turn, median_spread, sync
from distillkit.tasks.causal_lm.metrics import exact_match, final_answer, perplexity, rouge_l, token_agreement_counts

__all__ = [
    "generate",
    "generation_scores",
    "generation_speed",
    "generations",
    "rollout",
    "sample_mixed",
    "shift",
    "token_pass",
]

IGNORE = -100
_MODEL_INPUTS = ("input_ids", "attention_mask")


def shift(logits: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(logits[:, :-1], targets labels[:, 1:], mask targets != -100): the aligned next-token view.
    logits (B, S, V), labels (B, S) -> (B, S-1, V), (B, S-1), (B, S-1) bool."""
    targets = labels[:, 1:]
    return logits[:, :-1], targets, targets != IGNORE


@contextlib.contextmanager
def _eval_mode(*models: nn.Module):
    """Every submodule in eval mode inside the block; each submodule's own train/eval flag restored after."""
    before = [(m, m.training) for model in models for m in model.modules()]
    for model in models:
        model.eval()
    try:
        yield
    finally:
        for m, training in before:
            m.training = training


def _to(batch: dict, device) -> dict:
    return {k: v.to(device) if isinstance(v, Tensor) else v for k, v in batch.items()}


def _model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


# --------------------------------------------------------------------------------------------- token metrics


@torch.no_grad()
def token_pass(models: dict[str, nn.Module], loader, device, reference: str | None = "teacher") -> dict[str, dict]:
    """One pass over the loader's batches with every model (each model's train/eval flags restored after).

    Per model: ``nll`` = Σ_{response tokens} −log p(y_t | y_<t) / n (nats, fp32 log-softmax; the response
    tokens are the shifted targets != -100, so prompt and padding never count), ``perplexity`` =
    lm_metrics.perplexity(nll) (exp, capped at MAX_NLL), ``tokens`` = n. For every model other than
    ``reference``, when the reference is among ``models``: ``agreement`` = Σ agree / Σ counted of
    lm_metrics.token_agreement_counts(model, reference, mask) over the batches, in [0, 1], over the vocabulary
    rows both models have (checkpoints pad their output layers to different sizes beyond the tokenizer's ids).
    Raises ValueError when the loader holds no response token (a mean over nothing is undefined)."""
    unwrapped = {name: unwrap(m) for name, m in models.items()}
    ref = reference if reference in unwrapped else None
    sums = {name: {"nll": 0.0, "tokens": 0, "agree": 0, "counted": 0} for name in unwrapped}
    with _eval_mode(*unwrapped.values()):
        for batch in loader:
            batch = _to(batch, device)
            inputs = {k: batch[k] for k in _MODEL_INPUTS}
            logits = {name: m(**inputs).logits.float() for name, m in unwrapped.items()}
            for name, z in logits.items():
                z, targets, mask = shift(z, batch["labels"])
                sums[name]["nll"] += F.cross_entropy(z[mask], targets[mask], reduction="sum").item()
                sums[name]["tokens"] += int(mask.sum())
                if ref is not None and name != ref:
                    z_ref = shift(logits[ref], batch["labels"])[0]
                    vocab = min(z.shape[-1], z_ref.shape[-1])  # output layers padded to other sizes: shared rows
                    agree, counted = token_agreement_counts(z[..., :vocab], z_ref[..., :vocab], mask)
                    sums[name]["agree"] += agree
                    sums[name]["counted"] += counted
    out = {}
    for name, s in sums.items():
        if s["tokens"] == 0:
            raise ValueError("token_pass: the loader holds no response token (every label is -100)")
        nll = s["nll"] / s["tokens"]
        out[name] = {"nll": nll, "perplexity": perplexity(nll), "tokens": s["tokens"]}
        if ref is not None and name != ref:
            out[name]["agreement"] = s["agree"] / s["counted"]
    return out


# ------------------------------------------------------------------------------------------------ generation


def _generation_config(
    max_new_tokens: int,
    eos_token_id: int,
    pad_token_id: int,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_p: float = 1.0,
    min_new_tokens: int | None = None,
) -> GenerationConfig:
    """A config with every decoding setting explicit: greedy (no sampling-only flag set, so no warning), or
    sampling from softmax(z / temperature) restricted to the top-p nucleus (top_k = 0: off)."""
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    settings = dict(
        max_new_tokens=max_new_tokens,
        eos_token_id=eos_token_id,
        pad_token_id=pad_token_id,
        do_sample=do_sample,
        num_beams=1,
        num_return_sequences=1,
        repetition_penalty=1.0,
        no_repeat_ngram_size=0,
        min_length=0,
        use_cache=True,
    )
    if min_new_tokens is not None:
        del settings["min_length"]  # both set: transformers warns at every call (min_new_tokens wins anyway)
        settings["min_new_tokens"] = min_new_tokens
    if do_sample:
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if not 0 < top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}")
        settings.update(
            temperature=float(temperature),
            top_p=float(top_p),
            top_k=0,
            typical_p=1.0,
            epsilon_cutoff=0.0,
            eta_cutoff=0.0,
        )
    return GenerationConfig(**settings)


def _cut_at_eos(new: Tensor, eos_token_id: int, pad_token_id: int) -> tuple[Tensor, Tensor]:
    """(new with every token after a row's first eos set to pad, lengths = first eos index + 1, or N)."""
    is_eos = new == eos_token_id
    after_eos = (is_eos.long().cumsum(1) - is_eos.long()) > 0  # an eos strictly earlier in the row
    first = is_eos.long().argmax(1)
    lengths = torch.where(is_eos.any(1), first + 1, torch.full_like(first, new.shape[1]))
    return new.masked_fill(after_eos, pad_token_id), lengths


def _rng_devices() -> list[int]:
    return list(range(torch.cuda.device_count())) if torch.cuda.is_available() and torch.cuda.is_initialized() else []


@torch.no_grad()
def generate(
    model,
    batch,
    max_new_tokens: int,
    eos_token_id: int,
    pad_token_id: int,
    do_sample=False,
    temperature=1.0,
    top_p=1.0,
    generator_seed=None,
) -> tuple[Tensor, Tensor]:
    """``model.generate`` on the batch's left-padded ``prompt_ids`` / ``prompt_mask`` (moved to the model's
    device; the caller chooses the train/eval mode). Returns (new_tokens (B, N), lengths (B,)): N <= max_new_tokens
    (generation stops once every row has ended), every token after a row's first eos is pad, and lengths = tokens
    up to and including the first eos, or N without one. Greedy by default; ``do_sample`` draws from
    softmax(z / temperature) within the top-p nucleus. With ``generator_seed`` the draw runs on a forked RNG
    seeded with it (deterministic, the global RNG untouched)."""
    m = unwrap(model)
    dev = _model_device(m)
    ids, mask = batch["prompt_ids"].to(dev), batch["prompt_mask"].to(dev)
    config = _generation_config(max_new_tokens, eos_token_id, pad_token_id, do_sample, temperature, top_p)
    with contextlib.ExitStack() as stack:
        if generator_seed is not None:
            stack.enter_context(torch.random.fork_rng(devices=_rng_devices()))
            torch.manual_seed(generator_seed)
        out = m.generate(input_ids=ids, attention_mask=mask, generation_config=config)
    return _cut_at_eos(out[:, ids.shape[1] :], eos_token_id, pad_token_id)


def _take(batch: dict, n: int) -> dict:
    """The batch's first n rows."""
    return {k: v[:n] if isinstance(v, Tensor) else v for k, v in batch.items()}


def generations(model, tokenizer, loader, device, max_new_tokens: int, limit: int | None = None) -> dict:
    """Greedy generations for the loader's prompts, at most ``limit`` examples (all when None), the model in eval
    mode (restored after). eos / pad ids are the tokenizer's (pad falls back to eos). Returns
    {"predictions": decode(new tokens before the first eos, skip_special_tokens=True), "references":
    decode(the row's labelled ids other than eos, skip_special_tokens=True), "prompts": decode(unpadded
    prompt_ids, skip_special_tokens=True), "new_tokens": Σ lengths (eos counted), "seconds": wall time of the
    generate calls}."""
    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    out = {"predictions": [], "references": [], "prompts": [], "new_tokens": 0, "seconds": 0.0}
    with _eval_mode(unwrap(model)):
        for batch in loader:
            left = None if limit is None else limit - len(out["predictions"])
            if left is not None and left <= 0:
                break
            batch = _to(batch if left is None else _take(batch, left), device)
            sync(device)
            t0 = time.perf_counter()
            new, lengths = generate(model, batch, max_new_tokens, eos, pad)
            sync(device)
            out["seconds"] += time.perf_counter() - t0
            out["new_tokens"] += int(lengths.sum())
            for i in range(len(new)):
                ids = new[i, : int(lengths[i])]
                ids = ids[ids != eos]
                labels = batch["labels"][i]
                ref = labels[(labels != IGNORE) & (labels != eos)]
                prompt = batch["prompt_ids"][i][batch["prompt_mask"][i].bool()]
                out["predictions"].append(tokenizer.decode(ids.tolist(), skip_special_tokens=True))
                out["references"].append(tokenizer.decode(ref.tolist(), skip_special_tokens=True))
                out["prompts"].append(tokenizer.decode(prompt.tolist(), skip_special_tokens=True))
    return out


def generation_scores(out: dict) -> dict:
    """{"exact_match", "rouge_l"} of ``generations`` output (lm_metrics, predictions vs references), each text
    scored on its final answer (``final_answer``: what follows a last ``Final answer:`` line, else the text)."""
    predictions, references = (
        [final_answer(p) for p in out["predictions"]],
        [final_answer(r) for r in out["references"]],
    )
    return {
        "exact_match": exact_match(predictions, references),
        "rouge_l": rouge_l(predictions, references),
    }


# ----------------------------------------------------------------------------------------------------- speed


def _gen_timer(model, device, clock, config: GenerationConfig):
    """A function that generates for one batch's prompts and returns the generate call's time (s) on ``clock``;
    raises RuntimeError unless exactly ``config.max_new_tokens`` tokens were generated per row."""
    m = unwrap(model)

    def timed(batch) -> float:
        ids, mask = batch["prompt_ids"].to(device), batch["prompt_mask"].to(device)
        sync(device)
        t0 = clock()
        out = m.generate(input_ids=ids, attention_mask=mask, generation_config=config)
        sync(device)
        seconds = clock() - t0
        if out.shape[1] - ids.shape[1] != config.max_new_tokens:
            raise RuntimeError(f"generated {out.shape[1] - ids.shape[1]} tokens, not {config.max_new_tokens}")
        return seconds

    return timed


def _gen_repetitions(timers: dict, batches: list, tokens: int, repeats: int, warmup: int) -> dict[str, list]:
    """Per model, per repetition: tokens / Σ seconds over the batches, the models taking turns batch by batch
    (speed.in_turn, the first model alternating), with the garbage collector off while timing."""
    for _ in range(warmup):
        in_turn(timers, batches[:1], 0)
    reps = {name: [] for name in timers}
    gc_was_enabled = gc.isenabled()
    gc.disable()  # a collection inside one model's call would count against that model alone
    try:
        for r in range(repeats):
            for name, times in in_turn(timers, batches, r).items():
                reps[name].append(tokens / sum(times))
    finally:
        if gc_was_enabled:
            gc.enable()
    return reps


@torch.no_grad()
def generation_speed(
    models: dict[str, nn.Module],
    batches: list[dict],
    device,
    max_new_tokens: int,
    eos_token_id,
    pad_token_id,
    threads=1,
    repeats=3,
    warmup=1,
) -> dict:
    """Greedy generation throughput on the same prompt batches, every model generating exactly max_new_tokens
    per row (min_new_tokens = max_new_tokens: eos is suppressed, so equal work whatever they predict), in eval
    mode (restored after), with ``threads`` CPU threads (speed.cpu_threads; the thread's CPU time as the
    clock when that is 1, wall time otherwise), after ``warmup`` untimed turns on the first batch.

    Per model: gen_tokens_per_s = B_total · max_new_tokens / Σ_batches seconds, median over ``repeats``
    repetitions, and gen_tokens_per_s_spread (speed.median_spread). With "teacher" and "student":
    comparison = {gen_speedup: median over repetitions of student tok/s / teacher tok/s, gen_speedup_spread}.
    Also "speed": how it was measured (device, threads, clock, repeats, warmup, batches, max_new_tokens)."""
    if not batches:
        raise ValueError("generation_speed needs at least one batch")
    config = _generation_config(max_new_tokens, eos_token_id, pad_token_id, min_new_tokens=max_new_tokens)
    tokens = sum(len(b["prompt_ids"]) for b in batches) * max_new_tokens
    with _eval_mode(*(unwrap(m) for m in models.values())), cpu_threads(threads, device) as used:
        clock = time.thread_time if used == 1 else time.perf_counter
        timers = {name: _gen_timer(m, device, clock, config) for name, m in models.items()}
        reps = _gen_repetitions(timers, batches, tokens, repeats, warmup)
    out = {}
    for name, values in reps.items():
        mid, spread = median_spread(values)
        out[name] = {"gen_tokens_per_s": mid, "gen_tokens_per_s_spread": spread}
    if "teacher" in reps and "student" in reps:
        ratios = [s / t for s, t in zip(reps["student"], reps["teacher"])]
        speedup, spread = median_spread(ratios)
        out["comparison"] = {"gen_speedup": speedup, "gen_speedup_spread": spread}
    out["speed"] = {
        "device": torch.device(device).type,
        "threads": used,
        "clock": "thread_cpu" if clock is time.thread_time else "wall",
        "repeats": repeats,
        "warmup": warmup,
        "batches": len(batches),
        "max_new_tokens": max_new_tokens,
        "spread": SPREAD,
    }
    return out


# --------------------------------------------------------------------------------------------------- rollout


def _rebuild(batch: dict, new: Tensor, lengths: Tensor, pad_token_id: int) -> dict:
    """The collator's format for prompt (left padding removed) + new[i, :lengths[i]], right-padded with pad:
    labels -100 on prompt and padding, the generated ids on generated positions."""
    dev = batch["prompt_ids"].device
    new, lengths = new.to(dev), lengths.tolist()
    prompts = [row[m.bool()] for row, m in zip(batch["prompt_ids"], batch["prompt_mask"])]
    width = max(len(p) + n for p, n in zip(prompts, lengths))
    rows = len(prompts)
    input_ids = torch.full((rows, width), pad_token_id, dtype=torch.long, device=dev)
    labels = torch.full((rows, width), IGNORE, dtype=torch.long, device=dev)
    mask_dtype = batch["attention_mask"].dtype if "attention_mask" in batch else torch.long
    attention_mask = torch.zeros((rows, width), dtype=mask_dtype, device=dev)
    for i, (prompt, n) in enumerate(zip(prompts, lengths)):
        p = len(prompt)
        input_ids[i, :p] = prompt
        input_ids[i, p : p + n] = new[i, :n]
        labels[i, p : p + n] = new[i, :n]
        attention_mask[i, : p + n] = 1
    out = {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
    out.update({k: batch[k] for k in ("prompt_ids", "prompt_mask", "idx") if k in batch})
    return out


def forward_on_both(model, objective, sampled: dict, data: dict, pad_token_id: int):
    """An on-policy step whose objective also reads the dataset's batch (an NTP anchor, ``LossTerm.on_data``): the
    student runs once on the sampled rows and the dataset's rows stacked, right-padded to the wider of the two
    (causal attention leaves each row's real positions as they were), so DDP sees one forward per step. Returns
    the student's ``Features`` on the sampled rows and on the dataset's rows."""
    from distillkit.models.features import Features, forward_features

    spec = objective.student_features
    if spec.hidden_states or spec.attentions or spec.hooks:
        raise ValueError(f"objective {objective.name!r}: on_data terms read logits only")
    rows, widths = sampled["input_ids"].shape[0], (sampled["input_ids"].shape[1], data["input_ids"].shape[1])
    fill = {"input_ids": pad_token_id, "attention_mask": 0, "labels": IGNORE}
    joint = {
        key: torch.cat(
            [
                torch.nn.functional.pad(part[key], (0, max(widths) - part[key].shape[1]), value=value)
                for part in (sampled, data)
            ]
        )
        for key, value in fill.items()
    }
    logits = forward_features(model, joint, spec).logits
    return Features(logits=logits[:rows, : widths[0]]), Features(logits=logits[rows:, : widths[1]])


@torch.no_grad()
def rollout(
    model,
    batch: dict,
    max_new_tokens: int,
    eos_token_id: int,
    pad_token_id: int,
    temperature=1.0,
    top_p=1.0,
    seed: int | None = None,
    teacher=None,
    teacher_mix: float = 0.0,
) -> dict:
    """On-policy data for GKD / reverse-KL / MiniLLM training: the model SAMPLES (softmax(z / temperature), top-p) a
    continuation of each row's prompt in eval mode (every submodule's flag restored after), and the batch is
    rebuilt in the collator's format on the prompt's device: input_ids = prompt tokens (left padding removed) +
    generated tokens up to and including the first eos (or max_new_tokens of them), right-padded with pad;
    attention_mask 1 on those tokens; labels -100 on prompt and padding, the generated ids elsewhere (so a row
    whose first token is eos has the eos as its one labelled token); prompt_ids / prompt_mask / idx carried over
    unchanged; any other key dropped. With ``seed``: torch.manual_seed(seed) inside torch.random.fork_rng(), so
    the sample is a function of the seed and the global RNG is left as it was; without, the global RNG draws.
    ``teacher_mix`` = α > 0 (MiniLLM; needs ``teacher``, temperature 1, top-p 1): every token is drawn from
    α·p_teacher + (1 − α)·q_model instead (``sample_mixed``)."""
    m = unwrap(model)
    if teacher_mix > 0:
        if teacher is None or temperature != 1.0 or top_p != 1.0:
            raise ValueError(
                f"teacher-mixed sampling (teacher_mix={teacher_mix}) needs the teacher model and draws from the "
                f"mixture itself: temperature 1 and top_p 1, got teacher={type(teacher).__name__}, "
                f"temperature={temperature}, top_p={top_p}"
            )
        new, lengths = sample_mixed(m, teacher, batch, max_new_tokens, eos_token_id, pad_token_id, teacher_mix, seed)
        return _rebuild(batch, new, lengths, pad_token_id)
    with _eval_mode(m):
        new, lengths = generate(
            m,
            batch,
            max_new_tokens,
            eos_token_id,
            pad_token_id,
            do_sample=True,
            temperature=temperature,
            top_p=top_p,
            generator_seed=seed,
        )
    return _rebuild(batch, new, lengths, pad_token_id)


class _Decoder:
    """One model decoding token by token with its KV cache, from left-padded prompts: position ids count the real
    tokens (as ``generate`` does), so a row's padding changes neither its positions nor its attention. The cache
    argument is ``cache`` in recent transformers 5.x and ``past_key_values`` before (the model's signature says)."""

    def __init__(self, model, ids: Tensor, mask: Tensor):
        self.model, self.cache = model, None
        params = inspect.signature(model.forward).parameters
        self.cache_arg = "cache" if "cache" in params else "past_key_values"
        self.device = _model_device(model)
        self.mask = mask.to(self.device)
        self.next_ids, self.positions = ids.to(self.device), (self.mask.cumsum(1) - 1).clamp_min(0)

    def log_probs(self, vocab: int) -> Tensor:
        """log softmax of the next-token logits over the first ``vocab`` rows (fp32), (B, vocab)."""
        out = self.model(
            input_ids=self.next_ids,
            attention_mask=self.mask,
            position_ids=self.positions,
            use_cache=True,
            logits_to_keep=1,
            **{self.cache_arg: self.cache},
        )
        self.cache = getattr(out, self.cache_arg)
        return F.log_softmax(out.logits[:, -1, :vocab].float(), dim=-1)

    def append(self, tokens: Tensor) -> None:
        self.next_ids = tokens.to(self.device)[:, None]
        self.mask = torch.cat([self.mask, self.mask.new_ones((len(tokens), 1))], dim=1)
        self.positions = self.positions[:, -1:] + 1


@torch.no_grad()
def sample_mixed(
    student,
    teacher,
    batch: dict,
    max_new_tokens: int,
    eos_token_id: int,
    pad_token_id: int,
    alpha: float,
    seed: int | None = None,
) -> tuple[Tensor, Tensor]:
    """MiniLLM's teacher-mixed sampling: each new token y_t ~ p̃ = α·p(·|y_<t, x) + (1 − α)·q(·|y_<t, x) (p the
    teacher, q the student, both softmax at temperature 1 over the vocabulary rows both have;
    ``losses.minillm.mixture_logprobs``), both models decoding with their KV caches in eval mode (flags restored
    after): one teacher forward per generated token. Returns (new_tokens (B, N), lengths (B,)) as ``generate``
    does: every token after a row's first eos is pad. With ``seed`` the draws use their own generator seeded with
    it (the global RNG untouched). In a process group every process decodes all ``max_new_tokens`` steps (a sharded
    teacher's forward is collective: no process may stop before the others)."""
    from distillkit.dist import initialized
    from distillkit.losses.minillm import mixture_logprobs

    student, teacher = unwrap(student), unwrap(teacher)
    ids, mask = batch["prompt_ids"], batch["prompt_mask"].long()
    decoders = _Decoder(student, ids, mask), _Decoder(teacher, ids, mask)
    vocab = min(student.get_output_embeddings().weight.shape[0], teacher.get_output_embeddings().weight.shape[0])
    device = decoders[0].device
    generator = torch.Generator(device=device).manual_seed(seed) if seed is not None else None
    done = torch.zeros(len(ids), dtype=torch.bool, device=device)
    new = []
    with _eval_mode(student, teacher):
        for _ in range(max_new_tokens):
            log_q, log_p = (d.log_probs(vocab).to(device) for d in decoders)
            probs = mixture_logprobs(log_q, log_p, alpha).exp()
            tokens = torch.multinomial(probs, 1, generator=generator).squeeze(1)
            tokens = tokens.masked_fill(done, pad_token_id)
            new.append(tokens)
            done |= tokens == eos_token_id
            if bool(done.all()) and not initialized():
                break
            for d in decoders:
                d.append(tokens)
    return _cut_at_eos(torch.stack(new, dim=1), eos_token_id, pad_token_id)
