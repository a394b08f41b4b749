"""A small server speaking OpenAI's chat-completions API (POST /v1/chat/completions, GET /v1/models), for trying
``teacher=openai`` without a GPU, a key or a network, and for the tests (which start it on 127.0.0.1 at a free port).

It answers the embedded causal-LM task's prompts correctly by computing the answer (``synthetic.solve``), so the
dataset a black-box run writes can be checked; any other prompt gets ``answer_other``. It counts every request
(``calls``: each one's user prompt and the status it got) and can misbehave on purpose: fail the first requests
(``fail_first``: a list of 429, 500, ... or "timeout", one per request, in order), refuse everything after the first
``fail_after`` answers (400, as a dead endpoint would be at a kill), demand a key (``api_key``: 401 otherwise).

    python scripts/openai_stub_server.py --port 8000 --model stub       # then, in another shell:
    python -m distillkit task=causal_lm method=blackbox_sft teacher=openai \\
        teacher.endpoint.base_url=http://127.0.0.1:8000/v1 teacher.endpoint.model=stub teacher.endpoint.api_key_env=null
"""

# no `from __future__ import annotations`: FastAPI reads the handlers' annotations (Request) at runtime
import argparse
import asyncio
import re
import socket
import threading
import time
from dataclasses import dataclass, field


def solve(prompt: str) -> str | None:
    """The embedded causal-LM task's answer to ``prompt``, or None when it is not one of its prompts."""
    from distillkit.tasks.causal_lm.synthetic import solve as _solve

    return _solve(prompt)


@dataclass
class Behaviour:
    models: tuple[str, ...] = ("stub",)
    fail_first: list = field(default_factory=list)  # per request, in order: an HTTP status, or "timeout"
    timeout_s: float = 3.0  # how long a "timeout" request hangs before it answers anyway
    fail_after: int | None = None  # answer this many requests, then refuse every later one with 400
    api_key: str | None = None  # required as "Authorization: Bearer <key>" when set
    answer_other: str = "I do not know."
    retry_after_ms: int | None = 10  # sent with 429/5xx (the client then waits this long instead of its back-off)
    # method=critique_revise's rules: a first answer to a prompt of these embedded-task kinds is deliberately wrong
    # (WRONG), its critique says so and its revision is right; a revision for these kinds comes back empty (rejected)
    wrong_first: tuple[str, ...] = ()
    empty_revision: tuple[str, ...] = ()


WRONG = "I am not sure."
CRITIQUE = re.compile(
    r"Here is a request and an answer to it\.\nRequest: (.*)\nAnswer: (.*)\nCritique the answer", re.S
)
REVISE = re.compile(r"Request: (.*)\nAnswer: (.*)\nCritique: (.*)\nRewrite the answer", re.S)


def _kind(prompt: str) -> str | None:
    from distillkit.tasks.causal_lm.synthetic import parse

    parsed = parse(prompt)
    return parsed[0] if parsed else None


def answer(prompt: str, b: "Behaviour") -> str:
    """The stub's reply to a user turn: a critique or a revision request (method=critique_revise's default
    templates) by rule, else the embedded task's answer (deliberately wrong for ``wrong_first`` kinds)."""
    m = CRITIQUE.match(prompt)
    if m:
        request, given = m.groups()
        right = solve(request)
        return "No issues." if right is None or given == right else f"The answer is wrong: it should be {right}."
    m = REVISE.match(prompt)
    if m:
        request, given, _ = m.groups()
        if _kind(request) in b.empty_revision:
            return ""
        return solve(request) or given
    right = solve(prompt)
    if right is not None and _kind(prompt) in b.wrong_first:
        return WRONG
    return right or b.answer_other


@dataclass
class Call:
    prompt: str
    status: int  # the HTTP status it got; -1: it hung (a "timeout" of fail_first)


