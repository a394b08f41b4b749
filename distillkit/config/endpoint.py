"""Schemas of a teacher that writes text: ``EndpointConfig`` (``teacher=openai``: a server speaking the OpenAI
chat-completions API; OpenAI itself, vLLM, TGI, llama.cpp's server) and ``SamplingSettings`` (how any generating
teacher, an endpoint or a local model, is asked to answer). Re-exported by ``distillkit.config.schema``; the
teacher itself is ``distillkit/teachers/endpoint.py``.

The API key is never a setting: ``api_key_env`` names the environment variable that holds it, so the key stays out
of config.yaml, results.json, the cache, W&B and the log."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from distillkit.errors import count_or_null, positive, require


@dataclass
class SamplingSettings:
    """How a generating teacher answers (``teacher.sampling``): the chat-completions parameters of the same names.
    ``max_tokens`` null: the endpoint's own limit, ``task.max_new_tokens`` for a local model. ``n`` completions per
    prompt (each kept as its own example). ``logprobs``/``top_logprobs``: the endpoint returns the chosen tokens'
    log-probabilities (and the top k alternatives), stored with each completion in the cache and the dataset."""

    temperature: float = 0.0
    top_p: float = 1.0
    max_tokens: Optional[int] = None
    n: int = 1
    logprobs: bool = False
    top_logprobs: Optional[int] = None
    seed: Optional[int] = None  # sent to endpoints that honour it (OpenAI, vLLM); the local model's sampling seed

    def __post_init__(self):
        require(
            self.temperature >= 0,
            "teacher.sampling.temperature",
            self.temperature,
            "must not be negative.",
            "use 0 (greedy) or e.g. 0.7.",
        )
        require(
            0.0 < self.top_p <= 1.0,
            "teacher.sampling.top_p",
            self.top_p,
            "is outside (0, 1].",
            "use 1.0 (no nucleus cut) or e.g. 0.95.",
        )
        count_or_null(
            "teacher.sampling.max_tokens",
            self.max_tokens,
            "the endpoint's limit; task.max_new_tokens for a local model",
            256,
        )
        positive("teacher.sampling.n", self.n, "use 1 (one completion per prompt) or more.")
        require(
            self.top_logprobs is None or (self.logprobs and 0 <= self.top_logprobs <= 20),
            "teacher.sampling.top_logprobs",
            self.top_logprobs,
            "needs teacher.sampling.logprobs=true and a value in 0..20 (the API's range).",
            "set teacher.sampling.logprobs=true with e.g. top_logprobs=5, or top_logprobs=null.",
        )


@dataclass
class EndpointConfig:
    """A chat-completions endpoint (``teacher.endpoint``). ``base_url`` ends in ``/v1``; ``model`` must be one the
    endpoint lists (GET /v1/models, checked before the run starts); ``api_key_env`` is the NAME of the environment
    variable holding the key (null: a local server without keys). ``concurrency`` requests in flight at once; each
    waits ``timeout`` seconds; 429, 5xx, time-outs and lost connections are retried ``max_retries`` times with
    exponential back-off (the ``openai`` client's own: 0.5 s doubling to 8 s, with jitter, or the server's
    Retry-After)."""

    base_url: str = "https://api.openai.com/v1"
    model: str = "???"
    api_key_env: Optional[str] = "OPENAI_API_KEY"
    concurrency: int = 8
    timeout: float = 60.0
    max_retries: int = 5
    check_timeout: float = 10.0  # the pre-flight GET /v1/models: one try, this long

    def __post_init__(self):
        require(
            self.base_url.startswith(("http://", "https://")),
            "teacher.endpoint.base_url",
            self.base_url,
            "is not an http(s) URL.",
            "give the server's API root, e.g. https://api.openai.com/v1 or http://localhost:8000/v1 (vLLM).",
        )
        require(
            bool(self.model) and self.model != "???",
            "teacher.endpoint.model",
            self.model,
            "is empty: the endpoint needs to know which model answers.",
            "set teacher.endpoint.model=<a model the endpoint lists at GET /v1/models>, e.g. gpt-4o-mini.",
        )
        require(
            self.api_key_env is None or (self.api_key_env.replace("_", "").isalnum() and not _looks_like_key(self)),
            "teacher.endpoint.api_key_env",
            "<hidden>" if _looks_like_key(self) else self.api_key_env,
            "must be the NAME of an environment variable (e.g. OPENAI_API_KEY), not the key itself"
            + (" (this value looks like a key: it was not echoed)." if _looks_like_key(self) else "."),
            "export the key in a variable (export OPENAI_API_KEY=...) and set teacher.endpoint.api_key_env to its "
            "name; null for a local server without keys.",
        )
        positive("teacher.endpoint.concurrency", self.concurrency, "use an integer >= 1, e.g. 8.")
        positive("teacher.endpoint.timeout", self.timeout, "use seconds > 0, e.g. 60.")
        positive("teacher.endpoint.check_timeout", self.check_timeout, "use seconds > 0, e.g. 10.")
        require(
            self.max_retries >= 0,
            "teacher.endpoint.max_retries",
            self.max_retries,
            "must not be negative.",
            "use 0 (no retry) or e.g. 5.",
        )


def _looks_like_key(cfg: EndpointConfig) -> bool:
    """A value pasted where the variable's name belongs (``sk-...``, or long and mixed-case with digits)."""
    v = cfg.api_key_env or ""
    return v.startswith(("sk-", "sk_")) or (len(v) >= 32 and any(c.isdigit() for c in v) and v != v.upper())
