"""The causal-LM task's side of black-box distillation (``method=blackbox_sft``): the conversations a generating
teacher is asked (``prompts``), the rows its answers become (``row``: the task's own file format, so the dataset
reads back with ``data=lm_local``), how a local teacher writes a conversation as prompt text (``render``), and the
``generated`` data view a training stage reads (``view``)."""

from __future__ import annotations

import json

SYSTEM, USER, ASSISTANT = "system", "user", "assistant"


def prompts(task_data, system_prompt: str | None) -> list[list[dict]]:
    """One conversation per training row: the prompt as a user turn (a chat row: its turns before the answer),
    after a system turn when ``system_prompt`` is given."""
    head = [{"role": SYSTEM, "content": system_prompt}] if system_prompt else []
    train = task_data.train
    if "messages" in train.column_names:
        return [head + [m for m in turns[:-1] if m["role"] != SYSTEM or not head] for turns in train["messages"]]
    return [head + [{"role": USER, "content": p}] for p in train["prompt"]]


def row(conversation: list[dict], completion, system_prompt: str | None) -> dict:
    """A dataset row of the answer ``completion`` to ``conversation``: {messages} (the turns, then the answer), and
    for a one-turn prompt {prompt, response} too, so the file reads back both ways (``data.messages_field=messages``
    for a chat model's template, else the prompt template); the system turn the pipeline added is not kept (the
    student learns to answer as the prompted teacher did); the answer's log-probabilities when the teacher gave
    them."""
    turns = conversation[1:] if system_prompt else conversation
    out = {"messages": turns + [{"role": ASSISTANT, "content": completion.text}]}
    if len(turns) == 1 and turns[0]["role"] == USER:
        out = {"prompt": turns[0]["content"], "response": completion.text, **out}
    if completion.logprobs is not None:
        out["logprobs"] = completion.logprobs
    return out


def render(conversation: list[dict], tokenizer, template: str, chat: bool = False) -> tuple[str, bool]:
    """(prompt text, whether it already holds the special tokens) for a local model, written as the run's training
    rows are: the tokenizer's chat template when the data is chat turns (``chat``: data.messages_field set), else
    the data's prompt template around the user turn (a system turn before it), even when the tokenizer has a chat
    template, since a teacher fine-tuned on prompt/response rows was trained on the template, not on chat turns."""
    if chat and getattr(tokenizer, "chat_template", None) is not None:
        return tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True), True
    system = "".join(m["content"] + "\n" for m in conversation if m["role"] == SYSTEM)
    user = "\n".join(m["content"] for m in conversation if m["role"] != SYSTEM)
    return system + template.format(prompt=user), False


def reuse_overrides(folder: str, cfg) -> str:
    """The overrides that train on a generated dataset in ``folder`` again (its card's command)."""
    chat = " data.messages_field=messages" if cfg.data.messages_field else ""
    return f"task=causal_lm data=lm_local data.train_file={folder}/train.jsonl data.eval_file={folder}/eval.jsonl{chat}"


def export_rows(split) -> list[dict]:
    """A split's rows as the task reads them back from a file (prompt/response, or messages)."""
    cols = ["messages"] if "messages" in split.column_names else ["prompt", "response"]
    return split.select_columns(cols).to_list()


def view(path, tokenizer, cfg, greybox: bool = False):
    """The ``generated`` dataset at ``path`` (a train.jsonl a generation stage wrote), tokenised like the training
    split (``data.prompt_template`` or the chat template, ``data.max_length``). Conversations with more than one
    assistant turn (``pipeline=dialogue``) are encoded by ``encode_turns``: the loss on every assistant turn. With
    ``greybox``: the target columns from the rows' log-probs too (``greybox.add_targets``); returns (dataset, rows
    aligned, slots per position) then."""
    import datasets

    from distillkit.tasks.causal_lm import data as lm_data

    rows = [json.loads(line) for line in open(path, encoding="utf-8") if line.strip()]
    if any(sum(m["role"] == ASSISTANT for m in r.get("messages", [])) > 1 for r in rows):
        convs = [r["messages"] if "messages" in r else _as_messages(r) for r in rows]
        encoded, _ = encode_turns(convs, tokenizer, cfg.data.prompt_template, cfg.data.max_length)
        return encoded
    # rows in both forms are read as the run reads its own data: chat turns when data.messages_field is set (the
    # student is evaluated through the chat template then), else prompt/response through the prompt template
    chat = bool(rows) and "messages" in rows[0] and ("prompt" not in rows[0] or cfg.data.messages_field is not None)
    raw = datasets.Dataset.from_list(
        [{"messages": r["messages"]} if chat else {"prompt": r["prompt"], "response": r["response"]} for r in rows]
    )
    pairs = lm_data.to_pairs(raw, "data", str(path), messages_field="messages" if chat else None)
    rendered = lm_data.render(pairs, tokenizer, cfg.data.prompt_template)
    if not greybox:
        return lm_data.encode(rendered, tokenizer, cfg.data.max_length)[0]
    from distillkit.tasks.causal_lm.greybox import add_targets, reverse_vocab, slots_of, teacher_token_ids

    vocab = reverse_vocab(tokenizer)
    for r, row in zip(rendered, rows):  # the student learns the tokens the teacher wrote, where they are its own
        r["response_ids"] = teacher_token_ids(row.get("logprobs"), r["response_text"], vocab)
    encoded, _ = lm_data.encode(rendered, tokenizer, cfg.data.max_length)
    slots = slots_of(rows)
    return (*add_targets(encoded, rows, tokenizer, slots, vocab), slots)