class StubServer:
    """The app on 127.0.0.1 in a thread (``start``/``stop``, or a ``with`` block); ``url`` is its /v1 root."""

    def __init__(self, behaviour: Behaviour | None = None, port: int | None = None):
        self.behaviour = behaviour or Behaviour()
        self.port = port or free_port()
        self.calls: list[Call] = []
        self.model_lists = 0
        self._lock = threading.Lock()
        self._server = None
        self._thread = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def answered(self) -> list[str]:
        """The user prompts of the requests that got an answer (200), in order."""
        return [c.prompt for c in self.calls if c.status == 200]

    def app(self):
        from fastapi import FastAPI, Request
        from fastapi.responses import JSONResponse

        app, b = FastAPI(), self.behaviour

        def refused(request: Request):
            if b.api_key is not None and request.headers.get("authorization") != f"Bearer {b.api_key}":
                return JSONResponse(
                    {"error": {"message": "Incorrect API key provided.", "type": "invalid_api_key"}}, 401
                )
            return None

        @app.get("/v1/models")
        async def models(request: Request):
            self.model_lists += 1
            return refused(request) or {
                "object": "list",
                "data": [{"id": m, "object": "model", "created": 0, "owned_by": "stub"} for m in b.models],
            }

        @app.post("/v1/chat/completions")
        async def chat(request: Request):
            body = await request.json()
            prompt = next((m["content"] for m in reversed(body["messages"]) if m["role"] == "user"), "")
            with self._lock:
                index = len(self.calls)
                answered = sum(c.status == 200 for c in self.calls)
                planned = b.fail_first[index] if index < len(b.fail_first) else None
                if refused(request) is not None:
                    status = 401
                elif b.fail_after is not None and answered >= b.fail_after:
                    status = 400
                else:  # -1: a request that hangs (the client gives up on it before its late answer)
                    status = 200 if planned is None else -1 if planned == "timeout" else int(planned)
                self.calls.append(Call(prompt, status))
            if status == -1:
                await asyncio.sleep(b.timeout_s)
            elif status != 200:
                headers = {"retry-after-ms": str(b.retry_after_ms)} if b.retry_after_ms and status >= 429 else {}
                return JSONResponse({"error": {"message": f"stub failure {status}", "type": "stub"}}, status, headers)
            if body.get("model") not in b.models:
                return JSONResponse({"error": {"message": f"model {body.get('model')!r} not found"}}, 404)
            return _completion(body, answer(prompt, b))

        return app

    def start(self) -> "StubServer":
        import uvicorn

        config = uvicorn.Config(
            self.app(), host="127.0.0.1", port=self.port, log_level="warning", lifespan="off", log_config=None
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="openai-stub", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"the stub server did not start on port {self.port}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)

    def __enter__(self) -> "StubServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _completion(body: dict, answer: str) -> dict:
    """A chat.completion object: ``n`` identical choices, cut at ``max_tokens`` whitespace tokens (finish_reason
    "length"), with made-up log-probabilities (−0.1 per token) when asked."""
    words = answer.split(" ")
    limit = body.get("max_tokens") or body.get("max_completion_tokens")
    cut = limit is not None and len(words) > limit
    text = " ".join(words[:limit] if cut else words)
    logprobs = None
    if body.get("logprobs"):
        k = body.get("top_logprobs") or 0
        logprobs = {
            "content": [
                {
                    "token": w,
                    "logprob": -0.1,
                    "bytes": list(w.encode()),
                    "top_logprobs": [{"token": w, "logprob": -0.1, "bytes": list(w.encode())}][:k],
                }
                for w in text.split(" ")
            ]
        }
    choices = [
        {
            "index": i,
            "message": {"role": "assistant", "content": text},
            "finish_reason": "length" if cut else "stop",
            "logprobs": logprobs,
        }
        for i in range(body.get("n") or 1)
    ]
    return {
        "id": "chatcmpl-stub",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body["model"],
        "choices": choices,
        "usage": {"prompt_tokens": 0, "completion_tokens": len(words), "total_tokens": len(words)},
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--model", action="append", help="a model id it lists (repeatable; default: stub)")
    parser.add_argument("--api-key", help="require this key (Authorization: Bearer ...)")
    args = parser.parse_args(argv)
    server = StubServer(Behaviour(models=tuple(args.model or ["stub"]), api_key=args.api_key), port=args.port)
    with server:
        print(f"serving {', '.join(server.behaviour.models)} at {server.url} (Ctrl-C stops)", flush=True)
        try:
            while True:
                time.sleep(1)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
