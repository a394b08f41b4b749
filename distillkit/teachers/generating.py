"""Generating teachers: a teacher that answers conversations with text, behind one small interface, so a pipeline
(``stages/generation/``) does not care whether an API or a local model writes.

    generate(conversations, sampling, on_each=None) -> [[Completion] * sampling.n for each conversation]

``conversations`` are chat message lists ([{"role", "content"}, ...]); ``on_each(i, completions)`` is called as each
conversation's answers arrive (an endpoint answers out of order), which is how the cache stores every paid completion
at once, before the rest of the batch is done.

| teacher | what writes |
| --- | --- |
| ``EndpointTeacher`` (``endpoint.py``) | a chat-completions endpoint (``teacher=openai``: OpenAI, vLLM, TGI, ...) |
| ``LocalTeacher`` | the run's teacher model, through ``transformers``' ``generate`` |
| ``CachedTeacher`` | either of them, each answer stored on disk once (``cache_dir/completions/``) |
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from distillkit import store

log = logging.getLogger("distillkit")

Conversation = list  # [{"role": str, "content": str}, ...]


@dataclass(frozen=True)
class Completion:
    """One answer: its text, why it stopped (``stop``, ``length`` when max_tokens cut it), and the chosen tokens'
    log-probabilities when they were asked for ([{"token", "logprob", "top_logprobs"}], else None)."""

    text: str
    finish_reason: str = "stop"
    logprobs: list | None = None

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> Completion:
        return cls(data["text"], data.get("finish_reason", "stop"), data.get("logprobs"))


class GeneratingTeacher:
    """The interface. ``identity`` is what determines the answers besides the prompt and the sampling settings (an
    endpoint's model name, a local model's weights digest): the cache key's teacher part."""

    kind = "generating"

    @property
    def identity(self) -> dict:
        raise NotImplementedError

    def generate(
        self,
        conversations: list[Conversation],
        sampling,
        on_each: Callable[[int, list[Completion]], None] | None = None,
    ) -> list[list[Completion]]:
        raise NotImplementedError

    def describe(self) -> str:
        return self.kind


class LocalTeacher(GeneratingTeacher):
    """A causal LM of the run answering through ``generate``: each conversation rendered to prompt text by
    ``render`` (the task's: its prompt template, or the tokenizer's chat template), greedy at temperature 0, else
    sampled with the settings' temperature and top_p (seeded by ``sampling.seed``); ``max_tokens`` null =
    ``default_max_tokens``. Log-probabilities are not returned (the local model's logits are the white-box methods'
    business)."""

    kind = "local"

    def __init__(self, model, tokenizer, device, render: Callable, default_max_tokens: int, batch_size: int = 32):
        self.model, self.tokenizer, self.device, self.render = model, tokenizer, device, render
        self.default_max_tokens, self.batch_size = default_max_tokens, batch_size
        self._digest = None

    @property
    def identity(self) -> dict:
        if self._digest is None:
            self._digest = store.weights_digest(self.model)
        return {"kind": "local", "weights": self._digest, "tokenizer": store.entry_key(self.tokenizer.get_vocab())}

    def generate(self, conversations, sampling, on_each=None):
        import torch
        from transformers import GenerationConfig

        tok, eos = self.tokenizer, self.tokenizer.eos_token_id
        greedy = sampling.temperature == 0
        config = GenerationConfig(
            max_new_tokens=sampling.max_tokens or self.default_max_tokens,
            do_sample=not greedy,
            temperature=None if greedy else sampling.temperature,
            top_p=None if greedy else sampling.top_p,
            num_return_sequences=sampling.n,
            eos_token_id=eos,
            pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else eos,
        )
        if sampling.seed is not None:
            torch.manual_seed(sampling.seed)
        self.model.to(self.device).eval()
        out: list[list[Completion]] = []
        side, tok.padding_side = tok.padding_side, "left"
        try:
            for start in range(0, len(conversations), self.batch_size):
                chunk = conversations[start : start + self.batch_size]
                texts, specials = zip(*(self.render(c) for c in chunk))
                batch = tok(list(texts), return_tensors="pt", padding=True, add_special_tokens=not any(specials))
                with torch.no_grad():
                    ids = self.model.generate(**batch.to(self.device), generation_config=config)
                ids = ids[:, batch["input_ids"].shape[1] :].tolist()
                for i in range(len(chunk)):
                    answers = []
                    for row in ids[i * sampling.n : (i + 1) * sampling.n]:
                        stopped = eos in row
                        row = row[: row.index(eos)] if stopped else row
                        answers.append(
                            Completion(tok.decode(row, skip_special_tokens=True), "stop" if stopped else "length")
                        )
                    out.append(answers)
                    if on_each is not None:
                        on_each(start + i, answers)
        finally:
            tok.padding_side = side
        return out

    def describe(self) -> str:
        return (
            f"local model ({self.model.config.model_type}, {sum(p.numel() for p in self.model.parameters()):,} params)"
        )


class CachedTeacher(GeneratingTeacher):
    """``inner`` with every answer stored once under ``root/completions/<key[:2]>/<key>.json``, the key a hash of
    (the teacher's identity, the conversation, the sampling settings): a rerun, a resumed run or another job of a
    sweep never asks (or pays) for the same completion twice. Each answer is written atomically the moment it
    arrives, so a run killed half way keeps what it paid for. ``hits`` / ``misses`` count this teacher's look-ups."""

    def __init__(self, inner: GeneratingTeacher, root: Path):
        self.inner, self.root = inner, Path(root) / "completions"
        self.hits = self.misses = 0

    @property
    def kind(self) -> str:
        return self.inner.kind

    @property
    def identity(self) -> dict:
        return self.inner.identity

    def key(self, conversation: Conversation, sampling) -> str:
        return store.entry_key(
            {"teacher": self.identity, "messages": conversation, "sampling": dataclasses.asdict(sampling)}
        )

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def lookup(self, conversation: Conversation, sampling) -> list[Completion] | None:
        try:
            data = json.loads(self.path(self.key(conversation, sampling)).read_text())
        except (OSError, ValueError):  # absent, or unreadable: asked again (a write is atomic, so rarely the latter)
            return None
        return [Completion.from_json(c) for c in data["completions"]]

    def generate(self, conversations, sampling, on_each=None):
        found = [self.lookup(c, sampling) for c in conversations]
        todo = [i for i, f in enumerate(found) if f is None]
        self.hits += len(conversations) - len(todo)
        self.misses += len(todo)
        for i, f in enumerate(found):
            if f is not None and on_each is not None:
                on_each(i, f)

        def store_one(j: int, answers: list[Completion]) -> None:
            i = todo[j]
            found[i] = answers
            record = {
                "teacher": self.identity,
                "messages": conversations[i],
                "sampling": dataclasses.asdict(sampling),
                "completions": [a.to_json() for a in answers],
            }
            store.write_atomic(self.path(self.key(conversations[i], sampling)), json.dumps(record))
            if on_each is not None:
                on_each(i, answers)

        if todo:
            self.inner.generate([conversations[i] for i in todo], sampling, store_one)
        return found

    def describe(self) -> str:
        return self.inner.describe()