def _as_messages(row: dict) -> list[dict]:
    return [{"role": USER, "content": row["prompt"]}, {"role": ASSISTANT, "content": row["response"]}]


def turn_segments(messages: list[dict], tokenizer, template: str) -> list[tuple[str, bool]]:
    """A conversation as (text, is an assistant turn) segments in order. With the tokenizer's chat template: the
    text the template writes before each assistant turn (with the generation prompt), then the turn's content. Without
    one: the data's prompt template around the user turns since the last answer (system turns first, each on its own
    line), then the answer; a turn's end is its eos token (``encode_turns``)."""
    segments: list[tuple[str, bool]] = []
    if getattr(tokenizer, "chat_template", None) is not None:
        done = ""
        for i, m in enumerate(messages):
            if m["role"] != ASSISTANT:
                continue
            prefix = tokenizer.apply_chat_template(messages[:i], tokenize=False, add_generation_prompt=True)
            if not prefix.startswith(done):
                raise ValueError("the chat template does not write a conversation as a prefix of its longer self")
            head = prefix[len(done) :]
            eos = tokenizer.eos_token or ""
            if segments and eos and head.startswith(eos):  # the turn's end is the eos encode_turns appends
                head = head[len(eos) :]
            segments += [(head, False), (m["content"], True)]
            done = prefix + m["content"]
        return segments
    pending: list[str] = []
    system = ""
    for m in messages:
        if m["role"] == SYSTEM:
            system += m["content"] + "\n"
        elif m["role"] == ASSISTANT:
            segments += [(system + template.format(prompt="\n".join(pending)), False), (m["content"], True)]
            pending, system = [], ""
        else:
            pending.append(m["content"])
    return segments


def encode_turns(conversations: list[list[dict]], tokenizer, template: str, max_length: int):
    """(dataset, n_truncated) of multi-turn conversations, the columns of ``data.encode``: input_ids, attention_mask,
    labels (the ids of every assistant turn and the eos ending it; -100 on system and user turns and the template's
    text between turns), prompt_length (the first prompt: what evaluation and rollouts read), idx. The first prompt
    carries the tokenizer's special tokens unless the chat template wrote them. A row over ``max_length`` loses its
    last turns; its first answer is always kept (the first prompt loses tokens from the left to make room)."""
    import datasets

    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError("the tokenizer has no eos token: each answer must end with one so the model learns to stop")
    chat = getattr(tokenizer, "chat_template", None) is not None
    columns = {k: [] for k in ("input_ids", "attention_mask", "labels", "prompt_length", "idx")}
    truncated = 0
    for n, conv in enumerate(conversations):
        ids, labels, first_prompt = [], [], None
        for j, (text, answer) in enumerate(turn_segments(conv, tokenizer, template)):
            part = tokenizer(text, add_special_tokens=(j == 0 and not chat))["input_ids"]
            if answer:
                part = part + [eos]
            if first_prompt is None:
                first_prompt = len(part)
            ids += part
            labels += part if answer else [-100] * len(part)
        if len(ids) > max_length:
            truncated += 1
            first_answer = next(k for k in range(first_prompt, len(ids) + 1) if k == len(ids) or labels[k] == -100)
            if first_answer <= max_length:  # whole turns fit: cut after the last answer token that fits
                ids, labels = ids[:max_length], labels[:max_length]
            else:  # the first turn alone is too long: its answer's head, the prompt's tail
                answer = ids[first_prompt:first_answer][: max_length - max(1, max_length // 4) - 1] + [eos]
                prompt = ids[:first_prompt][-(max_length - len(answer)) :]
                ids, labels, first_prompt = prompt + answer, [-100] * len(prompt) + answer, len(prompt)
        columns["input_ids"].append(ids)
        columns["attention_mask"].append([1] * len(ids))
        columns["labels"].append(labels)
        columns["prompt_length"].append(first_prompt)
        columns["idx"].append(n)
    return datasets.Dataset.from_dict(columns), truncated
