"""The classification task's side of black-box labelling (``method=blackbox_label``): the prompt a text teacher is
asked (``prompts``), how its answer becomes a class (``Verbaliser``) and a soft label (``soft_label``), the rows of the
labelled dataset (``row``: the task's own local-file format, so it reads back with ``data=local``), and the
``generated`` data view a training stage reads (``view``).

The verbaliser maps class name → words (default: each class's own name). Matching is case-insensitive:

- ``exact``: the answer, trimmed of surrounding spaces, quotes and final punctuation (``.,;:!?"'``), equals a word;
- ``first``: the earliest position in the answer where a word occurs at word boundaries wins; at one position the
  longest word (so "not good" beats "good" if both are words); an answer where no word occurs maps to no class.

A word claimed by two classes is refused before the run (``config.blackbox.check_verbaliser``). Soft labels read
the first answer position's top log-probabilities: a top token (trimmed, lower-cased) counts for class c when it is
one of c's words or a prefix of c's words and of no other class's (a tokenizer may split "positive" into "pos" +
"itive"); tokens that fit no class, or several, are ignored. p(c) = Σ exp(logprob) of its tokens, ``floor`` for a
class no token counts for, renormalised over the classes. No token counting for any class: no soft label (the row
keeps its hard one).
"""

from __future__ import annotations

import json
import math
import re

STRIP = " \t\n\"'`.,;:!?"


class Verbaliser:
    """Class id ↔ words (lower-cased), and the matching rules of the module docstring."""

    def __init__(self, label_names: list[str], mapping: dict[str, list[str]] | None = None, match: str = "first"):
        self.label_names, self.match = list(label_names), match
        mapping = mapping or {name: [name] for name in label_names}
        self.words: list[list[str]] = [[w.strip().lower() for w in mapping.get(name, [])] for name in label_names]
        pattern = sorted({w for ws in self.words for w in ws}, key=len, reverse=True)  # longest first
        self._regex = re.compile(
            "|".join(rf"(?<![\w]){re.escape(w)}(?![\w])" for w in pattern) if pattern else r"(?!x)x"
        )
        self._class_of = {w: c for c, ws in enumerate(self.words) for w in ws}

    @classmethod
    def checked(cls, label_names: list[str], mapping: dict | None, match: str) -> Verbaliser:
        """A verbaliser for the task's classes, its mapping checked first (``config.blackbox.check_verbaliser``)."""
        from distillkit.config.blackbox import check_verbaliser

        check_verbaliser(label_names, mapping)
        return cls(label_names, {str(k): list(v) for k, v in mapping.items()} if mapping else None, match)

    def classify(self, answer: str) -> int | None:
        """The class id ``answer`` names under the matching rule, or None (rejected)."""
        text = answer.strip(STRIP).lower()
        if self.match == "exact":
            return self._class_of.get(text)
        found = self._regex.search(answer.lower())
        return None if found is None else self._class_of[found.group(0)]

    def token_class(self, token: str) -> int | None:
        """The class a top-log-prob token counts for (a word, or a prefix of one class's words only), or None."""
        t = token.strip(STRIP).lower()
        if not t:
            return None
        if t in self._class_of:
            return self._class_of[t]
        fits = {c for c, ws in enumerate(self.words) if any(w.startswith(t) for w in ws)}
        return fits.pop() if len(fits) == 1 else None


def soft_label(logprobs: list | None, verbaliser: Verbaliser, floor: float) -> list[float] | None:
    """The distribution over classes from the first answer position's top log-probabilities (``logprobs``: a
    completion's [{"token", "logprob", "top_logprobs": [{"token", "logprob"}]}]); None without any that count."""
    if not logprobs:
        return None
    first = logprobs[0]
    top = first.get("top_logprobs") or [{"token": first["token"], "logprob": first["logprob"]}]
    mass = [0.0] * len(verbaliser.label_names)
    counted = False
    for alt in top:
        c = verbaliser.token_class(alt["token"])
        if c is not None and alt["logprob"] is not None and math.isfinite(alt["logprob"]):
            mass[c] += math.exp(alt["logprob"])
            counted = True
    if not counted:
        return None
    mass = [m if m > 0 else floor for m in mass]
    total = sum(mass)
    return [m / total for m in mass]


