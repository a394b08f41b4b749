"""The causal-LM task's side of the self-improvement pipelines (``stages/generation/self_improve.py``): what a
completion's final answer is, whether it is correct (the task's own checker, or ``method.checker``), the rationalisation
prompt of STaR (Zelikman et al. 2022) and the critique and revision prompts of Constitutional AI's supervised stage (Bai
et al. 2022). Plain text in, conversations out: nothing here loads a model."""

from __future__ import annotations

import copy
import importlib
from collections.abc import Callable

from distillkit.tasks.causal_lm.generated import SYSTEM, USER
from distillkit.tasks.causal_lm.metrics import normalize

Checker = Callable[[str, str, str], bool]  # (prompt, answer, reference) -> correct


def references(task_data) -> list[str]:
    """The training split's reference answers, one per prompt (a chat row's: its last turn)."""
    train = task_data.train
    if "messages" in train.column_names:
        return [turns[-1]["content"] for turns in train["messages"]]
    return list(train["response"])


def final_answer(text: str, marker: str | None) -> str:
    """The final answer of a completion: what follows the last ``marker`` (e.g. "Answer:"); without a marker in the
    text, its last non-empty line (a completion that is only an answer is its own answer)."""
    if marker and marker in text:
        return text.rsplit(marker, 1)[1].strip()
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


def task_checker(prompt: str, answer: str, reference: str) -> bool:
    """The embedded task's checker: the answer recomputed from the prompt (``synthetic.solve``) when the prompt is
    one of its own, else the reference; compared after ``metrics.normalize`` (ends stripped, spaces collapsed)."""
    from distillkit.tasks.causal_lm.synthetic import solve

    expected = solve(prompt.strip())
    return normalize(answer) == normalize(expected if expected is not None else reference)


def load_checker(spec: str | None) -> Checker:
    """``method.checker`` (``module:function``; checked importable when the config was) or the task's own."""
    if spec is None:
        return task_checker
    module, _, function = spec.partition(":")
    return getattr(importlib.import_module(module), function)


def last_user(conversation: list[dict]) -> int:
    return max(i for i, m in enumerate(conversation) if m["role"] == USER)


def with_user(conversation: list[dict], text: str) -> list[dict]:
    """``conversation`` with its last user turn's text replaced by ``text`` (a copy)."""
    out = copy.deepcopy(conversation)
    out[last_user(out)]["content"] = text
    return out


def rationalization(conversation: list[dict], answer: str, hint_template: str) -> list[dict]:
    """STaR's rationalisation prompt: the conversation with its (last) user turn rewritten by ``hint_template``
    (``{prompt}``: the turn's text, ``{answer}``: the correct answer), so the model explains an answer it is given.
    The hint lives only here: the row kept for training is built from the original conversation."""
    prompt = conversation[last_user(conversation)]["content"]
    return with_user(conversation, hint_template.format(prompt=prompt, answer=answer))


def critique(conversation: list[dict], answer: str, principles: list[str], template: str) -> list[dict]:
    """The request to critique ``answer`` to the conversation's last user turn against ``principles``: one user turn
    (after the conversation's system turn, when it has one)."""
    system = [m for m in conversation if m["role"] == SYSTEM]
    listed = "\n".join(f"{i}. {p}" for i, p in enumerate(principles, 1))
    prompt = conversation[last_user(conversation)]["content"]
    return system + [{"role": USER, "content": template.format(prompt=prompt, answer=answer, principles=listed)}]


def revision(conversation: list[dict], answer: str, critique_text: str, template: str) -> list[dict]:
    """The request to revise ``answer`` given its critique: one user turn (after the system turn, when any)."""
    system = [m for m in conversation if m["role"] == SYSTEM]
    prompt = conversation[last_user(conversation)]["content"]
    text = template.format(prompt=prompt, answer=answer, critique=critique_text)
    return system + [{"role": USER, "content": text}]
