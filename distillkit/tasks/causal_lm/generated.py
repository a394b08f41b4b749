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
    """A dataset row of the answer ``completion`` to ``conversation``: {prompt, response} for a one-turn prompt,
    {messages} (the turns, then the answer) for a chat; the system turn the pipeline added is not kept (the student
    learns to answer as the prompted teacher did); the answer's log-probabilities when the teacher gave them."""
    turns = conversation[1:] if system_prompt else conversation
    if len(turns) == 1 and turns[0]["role"] == USER:
        out = {"prompt": turns[0]["content"], "response": completion.text}
    else:
        out = {"messages": turns + [{"role": ASSISTANT, "content": completion.text}]}
    if completion.logprobs is not None:
        out["logprobs"] = completion.logprobs
    return out


def render(conversation: list[dict], tokenizer, template: str) -> tuple[str, bool]:
    """(prompt text, whether it already holds the special tokens) for a local teacher: the tokenizer's chat
    template when it has one, else the data's prompt template around the user turn (a system turn before it)."""
    if getattr(tokenizer, "chat_template", None) is not None:
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


def view(path, tokenizer, cfg):
    """The ``generated`` dataset at ``path`` (a train.jsonl a generation stage wrote), tokenised like the training
    split (``data.prompt_template`` or the chat template, ``data.max_length``)."""
    import datasets

    from distillkit.tasks.causal_lm import data as lm_data

    rows = [json.loads(line) for line in open(path, encoding="utf-8") if line.strip()]
    chat = bool(rows) and "messages" in rows[0]
    raw = datasets.Dataset.from_list(
        [{"messages": r["messages"]} if chat else {"prompt": r["prompt"], "response": r["response"]} for r in rows]
    )
    pairs = lm_data.to_pairs(raw, "data", str(path), messages_field="messages" if chat else None)
    rendered = lm_data.render(pairs, tokenizer, cfg.data.prompt_template)
    encoded, _ = lm_data.encode(rendered, tokenizer, cfg.data.max_length)
    return encoded
