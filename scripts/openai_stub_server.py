"""A small server speaking OpenAI's chat-completions API (POST /v1/chat/completions, GET /v1/models), for trying
``teacher=openai`` without a GPU, a key or a network, and for the tests (which start it on 127.0.0.1 at a free port).

It answers the embedded causal-LM task's prompts correctly by computing the answer (``synthetic.solve``), so the
dataset a black-box run writes can be checked, and follows a few rules for the other pipelines (``respond``:
self_instruct proposals, step-by-step explanations, follow-up turns). A classification prompt (a ``Text: ...`` line
holding a text of the embedded classification task, as ``method=blackbox_label``'s template writes it) gets the
text's clean class name, except for an ``error_rate`` share of texts (another class's name) and a ``refuse_rate``
share (an answer naming no class), each drawn per text by a hash, so every request for a text gets the same answer;
with ``top_logprobs`` the first answer token's alternatives are the class names (``classification_top``). Any other
prompt gets ``answer_other``. It counts every request (``calls``: each one's user prompt and the status it got) and
can misbehave on purpose: fail the first requests (``fail_first``: a list of 429, 500, ... or "timeout", one per
request, in order), refuse everything after the first ``fail_after`` answers (400, as a dead endpoint would be at a
kill), demand a key (``api_key``: 401 otherwise). ``latency_s`` makes every chat request wait that long (asyncio, so
requests in flight overlap as with a real endpoint).

With ``--model-path DIR`` a real local causal LM answers every chat request instead of the rules (``chat_model.py``:
its chat template, greedy or sampled, ``n``, ``max_tokens``, top log-probs, requests batched), as vLLM would serve
it: ``scripts/bench_real.py --blackbox`` serves the real tier's teacher this way.

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
from pathlib import Path


def solve(prompt: str) -> str | None:
    """The embedded causal-LM task's answer to ``prompt``, or None when it is not one of its prompts."""
    from distillkit.tasks.causal_lm.synthetic import solve as _solve

    return _solve(prompt)


# a self_instruct proposal request (distillkit/stages/generation/pipelines.py)
PROPOSAL_OPENING = "Come up with a new task"


def respond(messages: list[dict], other: str, proposal: str | None = None) -> str:
    """The stub's rule-based answer to a conversation (its last user turn, read with the turns before it):

    - a self_instruct proposal request (``Come up with a new task ...`` with ``Task N:`` examples): ``propose``
      (``proposal`` instead, when given);
    - a system turn asking for steps (``step by step``): an explanation of the embedded task's answer, ending on the
      line ``Final answer: <answer>``;
    - one of the embedded task's prompts: its answer (``solve``);
    - a follow-up (an unsolvable user turn after a solvable one): the earlier answer again, in words ("Please repeat
      the answer only." gets the bare answer);
    - anything else: ``other``."""
    users = [m["content"] for m in messages if m["role"] == "user"]
    prompt = users[-1] if users else ""
    if prompt.startswith(PROPOSAL_OPENING):
        return propose(prompt) if proposal is None else proposal
    answer = solve(prompt)
    system = " ".join(m["content"] for m in messages if m["role"] == "system").lower()
    if answer is not None and "step by step" in system:
        return f"Step by step, it gives {answer}.\nFinal answer: {answer}"
    if answer is not None:
        return answer
    earlier = next((a for a in map(solve, reversed(users[:-1])) if a is not None), None)
    if earlier is not None:
        return earlier if "repeat the answer" in prompt.lower() else f"I checked it again: the answer is {earlier}."
    return other


def propose(request: str) -> str:
    """A new task for a self_instruct proposal request, by a rule on the request's hash (so the same request gets the
    same proposal, as a cache would): 1 in 10 blank, 1 in 10 a copy of the first example (a near-duplicate), 1 in 10
    a task a text model cannot do ("Draw a picture ..."), else a new add or sort task of the embedded task's
    templates (answerable by ``solve``)."""
    import hashlib
    import random
    import re

    from distillkit.tasks.causal_lm.synthetic import TEMPLATES

    h = int(hashlib.sha256(request.encode()).hexdigest(), 16)
    examples = re.findall(r"^Task \d+: (.+)$", request, flags=re.MULTILINE)
    rule = h % 10
    if rule == 0:
        return ""
    if rule == 1 and examples:
        return f"Task {len(examples) + 1}: {examples[0]}"
    if rule == 2:
        return "Draw a picture of a cat sitting on a chair."
    rng = random.Random(h)
    if rng.random() < 0.5:
        template = rng.choice([t for _, t in TEMPLATES["add"]])
        return template.format(a=rng.randint(0, 9), b=rng.randint(0, 9))
    template = rng.choice([t for group, t in TEMPLATES["sort"] if group == "num"])
    return template.format(items=" ".join(str(rng.randint(0, 9)) for _ in range(rng.randint(3, 6))))


