"""Grey-box targets for ``method=blackbox_sft method.kd_weight>0``: the log-probabilities an endpoint returned with
each answer (``teacher.sampling.logprobs=true``, ``top_logprobs=k``) as top-k targets of a forward-KL term at every
response position, the same k + 1 buckets as the white-box top-k cache (``losses.token.forward_kl_topk``): the
teacher's alternatives and their log-probs, the rest of its mass in one tail bucket.

An endpoint names tokens by their text. They are the student's tokens only when both share a tokenizer: the student
then learns the answer as the tokens the endpoint wrote (``teacher_token_ids``; the tokenizer's own split of the text
can differ), and a row is **aligned** when the endpoint's tokens, in order, are the decoded label tokens of its
response. An aligned row's positions carry the teacher's alternatives (each mapped to the student's id of that text,
``reverse_vocab``; one the student's vocabulary lacks is left to the tail); the positions after the endpoint's tokens
(the end-of-sequence token the student learns to write) and every position of a row that is not aligned are one-hot
on the label, where the KD term equals NTP.
Columns (one row per example, one entry per response position, in order): ``topk_ids`` (k + 1 ids: the chosen token
and its alternatives; an empty slot repeats the chosen id), ``topk_logp`` (their log-probs, −inf for an empty slot),
``topk_tail`` (log(1 − Σ p), −inf when they hold all the mass). The log-probs are the endpoint's at temperature 1."""

from __future__ import annotations

import math

from distillkit.losses import IGNORE_INDEX

NONE = float("-inf")  # the log-prob of an empty slot: no mass


def reverse_vocab(tokenizer) -> dict[str, int]:
    """Each token's text (``decode`` of the one id) → its id; the lowest id where several decode alike."""
    out: dict[str, int] = {}
    for i in range(len(tokenizer)):
        out.setdefault(tokenizer.decode([i]), i)
    return out


def teacher_token_ids(content, text: str, vocab: dict[str, int]) -> list[int] | None:
    """The student's ids of the tokens the endpoint wrote, when each is one of the student's tokens and together they
    spell the answer ``text`` as the row keeps it; else None (the answer is split by the student's tokenizer, and the
    row is aligned only if that split is the endpoint's)."""
    tokens = [c["token"] for c in content or []]
    ids = [vocab.get(t) for t in tokens]
    if not tokens or None in ids or "".join(tokens) != text:
        return None
    return ids


def response_targets(labels) -> list[int]:
    """The ids the student predicts at the response positions, in order (the labels after the first position that
    are not ignored: logits[t] predicts labels[t + 1])."""
    return [int(y) for y in list(labels)[1:] if int(y) != IGNORE_INDEX]


def row_targets(
    content, targets: list[int], decode, vocab: dict[str, int], slots: int
) -> tuple[list, list, list, bool]:
    """(ids, log-probs, tails, aligned) of one row: per position of ``targets`` ``slots`` ids and log-probs and a
    tail. ``content``: the endpoint's tokens ([{"token", "logprob", "top_logprobs": [{"token", "logprob"}]}], or
    None); ``decode``: id → text."""
    tokens = [c["token"] for c in content or []]
    aligned = bool(tokens) and len(tokens) <= len(targets) and all(decode(y) == t for y, t in zip(targets, tokens))
    ids, logps, tails = [], [], []
    for pos, y in enumerate(targets):
        if aligned and pos < len(tokens):
            entry, pairs = content[pos], {y: float(content[pos]["logprob"])}  # the chosen token, then its rivals
            for alt in sorted(entry.get("top_logprobs") or [], key=lambda a: -float(a["logprob"])):
                i = vocab.get(alt["token"])
                if i is not None and i not in pairs and len(pairs) < slots:
                    pairs[i] = float(alt["logprob"])
        else:
            pairs = {y: 0.0}
        mass = sum(math.exp(lp) for lp in pairs.values())
        tail = math.log(1.0 - mass) if mass < 1.0 - 1e-6 else NONE
        # empty slots repeat the chosen id at −inf: no teacher mass (their KL term is 0), and the student's tail
        # leaves out the kept ids however often they appear, so the buckets are exactly the kept tokens + the rest
        empty = slots - len(pairs)
        ids.append(list(pairs) + [y] * empty)
        logps.append(list(pairs.values()) + [NONE] * empty)
        tails.append(tail)
    return ids, logps, tails, aligned


def slots_of(rows: list[dict]) -> int:
    """Target slots per position: the most alternatives any returned token has, plus the chosen token."""
    return 1 + max((len(c.get("top_logprobs") or []) for r in rows for c in r.get("logprobs") or []), default=0)


def add_targets(encoded, rows: list[dict] | None, tokenizer, slots: int, vocab: dict[str, int] | None = None):
    """``encoded`` (the tokenised view, row for row with ``rows``, the generated rows with their ``logprobs``; None:
    rows with no teacher log-probs, e.g. the dataset's own with ``keep_original``) with the three target columns of
    ``slots`` entries per position; returns (dataset, rows aligned)."""
    vocab = reverse_vocab(tokenizer) if vocab is None and rows is not None else vocab
    cache: dict[int, str] = {}

    def decode(i: int) -> str:
        if i not in cache:
            cache[i] = tokenizer.decode([i])
        return cache[i]

    columns: dict[str, list] = {"topk_ids": [], "topk_logp": [], "topk_tail": []}
    aligned = 0
    for i, labels in enumerate(encoded["labels"]):
        content = rows[i].get("logprobs") if rows is not None else None
        ids, logps, tails, ok = row_targets(content, response_targets(labels), decode, vocab or {}, slots)
        aligned += ok
        columns["topk_ids"].append(ids)
        columns["topk_logp"].append(logps)
        columns["topk_tail"].append(tails)
    for name, values in columns.items():
        encoded = encoded.add_column(name, values)
    return encoded, aligned


def report_alignment(stage: str, aligned: int, rows: int) -> None:
    """Log how many rows carry the teacher's log-probs; warn when under half do (the endpoint's tokens are not the
    student's: another tokenizer, or answers trimmed after they were written)."""
    import logging

    log = logging.getLogger("distillkit")
    log.info("[%s] grey-box targets: %d of %d rows carry the teacher's top log-probs", stage, aligned, rows)
    if rows and aligned < rows / 2:
        log.warning(
            "[%s] only %d of %d generated rows have the endpoint's tokens as their response tokens, so the KD term "
            "(method.kd_weight) is plain NTP on the rest: the endpoint's model probably does not share the "
            "student's tokenizer. Use a student of the teacher's family (student=hub student.path=...), or "
            "method.kd_weight=0.",
            stage,
            aligned,
            rows,
        )
