"""lm_data: prompt/response and chat data for the causal_lm task, from files, saved hub datasets and the
embedded generator, down to tokenised rows and padded batches. Tokenizers are trained here (no network)."""

from __future__ import annotations

import json
import logging

import datasets
import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from distillkit.errors import ConfigError
from distillkit.tasks.causal_lm import data as lm_data
from distillkit.tasks.causal_lm import synthetic as lm_synthetic
from distillkit.tasks.files import read_local

CHAT = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
ROWS = [
    {"prompt": "What is 47 + 8?", "response": "55"},
    {"prompt": "Reverse the list: pasta dull ferry", "response": "ferry dull pasta"},
    {"prompt": "Is 'stale' positive or negative?", "response": "negative"},
]


def tiny_tokenizer(texts, vocab=300, bos=False):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    special = ["<pad>", "<eos>"] + (["<bos>"] if bos else [])
    trainer = trainers.BpeTrainer(
        vocab_size=vocab,
        min_frequency=2,
        special_tokens=special,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    extra = {}
    if bos:  # a Llama-like tokenizer: BOS in front of every encoded text
        tok.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", 2)])
        extra = {"bos_token": "<bos>"}
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", **extra)


@pytest.fixture(scope="module")
def task():
    return lm_synthetic.generate(0, 50, 20)


@pytest.fixture(scope="module")
def tok(task):
    return tiny_tokenizer(lm_synthetic.texts_for_tokenizer(task) + [r["prompt"] + "\n" + r["response"] for r in ROWS])


@pytest.fixture
def chat_tok(task):
    t = tiny_tokenizer(lm_synthetic.texts_for_tokenizer(task))
    t.chat_template = CHAT
    return t


def _write(path, rows):
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    else:
        method = "to_csv" if path.suffix == ".csv" else "to_parquet"
        getattr(datasets.Dataset.from_list(rows), method)(str(path))
    return str(path)


def _pairs(tok, rows, template=lm_data.DEFAULT_TEMPLATE, max_length=128):
    rendered = lm_data.render(lm_data.to_pairs(datasets.Dataset.from_list(rows), "data", "train"), tok, template)
    return lm_data.encode(rendered, tok, max_length)


# ------------------------------------------------------------------ files and fields


@pytest.mark.parametrize("ext", ["jsonl", "csv", "parquet"])
def test_files_map_to_prompt_response(tmp_path, ext):
    path = _write(tmp_path / f"train.{ext}", [dict(r, extra=i) for i, r in enumerate(ROWS)])
    pairs = lm_data.to_pairs(read_local("data.train_file", path), "data", path)
    assert pairs.column_names == ["prompt", "response"]
    assert pairs.to_list() == ROWS  # the csv reads "55" as the number 55: it comes back as its digits


def test_custom_field_names(tmp_path):
    rows = [{"question": r["prompt"], "answer": r["response"], "prompt": "decoy"} for r in ROWS]
    path = _write(tmp_path / "qa.jsonl", rows)
    pairs = lm_data.to_pairs(
        read_local("data.train_file", path), "data", path, prompt_field="question", response_field="answer"
    )
    assert pairs.to_list() == ROWS


def test_missing_field_names_key_value_columns_and_guess(tmp_path):
    path = _write(tmp_path / "qa.jsonl", [{"question": r["prompt"], "output": r["response"]} for r in ROWS])
    with pytest.raises(ConfigError) as err:
        lm_data.to_pairs(
            read_local("data.train_file", path), "data", path, prompt_field="question", response_field="reply"
        )
    e = err.value
    assert (e.key, e.value) == ("data.response_field", "reply")
    assert "question, output" in e.problem and path in e.problem
    assert "data.response_field=output" in e.fix


def test_missing_preset_column_names_the_preset():
    ds = datasets.Dataset.from_dict({"instruction": ["a"], "answer": ["b"]})
    with pytest.raises(ConfigError) as err:
        lm_data.to_pairs(ds, "data", "train", preset="alpaca")
    assert (err.value.key, err.value.value) == ("data.preset", "alpaca")
    assert "'output'" in err.value.problem and "instruction, answer" in err.value.problem
    with pytest.raises(ConfigError, match="data.preset='llama'"):
        lm_data.to_pairs(ds, "data", "train", preset="llama")


def test_empty_responses_refused_or_dropped(tmp_path, caplog):
    rows = ROWS + [
        {"prompt": "Count the words: a, b", "response": ""},
        {"prompt": "Hello?", "response": None},
        {"prompt": "  ", "response": "x"},
    ]
    path = _write(tmp_path / "gaps.jsonl", rows)
    raw = read_local("data.train_file", path)
    with pytest.raises(ConfigError) as err:
        lm_data.to_pairs(raw, "data", path)
    e = err.value
    assert e.key == "data.response_field" and "3 of 6 rows" in e.problem
    assert "rows 4, 5" in e.problem and "row 6" in e.problem and "data.drop_missing=true" in e.fix
    with caplog.at_level(logging.INFO, logger="distillkit"):
        pairs = lm_data.to_pairs(raw, "data", path, drop_missing=True)
    assert pairs.to_list() == ROWS
    assert "dropped 3 of 6 rows" in caplog.text


def test_all_rows_empty_is_an_error_even_when_dropping():
    ds = datasets.Dataset.from_dict({"prompt": ["a", "b"], "response": ["", " "]})
    with pytest.raises(ConfigError, match="no row with both"):
        lm_data.to_pairs(ds, "data", "train", drop_missing=True)


# ------------------------------------------------------------------ conversations


def _conv(*turns):
    return [{"role": r, "content": c} for r, c in turns]


def test_messages_rendered_with_chat_template(tmp_path, chat_tok):
    convs = [
        _conv(("system", "Be brief."), ("user", "What is 2 + 3?"), ("assistant", "5")),
        _conv(("user", "Reverse: a b"), ("assistant", "b a")),
    ]
    path = _write(tmp_path / "chat.jsonl", [{"conversation": c, "id": i} for i, c in enumerate(convs)])
    pairs = lm_data.to_pairs(read_local("data.train_file", path), "data", path, messages_field="conversation")
    assert pairs.column_names == ["messages"] and pairs[0]["messages"] == convs[0]
    rendered = lm_data.render(pairs, chat_tok)
    assert rendered[0]["prompt_text"] == "<|system|>Be brief.\n<|user|>What is 2 + 3?\n<|assistant|>"
    assert rendered[1]["prompt_text"].endswith("<|assistant|>") and "b a" not in rendered[1]["prompt_text"]
    assert [r["response_text"] for r in rendered] == ["5", "b a"]
    enc, _ = lm_data.encode(rendered, chat_tok, 64)
    assert lm_data.references(enc, chat_tok) == ["5", "b a"]


def test_messages_as_json_text_in_a_csv(tmp_path, chat_tok):
    conv = _conv(("user", "Count the words: a, b"), ("assistant", "2"))
    path = _write(tmp_path / "chat.csv", [{"messages": json.dumps(conv)}])
    pairs = lm_data.to_pairs(read_local("data.train_file", path), "data", path, messages_field="messages")
    assert lm_data.render(pairs, chat_tok) == [
        {"prompt_text": "<|user|>Count the words: a, b\n<|assistant|>", "response_text": "2", "chat": True}
    ]


def test_messages_without_chat_template_refused(tok):
    pairs = lm_data.to_pairs(
        datasets.Dataset.from_dict({"messages": [_conv(("user", "hi"), ("assistant", "yo"))]}),
        "data",
        "train",
        messages_field="messages",
    )
    assert tok.chat_template is None
    with pytest.raises(ConfigError) as err:
        lm_data.render(pairs, tok)
    assert err.value.key == "data.messages_field" and "no chat template" in err.value.problem
    assert "chat/instruct model" in err.value.fix and "prompt/response" in err.value.fix


def test_last_turn_must_be_assistant():
    ds = datasets.Dataset.from_dict(
        {
            "messages": [
                _conv(("user", "hi"), ("assistant", "yo")),
                _conv(("user", "hi"), ("assistant", "yo"), ("user", "again")),
            ]
        }
    )
    with pytest.raises(ConfigError) as err:
        lm_data.to_pairs(ds, "data", "train", messages_field="messages")
    assert err.value.key == "data.messages_field" and "row 2" in err.value.problem
    assert "'user', not 'assistant'" in err.value.problem


def test_malformed_messages_refused():
    ds = datasets.Dataset.from_dict({"messages": [["just a string"]]})
    with pytest.raises(ConfigError, match="row 1 is not a list of messages"):
        lm_data.to_pairs(ds, "data", "train", messages_field="messages")


# ------------------------------------------------------------------ presets and hub splits


def _alpaca(n=6):
    return {
        "instruction": [f"Say {i}." for i in range(n)],
        "input": ["" if i % 2 else f"ctx {i}" for i in range(n)],
        "output": [str(i) for i in range(n)],
    }


def test_alpaca_preset_from_save_to_disk(tmp_path):
    datasets.DatasetDict({"train": datasets.Dataset.from_dict(_alpaca())}).save_to_disk(str(tmp_path / "alpaca"))
    split = lm_data.load_hub_split(str(tmp_path / "alpaca"), None, "train[:3]", "data.train_split")
    pairs = lm_data.to_pairs(split, "data", "train[:3]", preset="alpaca")
    assert pairs.to_list() == [
        {"prompt": "Say 0.\n\nctx 0", "response": "0"},
        {"prompt": "Say 1.", "response": "1"},
        {"prompt": "Say 2.\n\nctx 2", "response": "2"},
    ]
    assert lm_data.PRESETS["alpaca"]["path"] == "tatsu-lab/alpaca"


def test_dolly_preset_with_negative_and_percentage_slices(tmp_path):
    n = 20
    dolly = {
        "instruction": [f"Q{i}" for i in range(n)],
        "context": ["" if i % 3 else f"C{i}" for i in range(n)],
        "response": [f"A{i}" for i in range(n)],
        "category": ["qa"] * n,
    }
    datasets.DatasetDict({"train": datasets.Dataset.from_dict(dolly)}).save_to_disk(str(tmp_path / "dolly"))
    last = lm_data.load_hub_split(str(tmp_path / "dolly"), None, "train[-2:]", "data.eval_split")
    assert lm_data.to_pairs(last, "data", "train[-2:]", preset="dolly").to_list() == [
        {"prompt": "Q18\n\nC18", "response": "A18"},
        {"prompt": "Q19", "response": "A19"},
    ]
    head = lm_data.load_hub_split(str(tmp_path / "dolly"), None, "train[:10%]", "data.train_split")
    assert head["instruction"] == ["Q0", "Q1"]
    rest = lm_data.load_hub_split(str(tmp_path / "dolly"), None, "train[:-25%]", "data.train_split")
    assert len(rest) == 15 and rest["instruction"][-1] == "Q14"


def test_single_saved_dataset_and_split_errors(tmp_path):
    datasets.Dataset.from_dict(_alpaca(4)).save_to_disk(str(tmp_path / "one"))
    assert len(lm_data.load_hub_split(str(tmp_path / "one"), None, "train[1:]", "data.train_split")) == 3
    with pytest.raises(ConfigError) as err:
        lm_data.load_hub_split(str(tmp_path / "one"), None, "test", "data.eval_split")
    assert (err.value.key, err.value.value) == ("data.eval_split", "test") and "train[-500:]" in err.value.fix
    datasets.DatasetDict({"train": datasets.Dataset.from_dict(_alpaca(4))}).save_to_disk(str(tmp_path / "dd"))
    with pytest.raises(ConfigError, match="use one of train"):
        lm_data.load_hub_split(str(tmp_path / "dd"), None, "validation", "data.eval_split")
    with pytest.raises(ConfigError, match="is not a valid split"):
        lm_data.load_hub_split(str(tmp_path / "dd"), None, "train[:5", "data.train_split")
    with pytest.raises(ConfigError, match="selects no rows"):
        lm_data.load_hub_split(str(tmp_path / "dd"), None, "train[4:]", "data.train_split")


def test_unreachable_hub_dataset_names_path_and_fix(tmp_path):
    with pytest.raises(ConfigError) as err:
        lm_data.load_hub_split("no-such-user/no-such-dataset-xyz", None, "train", "data.train_split")
    e = err.value
    assert (e.key, e.value) == ("data.path", "no-such-user/no-such-dataset-xyz")
    assert "HF_DATASETS_OFFLINE" in e.problem and "save_to_disk" in e.fix and "data=lm_local" in e.fix


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("train", ("train", None)),
        ("train[:500]", ("train", slice(None, 500))),
        ("train[-500:]", ("train", slice(-500, None))),
        ("train[500:]", ("train", slice(500, None))),
        ("train[:-500]", ("train", slice(None, -500))),
        ("train[:5%]", ("train", slice(None, "5%"))),
        ("validation[-5%:]", ("validation", slice("-5%", None))),
        (" test [ 10 : 20 ] ", ("test", slice(10, 20))),
    ],
)
def test_split_spec(spec, expected):
    assert lm_data.split_spec(spec) == expected