@dataclass
class Behaviour:
    models: tuple[str, ...] = ("stub",)
    fail_first: list = field(default_factory=list)  # per request, in order: an HTTP status, or "timeout"
    timeout_s: float = 3.0  # how long a "timeout" request hangs before it answers anyway
    fail_after: int | None = None  # answer this many requests, then refuse every later one with 400
    api_key: str | None = None  # required as "Authorization: Bearer <key>" when set
    answer_other: str = "I do not know."
    proposal: str | None = None  # the answer to every self_instruct proposal request (None: ``propose``'s rule)
    retry_after_ms: int | None = 10  # sent with 429/5xx (the client then waits this long instead of its back-off)
    # the embedded classification task (data=synthetic): its texts' clean labels, from this generator seed
    classify_seed: int = 0
    error_rate: float = 0.0  # share of texts answered with another class (the next one in class order)
    refuse_rate: float = 0.0  # share of texts answered with no class at all
    confidence: float = 0.7  # the answered class's probability in the top log-probs; the rest halves class by class
    # method=critique_revise's rules: a first answer to a prompt of these embedded-task kinds is deliberately wrong
    # (WRONG), its critique says so and its revision is right; a revision for these kinds comes back empty (rejected)
    wrong_first: tuple[str, ...] = ()
    empty_revision: tuple[str, ...] = ()
    latency_s: float = 0.0  # every chat request waits this long before it answers (a real endpoint's latency)
    # a real model instead of the rules: a local HF causal LM directory answers every chat request (chat_model.py),
    # in batches of up to model_batch requests that arrive together
    model_path: str | None = None
    model_batch: int = 8


WRONG = "I am not sure."
CRITIQUE = re.compile(
    r"Here is a request and an answer to it\.\nRequest: (.*)\nAnswer: (.*)\nCritique the answer", re.S
)
REVISE = re.compile(r"Request: (.*)\nAnswer: (.*)\nCritique: (.*)\nRewrite the answer", re.S)


def _kind(prompt: str) -> str | None:
    from distillkit.tasks.causal_lm.synthetic import parse

    parsed = parse(prompt)
    return parsed[0] if parsed else None


def answer(messages: list[dict], b: "Behaviour") -> str:
    """The stub's reply to a conversation: a critique or a revision request (method=critique_revise's default
    templates) by rule, a deliberately wrong first answer for the embedded task's ``wrong_first`` kinds, else
    ``respond``'s rules (self_instruct proposals, explanations, follow-ups, the embedded task's answer)."""
    prompt = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
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
    if solve(prompt) is not None and _kind(prompt) in b.wrong_first:
        return WRONG
    return respond(messages, b.answer_other, b.proposal)


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
        self.model = None  # chat_model.ChatModel when behaviour.model_path is set (loaded by start)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def answered(self) -> list[str]:
        """The user prompts of the requests that got an answer (200), in order."""
        return [c.prompt for c in self.calls if c.status == 200]

    label_names: tuple = ()

    def classify(self, prompt: str) -> str | None:
        """The answer to a classification prompt about one of the embedded task's texts (None: not one)."""
        text = next((line[len("Text:") :].strip() for line in prompt.splitlines() if line.startswith("Text:")), None)
        if text is None:
            return None
        with self._lock:
            if not hasattr(self, "_labels"):
                from distillkit.tasks.classification.synthetic import LABEL_NAMES, generate

                splits = generate(seed=self.behaviour.classify_seed, n_train=20000, n_eval=2000, label_noise=0.0)
                self._labels = {r["text"]: r["label"] for r in splits.train + splits.eval}
                self.label_names = tuple(LABEL_NAMES)
        label = self._labels.get(text)
        if label is None:
            return None
        b, draw = self.behaviour, _draw(text)
        if draw < b.refuse_rate:
            return "I cannot tell."
        if draw < b.refuse_rate + b.error_rate:
            label = (label + 1) % len(self.label_names)
        return self.label_names[label]

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
            if b.latency_s > 0:
                await asyncio.sleep(b.latency_s)
            if status == -1:
                await asyncio.sleep(b.timeout_s)
            elif status != 200:
                headers = {"retry-after-ms": str(b.retry_after_ms)} if b.retry_after_ms and status >= 429 else {}
                return JSONResponse({"error": {"message": f"stub failure {status}", "type": "stub"}}, status, headers)
            if body.get("model") not in b.models:
                return JSONResponse({"error": {"message": f"model {body.get('model')!r} not found"}}, 404)
            if self.model is not None:
                try:
                    choices = await self.model.complete(body)
                except Exception as err:  # a request the model cannot answer (a prompt too long, ...): a 500
                    return JSONResponse({"error": {"message": f"model failure: {err}", "type": "server"}}, 500)
                lp = [c.logprobs and {"content": c.logprobs} for c in choices]
                return _envelope(body, [(c.text, c.finish_reason, p) for c, p in zip(choices, lp)])
            label = self.classify(prompt)
            if label is not None:
                return _completion(body, label, classification_top(label, self.label_names, b.confidence))
            return _completion(body, answer(body["messages"], b))

        return app

    def start(self) -> "StubServer":
        import uvicorn

        if self.behaviour.model_path is not None and self.model is None:
            if __package__:  # imported as scripts.openai_stub_server (the tests)
                from .chat_model import ChatModel
            else:  # run as a script, or imported with scripts/ on the path (the benchmarks)
                from chat_model import ChatModel

            self.model = ChatModel(self.behaviour.model_path, max_batch=self.behaviour.model_batch)

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
        if self.model is not None:
            self.model.close()

    def __enter__(self) -> "StubServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _draw(text: str) -> float:
    """A number in [0, 1) fixed by ``text`` (which texts get a wrong or no class)."""
    import hashlib

    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") / 2**64


