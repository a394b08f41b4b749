"""A deterministic checker for method=star's tests, named in the config as ``tests.star_checker:by_kind``: it accepts
an answer by the embedded task's kind of its prompt alone (look-ups and sorts), whatever the tiny student wrote, so
which rows a round keeps is known in advance. ``CALLS`` records every call (prompt, answer, reference, accepted)."""

from __future__ import annotations

from distillkit.tasks.causal_lm.synthetic import parse

ACCEPTED = ("lookup", "sort")
CALLS: list[tuple[str, str, str, bool]] = []
NOT_A_FUNCTION = 42  # for the pre-flight error: names something that cannot be called


def kind(prompt: str) -> str | None:
    parsed = parse(prompt)
    return parsed[0] if parsed else None


def by_kind(prompt: str, answer: str, reference: str) -> bool:
    accepted = kind(prompt) in ACCEPTED
    CALLS.append((prompt, answer, reference, accepted))
    return accepted