@pytest.mark.parametrize("bad", ["", "train[5]", "train[:5", "train[a:]", "train[::2]", "train[:150%]", "tr ain"])
def test_split_spec_bad_syntax(bad):
    with pytest.raises(ValueError):
        lm_data.split_spec(bad)


def test_resolve_slice_percentages():
    assert lm_data.resolve_slice(slice(None, "5%"), 200) == range(10)
    assert lm_data.resolve_slice(slice("-5%", None), 200) == range(190, 200)
    assert lm_data.resolve_slice(None, 3) == range(3)


# ------------------------------------------------------------------ encode, collate, references


def test_encode_masks_exactly_the_prompt(tok):
    enc, truncated = _pairs(tok, ROWS, lm_data.ALPACA_TEMPLATE)
    assert truncated == 0 and enc["idx"] == [0, 1, 2]
    for row, src in zip(enc, ROWS):
        n = row["prompt_length"]
        prompt = tok(lm_data.ALPACA_TEMPLATE.format(prompt=src["prompt"]))["input_ids"]
        response = tok(src["response"], add_special_tokens=False)["input_ids"]
        assert n == len(prompt) and row["input_ids"] == prompt + response + [tok.eos_token_id]
        assert row["labels"][:n] == [-100] * n and -100 not in row["labels"][n:]
        assert row["labels"][n:] == response + [tok.eos_token_id] and row["attention_mask"] == [1] * len(row["labels"])
        assert tok.decode(row["labels"][n:-1]) == src["response"]