def classification_top(answer: str, label_names, confidence: float) -> list[tuple[str, float]]:
    """The first answer token's alternatives, most likely first: (``answer``, log ``confidence``), then the other
    class names in class order with probability (1 − confidence)/2, /4, ... (a class name is one token here)."""
    import math

    if answer not in label_names:  # a refusal: its first word is sure, no class among the alternatives
        return [(answer.split(" ")[0], math.log(0.9))]
    others = [n for n in label_names if n != answer]
    return [(answer, math.log(confidence))] + [
        (n, math.log((1 - confidence) / 2 ** (i + 1))) for i, n in enumerate(others)
    ]


def _completion(body: dict, answer: str, first_top: list | None = None) -> dict:
    """A chat.completion object: ``n`` identical choices, cut at ``max_tokens`` whitespace tokens (finish_reason
    "length"), with made-up log-probabilities (−0.1 per token) when asked; ``first_top``: the first token's
    alternatives [(token, logprob)] instead (the classification rule's)."""
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
        if first_top and logprobs["content"]:  # the first position as the classification rule shapes it
            first = logprobs["content"][0]
            first["logprob"] = first_top[0][1]
            first["top_logprobs"] = [{"token": t, "logprob": lp, "bytes": list(t.encode())} for t, lp in first_top][:k]
    return _envelope(body, [(text, "length" if cut else "stop", logprobs)] * (body.get("n") or 1))


def _envelope(body: dict, choices: list[tuple]) -> dict:
    """A chat.completion object of ``choices``: (text, finish_reason, logprobs or None) each."""
    words = sum(len(text.split()) for text, _, _ in choices)
    return {
        "id": "chatcmpl-stub",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body["model"],
        "choices": [
            {
                "index": i,
                "message": {"role": "assistant", "content": text},
                "finish_reason": finish,
                "logprobs": logprobs,
            }
            for i, (text, finish, logprobs) in enumerate(choices)
        ],
        "usage": {"prompt_tokens": 0, "completion_tokens": words, "total_tokens": words},
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
    parser.add_argument("--latency", type=float, default=0.0, help="seconds every chat request waits (default 0)")
    parser.add_argument("--model-path", help="a local HF causal LM directory that answers every request (no rules)")
    parser.add_argument("--batch", type=int, default=8, help="--model-path: requests generated together (default 8)")
    args = parser.parse_args(argv)
    default = Path(args.model_path).name if args.model_path else "stub"
    behaviour = Behaviour(
        models=tuple(args.model or [default]),
        api_key=args.api_key,
        latency_s=args.latency,
        model_path=args.model_path,
        model_batch=args.batch,
    )
    server = StubServer(behaviour, port=args.port)
    with server:
        print(f"serving {', '.join(server.behaviour.models)} at {server.url} (Ctrl-C stops)", flush=True)
        try:
            while True:
                time.sleep(1)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
