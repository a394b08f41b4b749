"""Tests for distillkit.tasks.causal_lm.evaluate: token metrics against hand computations, greedy generation
against a manual argmax loop, generations / scores, generation speed and on-policy rollouts, on tiny Llama models
built from a config (no network)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import AutoModelForCausalLM, LlamaConfig, PreTrainedTokenizerFast

from distillkit.tasks.causal_lm import evaluate as lm_eval
from distillkit.tasks.causal_lm.evaluate import (
    generate,
    generation_scores,
    generation_speed,
    generations,
    rollout,
    shift,
    token_pass,
)

PAD, EOS, V = 0, 1, 40


def tiny_lm(seed: int, layers: int = 2) -> torch.nn.Module:
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=V,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=64,
        pad_token_id=PAD,
        eos_token_id=EOS,
        bos_token_id=EOS,
    )
    return AutoModelForCausalLM.from_config(cfg).eval()


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    vocab = {"<pad>": PAD, "<eos>": EOS, **{f"w{i}": i for i in range(2, V)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>")


def collate(examples, garbage: int | None = None) -> dict:
    """The LM collator's dict for (prompt ids, response ids) pairs; eos is appended to each response. With
    ``garbage`` the padding of input_ids and prompt_ids holds random tokens instead of pad (labels stay -100
    and prompt_mask 0 there)."""
    seqs = [list(p) + list(r) + [EOS] for p, r in examples]
    width, pwidth = max(map(len, seqs)), max(len(p) for p, _ in examples)
    b = len(examples)
    out = {
        "input_ids": torch.full((b, width), PAD),
        "attention_mask": torch.zeros(b, width, dtype=torch.long),
        "labels": torch.full((b, width), -100),
        "prompt_ids": torch.full((b, pwidth), PAD),
        "prompt_mask": torch.zeros(b, pwidth, dtype=torch.long),
        "idx": torch.arange(b),
    }
    if garbage is not None:
        g = torch.Generator().manual_seed(garbage)
        out["input_ids"] = torch.randint(2, V, (b, width), generator=g)
        out["prompt_ids"] = torch.randint(2, V, (b, pwidth), generator=g)
    for i, ((p, _), s) in enumerate(zip(examples, seqs)):
        out["input_ids"][i, : len(s)] = torch.tensor(s)
        out["attention_mask"][i, : len(s)] = 1
        out["labels"][i, len(p) : len(s)] = torch.tensor(s[len(p) :])
        out["prompt_ids"][i, pwidth - len(p) :] = torch.tensor(p)
        out["prompt_mask"][i, pwidth - len(p) :] = 1
    return out


EXAMPLES = [([5, 6, 7], [8, 9]), ([10, 11], [12, 13, 14, 15]), ([3, 4, 5, 6, 7], [2]), ([20], [21, 22, 23])]


def loader(garbage=None, size=2):
    return [collate(EXAMPLES[i : i + size], garbage) for i in range(0, len(EXAMPLES), size)]


def greedy_manual(model, prompt: list[int], steps: int, eos: int | None = None) -> list[int]:
    ids = torch.tensor([prompt])
    out = []
    with torch.no_grad():
        for _ in range(steps):
            nxt = int(model(input_ids=ids).logits[0, -1].argmax())
            out.append(nxt)
            if nxt == eos:
                break
            ids = torch.cat([ids, torch.tensor([[nxt]])], dim=1)
    return out


# --- shift / token_pass -------------------------------------------------------------------------


def test_shift_alignment():
    logits = torch.arange(2 * 4 * 3, dtype=torch.float).reshape(2, 4, 3)
    labels = torch.tensor([[-100, -100, 2, 1], [-100, 0, 1, -100]])
    z, targets, mask = shift(logits, labels)
    assert torch.equal(z, logits[:, :3])
    assert torch.equal(targets, torch.tensor([[-100, 2, 1], [0, 1, -100]]))
    assert torch.equal(mask, torch.tensor([[False, True, True], [True, True, False]]))
    # logits at position 1 (which saw tokens 0..1) are paired with label 2 (the token at position 2)
    assert torch.equal(z[0, 1], logits[0, 1]) and targets[0, 1] == labels[0, 2]


def hand_nll_and_agreement(model, ref, batches):
    nll, n, agree = 0.0, 0, 0
    with torch.no_grad():
        for b in batches:
            z = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits[:, :-1]
            zr = ref(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits[:, :-1]
            t = b["labels"][:, 1:]
            m = t != -100
            nll += F.cross_entropy(z[m], t[m], reduction="sum").item()
            n += int(m.sum())
            agree += int((z[m].argmax(-1) == zr[m].argmax(-1)).sum())
    return nll / n, n, agree / n


def test_token_pass_matches_hand_computation():
    teacher, student = tiny_lm(0), tiny_lm(1)
    batches = loader(garbage=7)
    out = token_pass({"teacher": teacher, "student": student}, batches, "cpu")
    n_response = sum(len(r) + 1 for _, r in EXAMPLES)  # eos included, prompt and padding excluded
    for name, model in (("teacher", teacher), ("student", student)):
        nll, n, _ = hand_nll_and_agreement(model, teacher, batches)
        assert out[name]["tokens"] == n == n_response
        assert out[name]["nll"] == pytest.approx(nll, rel=1e-5)
        assert out[name]["perplexity"] == pytest.approx(math.exp(out[name]["nll"]), rel=1e-9)
    assert "agreement" not in out["teacher"]
    _, _, agreement = hand_nll_and_agreement(student, teacher, batches)
    assert out["student"]["agreement"] == pytest.approx(agreement)
    assert 0.0 <= out["student"]["agreement"] < 1.0
    # the garbage in the padding is never read (right padding, targets -100 there)
    again = token_pass({"teacher": teacher, "student": student}, loader(garbage=99), "cpu")
    assert again["student"]["nll"] == pytest.approx(out["student"]["nll"], rel=1e-6)


def test_token_pass_agreement_with_itself_and_reference_choice():
    model, other = tiny_lm(0), tiny_lm(1)
    out = token_pass({"teacher": model, "student": model}, loader(), "cpu")
    assert out["student"]["agreement"] == 1.0
    assert "agreement" not in token_pass({"student": other}, loader(), "cpu")["student"]
    assert (
        "agreement" not in token_pass({"teacher": model, "student": other}, loader(), "cpu", reference=None)["student"]
    )
    by_student = token_pass({"teacher": model, "student": other}, loader(), "cpu", reference="student")
    assert "agreement" in by_student["teacher"] and "agreement" not in by_student["student"]


def test_token_pass_restores_modes_and_rejects_no_tokens():
    model = tiny_lm(0).train()
    token_pass({"teacher": model}, loader(), "cpu")
    assert model.training and all(m.training for m in model.modules())
    empty = collate([([5, 6], [7])])
    empty["labels"][:] = -100
    with pytest.raises(ValueError):
        token_pass({"teacher": model}, [empty], "cpu")


# --- generate ------------------------------------------------------------------------------------


def test_generate_greedy_equals_manual_loop_and_ignores_left_padding():
    model = tiny_lm(0)
    short, long = [5, 6, 7], [10, 11, 12, 13, 14, 15]
    batch = collate([(short, [2]), (long, [2])], garbage=5)  # only prompt_mask tells padding apart
    assert batch["prompt_mask"][0, 0] == 0 and batch["prompt_ids"][0, 0] != PAD  # left padded with garbage
    new, lengths = generate(model, batch, 6, eos_token_id=EOS, pad_token_id=PAD)
    expected = greedy_manual(model, short, 6, eos=EOS)
    assert EOS not in expected  # the comparison covers all 6 steps
    assert new[0].tolist() == expected
    expected_long = greedy_manual(model, long, 6, eos=EOS)  # this one ends with eos after 2 tokens
    n = len(expected_long)
    assert new[1, :n].tolist() == expected_long and (new[1, n:] == PAD).all()
    alone, _ = generate(model, collate([(short, [2])]), 6, eos_token_id=EOS, pad_token_id=PAD)
    assert alone[0].tolist() == new[0].tolist()
    assert lengths.tolist() == [6, n]


def test_generate_stops_at_eos_and_pads_after():
    model = tiny_lm(0)
    short, long = [5, 6, 7], [10, 11, 12, 13, 14, 15]
    free = greedy_manual(model, short, 8)
    k = next(i for i in range(1, 8) if free[i] not in free[:i])  # first occurrence at step k >= 1
    eos = free[k]  # treat the token greedy decoding emits at step k as eos
    other = greedy_manual(model, long, 8)
    new, lengths = generate(model, collate([(short, [2]), (long, [2])]), 8, eos_token_id=eos, pad_token_id=PAD)
    assert new[0, : k + 1].tolist() == free[: k + 1]
    assert (new[0, k + 1 :] == PAD).all()
    assert lengths[0] == k + 1
    other_len = other.index(eos) + 1 if eos in other else 8
    assert lengths[1] == other_len
    assert new[1, :other_len].tolist() == other[:other_len] and (new[1, other_len:] == PAD).all()


def test_cut_at_eos_hand_example():
    new = torch.tensor([[4, 1, 5, 1], [4, 5, 6, 7], [1, 3, 3, 3]])
    cut, lengths = lm_eval._cut_at_eos(new, eos_token_id=1, pad_token_id=0)
    assert cut.tolist() == [[4, 1, 0, 0], [4, 5, 6, 7], [1, 0, 0, 0]]
    assert lengths.tolist() == [2, 4, 1]


def test_generation_config_is_explicit_and_checkpoint_defaults_do_not_leak():
    for sample in (False, True):
        lm_eval._generation_config(5, EOS, PAD, do_sample=sample, temperature=0.7, top_p=0.9).validate(strict=True)
    batch = collate([([8, 9, 10, 11, 12], [2])])
    plain, _ = generate(tiny_lm(0), batch, 6, EOS, PAD)
    assert len(set(plain[0].tolist())) < 6  # greedy repeats itself here, so the settings below would matter
    # a checkpoint's generation_config.json must not change greedy decoding
    for attr, value in (("repetition_penalty", 1e-3), ("no_repeat_ngram_size", 1)):
        model = tiny_lm(0)
        setattr(model.generation_config, attr, value)
        assert torch.equal(generate(model, batch, 6, EOS, PAD)[0], plain), attr
    # ... nor sampling: a leaked top_k = 1 would make every sample the greedy continuation
    model = tiny_lm(0)
    model.generation_config.top_k = 1
    samples = [generate(model, batch, 6, EOS, PAD, do_sample=True, generator_seed=s)[0] for s in range(3)]
    assert any(x.shape != plain.shape or not torch.equal(x, plain) for x in samples)
    with pytest.raises(ValueError):
        generate(model, batch, 6, EOS, PAD, do_sample=True, temperature=0.0)


# --- generations / scores -----------------------------------------------------------------------


def fake_perfect_generate(model, batch, max_new_tokens, eos_token_id, pad_token_id, **kw):
    rows = [row[row != -100] for row in batch["labels"]]
    width = max(len(r) for r in rows)
    new = torch.full((len(rows), width), pad_token_id)
    for i, r in enumerate(rows):
        new[i, : len(r)] = r
    return new, torch.tensor([len(r) for r in rows])


def test_generations_perfect_model_and_references(monkeypatch):
    tok = tiny_tokenizer()
    monkeypatch.setattr(lm_eval, "generate", fake_perfect_generate)
    out = generations(tiny_lm(0), tok, loader(), "cpu", max_new_tokens=8)
    assert out["references"] == ["w8 w9", "w12 w13 w14 w15", "w2", "w21 w22 w23"]
    assert out["prompts"] == ["w5 w6 w7", "w10 w11", "w3 w4 w5 w6 w7", "w20"]
    assert out["predictions"] == out["references"]
    assert out["new_tokens"] == sum(len(r) + 1 for _, r in EXAMPLES)
    assert generation_scores(out) == {"exact_match": 1.0, "rouge_l": 1.0}
    limited = generations(tiny_lm(0), tok, loader(), "cpu", max_new_tokens=8, limit=3)
    assert len(limited["predictions"]) == len(limited["references"]) == len(limited["prompts"]) == 3


def test_generations_real_model_decodes_up_to_eos():
    tok, model = tiny_tokenizer(), tiny_lm(0).train()
    out = generations(model, tok, loader(), "cpu", max_new_tokens=5)
    assert model.training  # mode restored
    expected, total = [], 0
    model.eval()
    for p, _ in EXAMPLES:
        ids = greedy_manual(model, p, 5, eos=EOS)
        total += len(ids)
        expected.append(" ".join(f"w{t}" for t in ids if t != EOS))
    assert out["predictions"] == expected and out["new_tokens"] == total and out["seconds"] > 0
    scores = generation_scores(out)
    assert 0.0 <= scores["exact_match"] <= 1.0 and 0.0 <= scores["rouge_l"] <= 1.0


# --- generation speed ---------------------------------------------------------------------------


def test_generation_speed_structure_and_equal_work():
    teacher, student = tiny_lm(0, layers=4), tiny_lm(1, layers=1)
    batches = loader()
    # an eos that the student emits at once: without min_new_tokens it would stop early and the timer raise
    eos = greedy_manual(student, list(EXAMPLES[0][0]), 1)[0]
    threads = torch.get_num_threads()
    out = generation_speed(
        {"teacher": teacher, "student": student},
        batches,
        "cpu",
        max_new_tokens=4,
        eos_token_id=eos,
        pad_token_id=PAD,
        threads=1,
        repeats=2,
        warmup=1,
    )
    assert torch.get_num_threads() == threads
    for name in ("teacher", "student"):
        assert out[name]["gen_tokens_per_s"] > 0 and out[name]["gen_tokens_per_s_spread"] >= 0
    assert out["comparison"]["gen_speedup"] > 0 and out["comparison"]["gen_speedup_spread"] >= 0
    assert out["speed"]["clock"] == "thread_cpu" and out["speed"]["threads"] == 1
    single = generation_speed({"student": student}, batches, "cpu", 3, EOS, PAD, repeats=1, warmup=0)
    assert "comparison" not in single and single["student"]["gen_tokens_per_s"] > 0


def test_generation_speed_timer_rejects_short_generation():
    model = tiny_lm(0)
    batch = collate([([5, 6, 7], [2])])
    eos = greedy_manual(model, [5, 6, 7], 1)[0]
    config = lm_eval._generation_config(4, eos, PAD)  # no min_new_tokens: stops after one token
    with pytest.raises(RuntimeError):
        lm_eval._gen_timer(model, "cpu", lambda: 0.0, config)(batch)


# --- rollout ------------------------------------------------------------------------------------


def test_rollout_format():
    model = tiny_lm(0).train()
    batch = collate(EXAMPLES, garbage=3)
    batch["extra"] = torch.ones(4)
    out = rollout(model, batch, max_new_tokens=6, eos_token_id=EOS, pad_token_id=PAD, seed=0)
    assert model.training and all(m.training for m in model.modules())
    assert set(out) == {"input_ids", "attention_mask", "labels", "prompt_ids", "prompt_mask", "idx"}
    for k in ("prompt_ids", "prompt_mask", "idx"):
        assert torch.equal(out[k], batch[k])
    for i, (prompt, _) in enumerate(EXAMPLES):
        p = len(prompt)
        n = int(out["attention_mask"][i].sum())
        assert out["attention_mask"][i, :n].all() and not out["attention_mask"][i, n:].any()  # right padded
        assert out["input_ids"][i, :p].tolist() == list(prompt)  # left padding removed
        gen = out["input_ids"][i, p:n]
        assert 1 <= len(gen) <= 6
        assert (out["labels"][i, :p] == -100).all() and (out["labels"][i, n:] == -100).all()
        assert torch.equal(out["labels"][i, p:n], gen)
        assert (out["input_ids"][i, n:] == PAD).all()
        assert EOS not in gen[:-1].tolist() and (gen[-1] == EOS or len(gen) == 6)
    assert out["attention_mask"].sum(1).max() == out["input_ids"].shape[1]


def test_rollout_seed_determinism():
    model = tiny_lm(0)
    batch = collate(EXAMPLES)
    a = rollout(model, batch, 8, EOS, PAD, seed=1)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    b = rollout(model, batch, 8, EOS, PAD, seed=1)
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG is untouched
    assert all(torch.equal(a[k], b[k]) for k in a)
    others = [rollout(model, batch, 8, EOS, PAD, seed=s)["input_ids"] for s in (2, 3)]
    assert any(o.shape != a["input_ids"].shape or not torch.equal(o, a["input_ids"]) for o in others)


def test_rollout_immediate_eos_keeps_one_labelled_token():
    model = tiny_lm(0)
    prompt = [5, 6, 7]
    eos = greedy_manual(model, prompt, 1)[0]  # the first token this prompt samples at a tiny temperature
    batch = collate([(prompt, [2]), ([10, 11, 12, 13], [2])])
    out = rollout(model, batch, 5, eos_token_id=eos, pad_token_id=PAD, temperature=1e-4, seed=0)
    assert out["input_ids"][0, :4].tolist() == prompt + [eos]
    assert (out["labels"][0] != -100).sum() == 1 and out["labels"][0, 3] == eos
    assert out["attention_mask"][0].sum() == 4


def test_an_on_policy_step_reads_the_dataset_batch_from_one_stacked_forward():
    """An NTP anchor on an on-policy step (method.ntp_weight): the student runs once on the sampled rows and the
    dataset's rows stacked (right padding to the wider); its logits on each part equal a separate forward's at every
    real position, and the on_data term reads the dataset's labels while the KD term reads the samples'."""
    from distillkit.methods.llm import ntp_term
    from distillkit.models.features import FeatureSpec
    from distillkit.recipe.objective import LossInputs, LossTerm, Objective

    model = tiny_lm(0)
    data = collate(EXAMPLES)
    sampled = rollout(model, data, max_new_tokens=9, eos_token_id=EOS, pad_token_id=PAD, seed=3)
    assert sampled["input_ids"].shape[1] != data["input_ids"].shape[1]  # the stacking pads one of them
    seen = {}
    kd = LossTerm("kd", 0.5, lambda x: seen.setdefault("kd", x.labels).float().sum() * 0, "KD")
    objective = Objective(name="t", terms=[kd, ntp_term(0.5, on_data=True)], needs_teacher=False)
    assert (
        objective.data_terms
        and not Objective(name="u", terms=[kd, ntp_term(0.0, on_data=True)], needs_teacher=False).data_terms
    )
    with torch.no_grad():
        student, on_data_features = lm_eval.forward_on_both(model, objective, sampled, data, PAD)
        for part, logits in ((sampled, student.logits), (data, on_data_features.logits)):
            alone = model(input_ids=part["input_ids"], attention_mask=part["attention_mask"]).logits
            real = part["attention_mask"].bool()
            assert logits.shape == alone.shape and torch.allclose(logits[real], alone[real], atol=1e-5)
    on_data = LossInputs(on_data_features, None, data["labels"], data["attention_mask"], objective.adapters, data)
    total, terms = objective(
        LossInputs(student, None, sampled["labels"], sampled["attention_mask"], objective.adapters, sampled), on_data
    )
    assert seen["kd"] is sampled["labels"]  # the KD term read the samples
    from distillkit.losses.token import next_token_loss

    assert torch.allclose(terms["ntp"], next_token_loss(on_data.student.logits, data["labels"]))
    assert torch.allclose(total, 0.5 * terms["ntp"])
    # without a dataset batch (an off-policy step) every term reads the batch it is given
    seen.clear()
    _, terms = objective(
        LossInputs(on_data.student, None, data["labels"], data["attention_mask"], objective.adapters, data)
    )
    assert seen["kd"] is data["labels"] and torch.allclose(
        terms["ntp"], next_token_loss(on_data.student.logits, data["labels"])
    )
    hidden = Objective(
        name="f",
        terms=[ntp_term(0.5, on_data=True)],
        needs_teacher=False,
        student_features=FeatureSpec(hidden_states=(1,)),
    )
    with pytest.raises(ValueError, match="logits only"):
        lm_eval.forward_on_both(model, hidden, sampled, data, PAD)


# --- teacher-mixed sampling (MiniLLM) ------------------------------------------------------------


class FixedLM(torch.nn.Module):
    """A stand-in causal LM whose next-token distribution is ``probs`` whatever the input (no cache needed)."""

    def __init__(self, probs):
        super().__init__()
        self.head = torch.nn.Linear(1, len(probs), bias=False)
        with torch.no_grad():
            self.head.weight.copy_(torch.tensor(probs).log()[:, None])

    def get_output_embeddings(self):
        return self.head

    def forward(self, input_ids, attention_mask=None, position_ids=None, cache=None, use_cache=True, **kw):
        from types import SimpleNamespace

        logits = self.head.weight[:, 0].expand(input_ids.shape[0], 1, -1)
        return SimpleNamespace(logits=logits, cache=None)


class OlderFixedLM(FixedLM):
    """FixedLM with the cache argument named as transformers 5.x named it before ``cache``."""

    def forward(self, input_ids, attention_mask=None, position_ids=None, past_key_values=None, use_cache=True, **kw):
        from types import SimpleNamespace

        return SimpleNamespace(logits=super().forward(input_ids).logits, past_key_values=None)


def test_mixed_samples_follow_the_mixture_and_stop_at_eos():
    # V = 4, eos = 1: q puts 0.7 on token 0, p 0.7 on token 3; α = 0.2 → p̃ = [0.58, 0.1, 0.1, 0.22]
    q, p = [0.7, 0.1, 0.1, 0.1], [0.1, 0.1, 0.1, 0.7]
    n = 20_000
    batch = {"prompt_ids": torch.full((n, 1), 2), "prompt_mask": torch.ones(n, 1, dtype=torch.long)}
    new, lengths = lm_eval.sample_mixed(FixedLM(q), FixedLM(p), batch, 3, EOS, PAD, alpha=0.2, seed=0)
    first = torch.bincount(new[:, 0], minlength=4).float() / n
    assert first.tolist() == pytest.approx([0.58, 0.1, 0.1, 0.22], abs=0.012)  # 3.5 standard errors
    ended = new[:, 0] == EOS
    assert (new[ended, 1:] == PAD).all() and (lengths[ended] == 1).all() and (lengths[~ended] >= 2).all()
    later = new[~ended, 1]  # the second step of the rows still going draws from p̃ again
    assert (torch.bincount(later, minlength=4).float() / len(later)).tolist() == pytest.approx(
        [0.58, 0.1, 0.1, 0.22], abs=0.012
    )
    student_only, _ = lm_eval.sample_mixed(FixedLM(q), FixedLM(p), batch, 1, EOS, PAD, alpha=0.0, seed=0)
    assert (torch.bincount(student_only[:, 0], minlength=4).float() / n).tolist() == pytest.approx(q, abs=0.012)
    older, _ = lm_eval.sample_mixed(FixedLM(q), OlderFixedLM(p), batch, 3, EOS, PAD, alpha=0.2, seed=0)
    assert torch.equal(older, new)  # the same draws whatever the teacher's cache argument is called


def test_the_cached_decoder_matches_a_full_forward_on_left_padded_prompts():
    """Position ids from the prompt mask and the KV cache: each step's next-token log-probs equal the model's on
    the unpadded prompt plus the tokens appended so far, whatever the padding holds."""
    model = tiny_lm(0)
    batch = collate(EXAMPLES, garbage=3)
    decoder = lm_eval._Decoder(model, batch["prompt_ids"], batch["prompt_mask"])
    appended = [torch.tensor([7, 8, 9, 10]), torch.tensor([11, 12, 13, 14])]
    with torch.no_grad():
        for step in range(3):
            got = decoder.log_probs(V)
            for i, (prompt, _) in enumerate(EXAMPLES):
                ids = torch.tensor([list(prompt) + [int(a[i]) for a in appended[:step]]])
                want = model(input_ids=ids).logits[0, -1].float().log_softmax(-1)
                assert torch.allclose(got[i], want, atol=1e-5), (step, i)
            if step < 2:
                decoder.append(appended[step])


def test_rollout_with_a_teacher_mix_is_seeded_and_in_the_collator_format():
    student, teacher = tiny_lm(0).train(), tiny_lm(1)
    batch = collate(EXAMPLES, garbage=3)
    a = rollout(student, batch, 6, EOS, PAD, seed=1, teacher=teacher, teacher_mix=0.2)
    assert student.training and all(m.training for m in student.modules())  # eval mode while sampling only
    state = torch.get_rng_state()
    b = rollout(student, batch, 6, EOS, PAD, seed=1, teacher=teacher, teacher_mix=0.2)
    assert torch.equal(torch.get_rng_state(), state) and all(torch.equal(a[k], b[k]) for k in a)
    for i, (prompt, _) in enumerate(EXAMPLES):
        p, n = len(prompt), int(a["attention_mask"][i].sum())
        assert a["input_ids"][i, :p].tolist() == list(prompt) and 1 <= n - p <= 6
        assert torch.equal(a["labels"][i, p:n], a["input_ids"][i, p:n]) and (a["labels"][i, :p] == -100).all()
    with pytest.raises(ValueError, match="temperature 1"):
        rollout(student, batch, 6, EOS, PAD, temperature=0.7, seed=1, teacher=teacher, teacher_mix=0.2)
    with pytest.raises(ValueError, match="teacher"):
        rollout(student, batch, 6, EOS, PAD, seed=1, teacher_mix=0.2)