def test_encode_special_tokens_only_outside_chat_templates(task):
    bos_tok = tiny_tokenizer(lm_synthetic.texts_for_tokenizer(task), bos=True)
    plain = lm_data.encode([{"prompt_text": "Hi\n", "response_text": "yo", "chat": False}], bos_tok, 32)[0][0]
    chat = lm_data.encode([{"prompt_text": "<bos>Hi\n", "response_text": "yo", "chat": True}], bos_tok, 32)[0][0]
    assert plain["input_ids"] == chat["input_ids"] and plain["input_ids"][0] == bos_tok.bos_token_id
    assert plain["input_ids"].count(bos_tok.bos_token_id) == 1
    long = [{"prompt_text": "pasta dull ferry " * 20, "response_text": "yo", "chat": False}]
    cut, truncated = lm_data.encode(long, bos_tok, 12)
    assert truncated == 1 and len(cut[0]["input_ids"]) == 12 and cut[0]["input_ids"][0] == bos_tok.bos_token_id


def test_truncation_keeps_response_and_eos_and_cuts_prompt_from_left(tok, task):
    long = {"prompt": " ".join(["pasta dull ferry"] * 20) + " END", "response": "ferry dull pasta"}
    enc, truncated = _pairs(tok, [ROWS[0], long], max_length=24)
    assert truncated == 1
    row, eos = enc[1], tok.eos_token_id
    response = tok(long["response"], add_special_tokens=False)["input_ids"]
    assert len(row["input_ids"]) == 24 and row["labels"][-len(response) - 1 :] == response + [eos]
    full_prompt = tok(long["prompt"] + "\n")["input_ids"]
    assert row["input_ids"][: row["prompt_length"]] == full_prompt[-row["prompt_length"] :]  # the tail survives
    assert enc[0]["input_ids"] == _pairs(tok, [ROWS[0]])[0][0]["input_ids"]  # short rows untouched
    huge = {"prompt": long["prompt"], "response": " ".join(["pasta dull ferry"] * 20)}  # both parts too long
    enc, truncated = _pairs(tok, [huge], max_length=16)
    labels = enc[0]["labels"]
    assert truncated == 1 and len(labels) == 16 and labels[-1] == eos
    assert sum(t != -100 for t in labels) == 16 - 16 // 4 and enc[0]["prompt_length"] == 4


