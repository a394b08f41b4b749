"""``teacher=openai``: a teacher that is a chat-completions endpoint (OpenAI, or any server speaking its API: vLLM's
``vllm serve``, TGI's Messages API, llama.cpp's ``llama-server``), through the ``openai`` client.

``check(cfg)`` runs before anything heavy (``plan.make_plan``) and turns each way the endpoint cannot serve the run
into one ``ConfigError`` paragraph: the ``openai`` package missing, the key's variable unset, the endpoint
unreachable (one try, with its URL), the key refused, the model not among those it lists (GET /v1/models).

``EndpointTeacher.generate`` keeps ``concurrency`` requests in flight; the client retries 429, 5xx, time-outs and
lost connections ``max_retries`` times with exponential back-off (its own: 0.5 s doubling to 8 s with jitter, or the
server's Retry-After). The key is read from the environment when the client is made and handed to the client only:
it is never logged, stored in the config, the cache, results.json or W&B.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor, as_completed, wait

from distillkit.errors import ConfigError, first_line
from distillkit.teachers.generating import Completion, GeneratingTeacher

log = logging.getLogger("distillkit")

NO_KEY = "EMPTY"  # what a server without keys gets (api_key_env: null); vLLM's documented placeholder


def _openai():
    try:
        import openai
    except ImportError:
        raise ConfigError(
            "teacher",
            "openai",
            "needs the openai package (the client every chat-completions endpoint is reached with), which is not "
            "installed.",
            "pip install 'distillkit[endpoint]' (or pip install openai).",
        ) from None
    return openai


def api_key(cfg) -> str:
    """The key from the variable ``cfg.api_key_env`` names (``NO_KEY`` when it names none); a ConfigError naming the
    variable when it is unset or empty."""
    if cfg.api_key_env is None:
        return NO_KEY
    key = os.environ.get(cfg.api_key_env, "")
    if not key.strip():
        raise ConfigError(
            "teacher.endpoint.api_key_env",
            cfg.api_key_env,
            f"names an environment variable that is {'empty' if cfg.api_key_env in os.environ else 'not set'}, so "
            f"there is no key for {cfg.base_url}.",
            f"export {cfg.api_key_env}=<your key> before the run (it is read from the environment only, never "
            "written anywhere), or set teacher.endpoint.api_key_env to the variable that holds it "
            "(null for a local server without keys).",
        )
    return key


def client(cfg, max_retries: int | None = None, timeout: float | None = None):
    """An ``openai.OpenAI`` client for the endpoint (its HTTP logging quietened: one line per request otherwise)."""
    openai = _openai()
    for name in ("httpx", "httpx2"):  # the openai client's HTTP library (httpx2 since openai 3)
        logging.getLogger(name).setLevel(logging.WARNING)
    return openai.OpenAI(
        base_url=cfg.base_url,
        api_key=api_key(cfg),
        timeout=cfg.timeout if timeout is None else timeout,
        max_retries=cfg.max_retries if max_retries is None else max_retries,
    )


def check(cfg) -> list[str]:
    """Fail before work when the endpoint ``cfg`` (``EndpointConfig``) cannot serve the run; return the model ids
    it lists. One GET /v1/models, without retries, waiting ``check_timeout`` seconds."""
    openai = _openai()
    c = client(cfg, max_retries=0, timeout=cfg.check_timeout)
    try:
        listed = [m.id for m in c.models.list()]
    except openai.AuthenticationError as err:
        raise ConfigError(
            "teacher.endpoint.api_key_env",
            cfg.api_key_env,
            f"holds a key that {cfg.base_url} refused ({err.status_code}: {first_line(err)}).",
            f"export a valid key in {cfg.api_key_env}, or point teacher.endpoint.api_key_env at the variable that "
            "holds one.",
        ) from None
    except (openai.APIConnectionError, openai.APITimeoutError) as err:
        raise ConfigError(
            "teacher.endpoint.base_url",
            cfg.base_url,
            f"cannot be reached ({first_line(err.__cause__ or err)}; one try of {cfg.check_timeout:g} s at "
            f"GET {cfg.base_url.rstrip('/')}/models).",
            "start the server (e.g. vllm serve MODEL, then base_url http://HOST:8000/v1), check the host, port and "
            "the /v1 suffix, or raise teacher.endpoint.check_timeout for a slow link.",
        ) from None
    except openai.APIStatusError as err:
        raise ConfigError(
            "teacher.endpoint.base_url",
            cfg.base_url,
            f"answered GET /models with {err.status_code} ({first_line(err)}): it does not look like a "
            "chat-completions API.",
            "point teacher.endpoint.base_url at the API root that serves /models and /chat/completions "
            "(usually ending in /v1).",
        ) from None
    if cfg.model not in listed:
        shown = ", ".join(listed[:20]) + (f" and {len(listed) - 20} more" if len(listed) > 20 else "")
        raise ConfigError(
            "teacher.endpoint.model",
            cfg.model,
            f"is not a model {cfg.base_url} lists (GET /models: {shown or 'none'}).",
            "set teacher.endpoint.model to one of them (a vLLM server lists the name it was started with, or "
            "its --served-model-name).",
        )
    return listed


class EndpointTeacher(GeneratingTeacher):
    """The endpoint's model answering each conversation (``sampling.n`` completions per request)."""

    kind = "endpoint"

    def __init__(self, cfg):
        self.cfg = cfg
        self._client = None

    @property
    def identity(self) -> dict:
        # The model's name, not the URL: the same model moved to another host (or port) is the same teacher.
        return {"kind": "endpoint", "model": self.cfg.model}

    def _request(self, conversation, sampling) -> list[Completion]:
        s = sampling
        args = {"model": self.cfg.model, "messages": conversation, "temperature": s.temperature, "top_p": s.top_p}
        if s.n != 1:
            args["n"] = s.n
        if s.max_tokens is not None:
            args["max_tokens"] = s.max_tokens
        if s.seed is not None:
            args["seed"] = s.seed
        if s.logprobs:
            args["logprobs"] = True
            if s.top_logprobs is not None:
                args["top_logprobs"] = s.top_logprobs
        response = self._client.chat.completions.create(**args)
        choices = sorted(response.choices, key=lambda c: c.index)
        return [
            Completion(c.message.content or "", c.finish_reason or "stop", _logprobs(c) if s.logprobs else None)
            for c in choices
        ]

    def generate(self, conversations, sampling, on_each=None):
        if self._client is None:
            self._client = client(self.cfg)
        out: list = [None] * len(conversations)
        with ThreadPoolExecutor(max_workers=self.cfg.concurrency, thread_name_prefix="endpoint") as pool:
            futures = {pool.submit(self._request, c, sampling): i for i, c in enumerate(conversations)}
            handed: set = set()
            try:
                for future in as_completed(futures):  # callbacks on this thread, as answers arrive
                    i = futures[future]
                    out[i] = future.result()
                    handed.add(future)
                    if on_each is not None:
                        on_each(i, out[i])
            except BaseException as err:
                for f in futures:
                    f.cancel()
                if on_each is not None and isinstance(err, Exception):
                    # requests already in flight are paid for: wait for them and hand their answers on (to the
                    # cache) before giving up, so a rerun does not pay for them again
                    wait([f for f in futures if not f.cancelled()])
                    for f in futures:
                        if f not in handed and not f.cancelled() and f.exception() is None:
                            out[futures[f]] = f.result()
                            on_each(futures[f], out[futures[f]])
                if isinstance(err, _openai().APIError):
                    raise self._failed(err) from None
                raise
        return out

    def _failed(self, err) -> ConfigError:
        status = getattr(err, "status_code", None)
        retried = status is None or status == 429 or status >= 500 or status in (408, 409)
        return ConfigError(
            "teacher.endpoint",
            self.cfg.model,
            f"failed on a request to {self.cfg.base_url}"
            + (f" after {self.cfg.max_retries} retries" if retried else "")
            + f" ({f'{status}: ' if status else ''}{first_line(err)}).",
            "every completion answered before it is cached: run the same command again (or resume=<run dir>) once "
            "the endpoint answers, and nothing is paid twice; raise teacher.endpoint.max_retries or "
            "teacher.endpoint.timeout for a flaky or slow endpoint, lower teacher.endpoint.concurrency for rate "
            "limits.",
        )

    def describe(self) -> str:
        return f"endpoint {self.cfg.model} at {self.cfg.base_url}"


def _logprobs(choice) -> list | None:
    content = getattr(choice.logprobs, "content", None) if choice.logprobs is not None else None
    if content is None:
        return None
    return [
        {
            "token": t.token,
            "logprob": t.logprob,
            "top_logprobs": [{"token": a.token, "logprob": a.logprob} for a in (t.top_logprobs or [])],
        }
        for t in content
    ]