class Labeller:
    """The task's labelling pipeline for a ``recipe.stage.LabelSpec`` (``Task.labeller``)."""

    def __init__(self, label_names: list[str], spec):
        self.spec, self.label_names = spec, list(label_names)
        self.verbaliser = Verbaliser.checked(self.label_names, spec.verbaliser, spec.match)

    def prompts(self, split, system_prompt: str | None) -> list[list[dict]]:
        return prompts(split, self.spec.template, system_prompt, self.label_names)

    def read(self, completion) -> tuple[int | None, list[float] | None]:
        label = self.verbaliser.classify(completion.text)
        if label is None or not self.spec.soft:
            return label, None
        return label, soft_label(completion.logprobs, self.verbaliser, self.spec.floor)

    def vote(self, completions) -> tuple[int | None, list[float] | None, str, int]:
        """(label, soft label, the answer kept, valid votes) from a text's answers (``teacher.sampling.n`` of them):
        the class most answers name (a tie: the one named first); answers naming none do not vote, and with none
        left the text has no label. The soft label, with ``spec.soft``: the mean of the answers' top-log-prob
        distributions where they gave them, else (several answers, no log-probs) the share of the votes each
        class got, ``floor`` for a class none named, renormalised; None with a single answer and no log-probs."""
        reads = [self.read(c) for c in completions]
        named = [(label, dist, c.text) for (label, dist), c in zip(reads, completions) if label is not None]
        if not named:
            return None, None, completions[0].text, 0
        counts: dict[int, int] = {}
        for label, _, _ in named:
            counts[label] = counts.get(label, 0) + 1
        winner = max(counts, key=lambda c: (counts[c], -next(i for i, n in enumerate(named) if n[0] == c)))
        answer = next(text for label, _, text in named if label == winner)
        soft = None
        if self.spec.soft:
            dists = [d for _, d, _ in named if d is not None]
            if dists:
                soft = [sum(col) / len(dists) for col in zip(*dists)]
            elif len(completions) > 1:
                mass = [counts.get(c, 0) / len(named) or self.spec.floor for c in range(len(self.label_names))]
                soft = [m / sum(mass) for m in mass]
        return winner, soft, answer, len(named)

    def row(self, example: dict, label: int, soft: list[float] | None, answer: str) -> dict:
        return row(example, label, soft, answer)

    def reuse_overrides(self, folder: str, cfg) -> str:
        names = ",".join(json.dumps(n) for n in self.label_names)
        return reuse_overrides(folder, cfg) + f" 'data.label_names=[{names}]'"

    def describe(self) -> dict:
        """The card's account of the prompt and the verbaliser."""
        return {
            "template": self.spec.template,
            "verbaliser": {n: w for n, w in zip(self.label_names, self.verbaliser.words)},
            "match": self.spec.match,
            "soft": self.spec.soft,
            "floor": self.spec.floor if self.spec.soft else None,
        }


def reuse_overrides(folder: str, cfg) -> str:
    """The overrides that train on a labelled dataset in ``folder`` again (its card's command)."""
    pair = " data.text_pair_field=text_pair" if cfg.data.text_pair_field else ""
    return f"data=local data.train_file={folder}/train.jsonl data.eval_file={folder}/eval.jsonl{pair}"


def prompts(split, template: str, system_prompt: str | None, label_names: list[str]) -> list[list[dict]]:
    """One conversation per row of ``split``: ``template`` filled with {labels}, {text} (and {text_pair}), as a user
    turn after a system turn when ``system_prompt`` is given."""
    head = [{"role": "system", "content": system_prompt}] if system_prompt else []
    labels = ", ".join(label_names)
    pairs = split["text_pair"] if "text_pair" in split.column_names else [""] * len(split)
    return [
        head + [{"role": "user", "content": template.format_map(_Fill(labels=labels, text=t, text_pair=p))}]
        for t, p in zip(split["text"], pairs)
    ]


class _Fill(dict):
    def __missing__(self, key):  # a brace the template means literally: left as it was
        return "{" + key + "}"


def row(example: dict, label: int, soft: list[float] | None, answer: str) -> dict:
    """A labelled row in the task's local-file format (``text``, ``label``, ``text_pair`` for pairs), the soft label
    when there is one, and the teacher's answer (kept for inspection; the reader ignores it)."""
    out = {"text": example["text"]}
    if example.get("text_pair") is not None:
        out["text_pair"] = example["text_pair"]
    out["label"] = label
    if soft is not None:
        out["soft"] = [round(p, 6) for p in soft]
    out["answer"] = answer
    return out


def view(path, tokenizer, cfg, num_labels: int):
    """The labelled dataset at ``path`` (train.jsonl), tokenised as the training split is (``idx`` its row order),
    with a ``soft`` column: the teacher's distribution, one-hot on the hard label for a row without one (so every
    batch has it; the loss term reads it only where the method uses soft labels)."""
    import datasets

    rows = [json.loads(line) for line in open(path, encoding="utf-8") if line.strip()]
    pairs = [r.get("text_pair", "") for r in rows] if any("text_pair" in r for r in rows) else None
    enc = tokenizer([r["text"] for r in rows], pairs, truncation=True, max_length=cfg.data.max_length)
    soft = [r.get("soft") or [1.0 if c == r["label"] else 0.0 for c in range(num_labels)] for r in rows]
    features = {**enc, "labels": [r["label"] for r in rows], "idx": list(range(len(rows))), "soft": soft}
    data = datasets.Dataset.from_dict(features)
    return data.cast_column("soft", datasets.Sequence(datasets.Value("float32")))