def test_encode_needs_eos(task):
    tok = tiny_tokenizer(lm_synthetic.texts_for_tokenizer(task))
    tok.eos_token = None
    with pytest.raises(ValueError, match="eos"):
        lm_data.encode([{"prompt_text": "a", "response_text": "b"}], tok, 16)


def test_collator_pads_and_left_pads_prompts(tok):
    enc, _ = _pairs(tok, ROWS)
    rows = [dict(r, teacher_row=10 + i, kind="ignored") for i, r in enumerate(enc)]
    batch = lm_data.LMCollator(tok.pad_token_id)(rows)
    lengths = [len(r["input_ids"]) for r in rows]
    s, p = max(lengths), max(r["prompt_length"] for r in rows)
    assert batch["input_ids"].shape == batch["labels"].shape == batch["attention_mask"].shape == (3, s)
    assert batch["prompt_ids"].shape == batch["prompt_mask"].shape == (3, p) and "kind" not in batch
    for i, r in enumerate(rows):
        n, k = lengths[i], r["prompt_length"]
        assert batch["input_ids"][i, :n].tolist() == r["input_ids"]
        assert batch["labels"][i, :n].tolist() == r["labels"]
        assert (batch["input_ids"][i, n:] == tok.pad_token_id).all() and (batch["labels"][i, n:] == -100).all()
        assert batch["attention_mask"][i].tolist() == [1] * n + [0] * (s - n)
        assert batch["prompt_ids"][i, p - k :].tolist() == r["input_ids"][:k]
        assert batch["prompt_mask"][i].tolist() == [0] * (p - k) + [1] * k
    assert batch["idx"].tolist() == [0, 1, 2] and batch["teacher_row"].tolist() == [10, 11, 12]
    assert batch["idx"].dtype == torch.long


