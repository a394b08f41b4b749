"""A local Hugging Face causal LM answering chat-completions requests the way an OpenAI-compatible server (vLLM, TGI,
llama.cpp) does, for ``scripts/openai_stub_server.py --model-path DIR``: a real model behind the same HTTP API, so a
black-box run can be measured against a real teacher with no GPU, key or network.

- the prompt is the tokenizer's chat template over the request's messages, with the generation prompt (a tokenizer
  without one: the turns' contents joined by newlines, as a plain completion);
- ``temperature`` 0 (the default) is greedy, else sampled with ``temperature`` and ``top_p``; ``seed`` seeds it;
  ``max_tokens`` (or ``max_completion_tokens``; default 256) caps the answer, ``n`` answers per request;
- each answer stops at the end-of-sequence token (``finish_reason`` ``stop``) or at ``max_tokens`` (``length``);
- ``logprobs`` / ``top_logprobs`` give each generated token's log-probability and its ``top_logprobs`` most likely
  alternatives, from the model's own distribution at that position (before temperature);
- requests that arrive together are generated as one left-padded batch (up to ``max_batch`` of them, gathered for
  at most ``wait_s`` after the first; requests with other sampling settings wait for a batch of their own), so
  concurrency pays as it does on a batching server.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from dataclasses import dataclass


@dataclass
class Choice:
    text: str
    finish_reason: str
    logprobs: list | None  # OpenAI's logprobs.content list, or None


def sampling_key(body: dict) -> tuple:
    """The settings a batch must share."""
    return (
        float(body.get("temperature") or 0.0),
        float(body.get("top_p") if body.get("top_p") is not None else 1.0),
        int(body.get("max_tokens") or body.get("max_completion_tokens") or 256),
        int(body.get("n") or 1),
        bool(body.get("logprobs")),
        int(body.get("top_logprobs") or 0),
        body.get("seed"),
    )


class ChatModel:
    """The model at ``path`` (float32, eval mode) and a worker thread that answers the queued requests in batches.
    ``complete(body)`` (async) → the request's choices; ``close()`` stops the worker."""

    def __init__(self, path: str, max_batch: int = 8, wait_s: float = 0.02, device: str = "cpu"):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).to(device).eval()
        self.device, self.max_batch, self.wait_s = device, max_batch, wait_s
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.batches: list[int] = []  # the size of each batch generated (what concurrency bought)
        self._queue: queue.Queue = queue.Queue()
        self._worker = threading.Thread(target=self._work, name="chat-model", daemon=True)
        self._worker.start()

    async def complete(self, body: dict) -> list[Choice]:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._queue.put((body, loop, future))
        return await future

    def close(self) -> None:
        self._queue.put(None)
        self._worker.join(timeout=30)

    # ------------------------------------------------------------------------------------------------ worker
    def _work(self) -> None:
        pending: list = []
        while True:
            item = pending.pop(0) if pending else self._queue.get()
            if item is None:
                return
            batch, deadline = [item], time.monotonic() + self.wait_s
            while len(batch) < self.max_batch:
                try:
                    nxt = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if nxt is None:
                    pending.append(None)
                    break
                batch.append(nxt)
            key = sampling_key(batch[0][0])
            same = [b for b in batch if sampling_key(b[0]) == key]
            pending = [b for b in batch if sampling_key(b[0]) != key] + pending
            try:
                results = self.generate([b[0] for b in same])
            except Exception as err:  # every request of the batch gets the error (a 500)
                for _, loop, future in same:
                    loop.call_soon_threadsafe(_settle, future, None, err)
                continue
            self.batches.append(len(same))
            for (_, loop, future), choices in zip(same, results):
                loop.call_soon_threadsafe(_settle, future, choices, None)

    def prompt_text(self, messages: list[dict]) -> tuple[str, bool]:
        """(prompt text, whether it already holds the special tokens)."""
        tok = self.tokenizer
        if getattr(tok, "chat_template", None):
            return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True), True
        return "\n".join(m["content"] for m in messages) + "\n", False

    def generate(self, bodies: list[dict]) -> list[list[Choice]]:
        """The choices of each request in ``bodies`` (which share their sampling settings), one batch."""
        import torch
        from transformers import GenerationConfig

        temperature, top_p, max_tokens, n, want_logprobs, top_k, seed = sampling_key(bodies[0])
        tok, eos = self.tokenizer, self.tokenizer.eos_token_id
        greedy = temperature == 0
        config = GenerationConfig(
            max_new_tokens=max_tokens,
            do_sample=not greedy,
            temperature=None if greedy else temperature,
            top_p=None if greedy else top_p,
            top_k=None,
            num_return_sequences=n,
            eos_token_id=eos,
            pad_token_id=tok.pad_token_id,
            return_dict_in_generate=True,
            output_logits=want_logprobs,
        )
        texts, specials = zip(*(self.prompt_text(b["messages"]) for b in bodies))
        side, tok.padding_side = tok.padding_side, "left"
        try:
            batch = tok(list(texts), return_tensors="pt", padding=True, add_special_tokens=not any(specials))
        finally:
            tok.padding_side = side
        if seed is not None:
            torch.manual_seed(int(seed))
        with torch.no_grad():
            out = self.model.generate(**batch.to(self.device), generation_config=config)
        new = out.sequences[:, batch["input_ids"].shape[1] :].tolist()
        logps = (
            torch.stack(out.logits, dim=1).float().log_softmax(-1) if want_logprobs else None
        )  # [rows, steps, vocab]
        results = []
        for i in range(len(bodies)):
            choices = []
            for r in range(i * n, (i + 1) * n):
                ids = new[r]
                stopped = eos in ids
                ids = ids[: ids.index(eos)] if stopped else ids
                content = None
                if logps is not None:
                    content = [self._token_logprobs(logps[r, s], t, top_k) for s, t in enumerate(ids)]
                text = tok.decode(ids, skip_special_tokens=True)
                choices.append(Choice(text, "stop" if stopped else "length", content))
            results.append(choices)
        return results

    def _token_logprobs(self, logp, token: int, k: int) -> dict:
        def entry(t: int, lp: float) -> dict:
            text = self.tokenizer.decode([t])
            return {"token": text, "logprob": lp, "bytes": list(text.encode())}

        top = []
        if k:
            values, ids = logp.topk(k)
            top = [entry(t, v) for t, v in zip(ids.tolist(), values.tolist())]
        return {**entry(token, float(logp[token])), "top_logprobs": top}


def _settle(future, result, error) -> None:
    if future.done():  # the client went away
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