def test_references_round_trip_embedded_task(tok, task):
    pairs = lm_data.to_pairs(datasets.Dataset.from_list(task.eval), "data", "eval")
    enc, truncated = lm_data.encode(lm_data.render(pairs, tok), tok, 128)
    assert truncated == 0 and len(enc) == 20
    assert lm_data.references(enc, tok) == [ex["response"] for ex in task.eval]
    first = enc[0]
    prompt = task.eval[0]["prompt"] + lm_synthetic.SEP
    assert tok.decode(first["input_ids"][: first["prompt_length"]]) == prompt


# ------------------------------------------------------------------ a generated dataset read back


@pytest.mark.parametrize("messages_field", [None, "messages"])
def test_generated_rows_train_in_the_format_the_run_evaluates(tmp_path, chat_tok, messages_field):
    """A teacher's answer to a one-turn prompt is written in both forms; the run reads it back as it reads its own
    data: through the chat template when data.messages_field is set (its student is evaluated through that template),
    else through the prompt template."""
    from types import SimpleNamespace

    from distillkit.tasks.causal_lm import generated
    from distillkit.teachers.generating import Completion

    row = generated.row([{"role": "user", "content": "add 2 and 3"}], Completion("5"), None)
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps(row) + "\n", encoding="utf-8")
    data = SimpleNamespace(messages_field=messages_field, prompt_template="Q: {prompt}\nA: ", max_length=128)
    encoded = generated.view(path, chat_tok, SimpleNamespace(data=data))
    text = chat_tok.decode(encoded[0]["input_ids"])
    expected = lm_data.render(
        lm_data.to_pairs(datasets.Dataset.from_list([row]), "data", "x", messages_field=messages_field),
        chat_tok,
        data.prompt_template,
    )[0]["prompt_text"]
    assert text.startswith(expected) and ("Q: add 2 and 3" in text) == (messages_field is None), text
