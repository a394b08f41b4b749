"""Deterministic synthetic instruction-following task: the embedded, offline dataset for distilling causal LMs.

Each example is {"prompt": str, "response": str, "kind": str}; a model reads the prompt (followed by
`SEP`, see `to_text`) and must produce the response exactly. Five kinds, each phrased by 3-5 templates, so
the model has to read the instruction and cannot key on the payload's shape alone:
  * add     "What is 7 + 8?" -> "15": single-digit operands (100 sums to memorise; two-digit addition was not
            learnt by 0.6-4.5M-parameter decoders in minutes on a CPU, so it is left out; `check` still
            accepts operands of up to 2 digits);
  * sort    "Sort in ascending order: 7 2 9 2" -> "2 2 7 9" (3-6 digits, repeats allowed), or
            "Sort these words alphabetically: soup, cozy, album" -> "album cozy soup" (3-5 distinct words);
  * reverse "Reverse the list: pasta dull ferry" -> "ferry dull pasta" (3-5 distinct words);
  * lookup  facts of the review task's lexicon (`synthetic_lexicon`): the topic of a topic noun or topic
            adjective ("What topic is the word 'risotto' about?" -> "food"), the sentiment of an adjective
            ("Is 'stale' positive or negative?" -> "negative"), the domain of a noun ("Is 'staff'
            hospitality or media?" -> "hospitality"); 376 facts in all, a memorisation load (but a small one:
            with a 1000-token BPE vocabulary even a 1x32 decoder learns them all within ~2 epochs, see
            scripts/explore_lm_task.py);
  * count   "Count the words: cast, soup, dull, spa" -> "4" (2-9 items).
List words come from a pool of 93 single lexicon words of 3-6 letters. Lists in prompts are joined by " " or
", " at random; responses are canonical (items joined by one space, numbers in plain digits, at most 6
whitespace tokens), so exact match is meaningful. Kinds are mixed in fixed proportions (`KIND_WEIGHTS`) by
shuffled blocks, so every prefix of a split is balanced; look-ups weigh most (40 %), add least (10 %).

Eval is drawn first from a stream of its own (so it does not depend on n_train) and has no duplicate prompts;
train is drawn next and redraws any example whose prompt is an eval prompt. Look-up facts are dealt in
shuffled rounds, so with the default sizes every fact occurs in train several times, under phrasings other
than its eval prompt's: the eval look-ups test recall of memorised facts under a held-out phrasing.
`check(example)` parses the prompt against the templates and recomputes the answer without looking at the
response. All randomness goes through `random.Random` streams seeded by strings (stable across machines).
"""

from __future__ import annotations

import numbers
import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from distillkit.config.data import LM_SYNTHETIC_KINDS
from distillkit.tasks.lexicon import (
    _GENERIC_ADJ,
    _GENERIC_NOUNS,
    _NOUNS,
    _TOPIC_ADJ,
    DOMAINS,
)

__all__ = [
    "KINDS",
    "KIND_WEIGHTS",
    "SEP",
    "TEMPLATES",
    "LMTaskData",
    "check",
    "generate",
    "parse",
    "solve",
    "texts_for_tokenizer",
    "to_text",
]

KINDS: tuple[str, ...] = LM_SYNTHETIC_KINDS  # named in the config schema, which checks data.lm_synthetic.kinds
# Examples of each kind per block of 20 (shuffled): 10% add, 20% sort, 15% reverse, 40% lookup, 15% count.
KIND_WEIGHTS: dict[str, int] = {"add": 2, "sort": 4, "reverse": 3, "lookup": 8, "count": 3}
SEP = "\n"  # between prompt and response in a training text (`to_text`)

# kind -> ((group, template), ...); the group decides how the payload is answered.
TEMPLATES: dict[str, tuple[tuple[str, str], ...]] = {
    "add": (
        ("sum", "What is {a} + {b}?"),
        ("sum", "Add {a} and {b}."),
        ("sum", "What is the sum of {a} and {b}?"),
        ("sum", "{a} plus {b} equals what?"),
        ("sum", "Compute {a} + {b}."),
    ),
    "sort": (
        ("num", "Sort in ascending order: {items}"),
        ("num", "Arrange these numbers from smallest to largest: {items}"),
        ("num", "Put these numbers in increasing order: {items}"),
        ("word", "Sort these words alphabetically: {items}"),
        ("word", "Put these words in alphabetical order: {items}"),
        ("word", "Arrange alphabetically: {items}"),
    ),
    "reverse": (
        ("rev", "Reverse the list: {items}"),
        ("rev", "Reverse the order of these words: {items}"),
        ("rev", "Write this list backwards: {items}"),
        ("rev", "List in reverse order: {items}"),
    ),
    "lookup": (
        ("topic", "What topic is the word '{word}' about?"),
        ("topic", "Which topic does '{word}' belong to?"),
        ("topic", "Name the topic of '{word}'."),
        ("topic", "Is '{word}' about food, travel, movies or music?"),
        ("sentiment", "Is '{word}' positive or negative?"),
        ("sentiment", "What is the sentiment of '{word}'?"),
        ("sentiment", "Does '{word}' sound positive or negative?"),
        ("sentiment", "Classify the word '{word}' as positive or negative."),
        ("domain", "Which domain does '{word}' belong to?"),
        ("domain", "Is '{word}' hospitality or media?"),
        ("domain", "Name the domain of '{word}'."),
    ),
    "count": (
        ("count", "Count the words: {items}"),
        ("count", "How many words are in this list: {items}"),
        ("count", "Number of items in the list: {items}"),
        ("count", "How many items does this list have: {items}"),
    ),
}

_SENTIMENT = {+1: "positive", -1: "negative"}


def _facts() -> dict[str, dict[str, str]]:
    """group -> {word: answer}, built from the review task's lexicon (its words are all distinct)."""
    topic = {w: t for t, ws in _NOUNS.items() for w in ws}
    topic.update({w: t for t, by_pol in _TOPIC_ADJ.items() for ws in by_pol.values() for w in ws})
    sentiment = {w: _SENTIMENT[p] for p, ws in _GENERIC_ADJ.items() for w in ws}
    sentiment.update({w: _SENTIMENT[p] for by_pol in _TOPIC_ADJ.values() for p, ws in by_pol.items() for w in ws})
    domain = {w: DOMAINS[t] for t, ws in _NOUNS.items() for w in ws}
    domain.update({w: d for d, ws in _GENERIC_NOUNS.items() for w in ws})
    return {"topic": topic, "sentiment": sentiment, "domain": domain}


FACTS: dict[str, dict[str, str]] = _facts()
_FACT_LIST: list[tuple[str, str]] = [(g, w) for g, table in FACTS.items() for w in table]
# Single lexicon words of 3-6 letters: the items of sort/reverse/count lists.
WORD_POOL: tuple[str, ...] = tuple(
    sorted({w for table in FACTS.values() for w in table if w.isalpha() and 3 <= len(w) <= 6})
)
_WORD_SET = frozenset(WORD_POOL)

_SLOT_RE = {
    "a": r"(0|[1-9]\d?)",
    "b": r"(0|[1-9]\d?)",
    "items": r"([a-z0-9]+(?:,? [a-z0-9]+)*)",
    "word": r"([a-z][a-z -]*[a-z])",
}


def _compile(template: str) -> re.Pattern:
    pattern = re.escape(template)
    for slot, rx in _SLOT_RE.items():
        pattern = pattern.replace(re.escape("{" + slot + "}"), rx)
    return re.compile(pattern)


_PATTERNS = {kind: tuple((g, _compile(t)) for g, t in ts) for kind, ts in TEMPLATES.items()}


@dataclass(frozen=True)
class LMTaskData:
    train: list[dict]  # each {"prompt": str, "response": str, "kind": str}
    eval: list[dict]  # same; no prompt of eval occurs in train, and none twice in eval


def parse(prompt: str) -> tuple[str, str, int, tuple] | None:
    """(kind, group, template index, payload) of a prompt, or None when no template matches it. The payload
    is (a, b) for add, the list's items for sort/reverse/count, (word,) for lookup."""
    for kind, patterns in _PATTERNS.items():
        for i, (group, rx) in enumerate(patterns):
            m = rx.fullmatch(prompt)
            if m is None:
                continue
            if "{items}" in TEMPLATES[kind][i][1]:
                return kind, group, i, tuple(re.split(r",? ", m.group(1)))
            return kind, group, i, m.groups() if kind == "add" else (m.group(1),)
    return None


def _answer(group: str, payload: tuple) -> str | None:
    """The canonical response to a parsed payload, or None when the payload is not a valid question."""
    if group == "sum":
        return str(int(payload[0]) + int(payload[1]))
    if group == "num":
        return " ".join(sorted(payload, key=int)) if all(x.isdigit() and len(x) == 1 for x in payload) else None
    if group in ("word", "rev", "count") and not all(x in _WORD_SET for x in payload):
        return None
    if group == "word":
        return " ".join(sorted(payload))
    if group == "rev":
        return " ".join(reversed(payload))
    if group == "count":
        return str(len(payload))
    return FACTS[group].get(payload[0])


def solve(prompt: str) -> str | None:
    """The canonical response to ``prompt`` recomputed from it, or None when it is not one of the task's prompts
    (what a teacher that knows the task answers: ``scripts/openai_stub_server.py``)."""
    parsed = parse(prompt)
    return None if parsed is None else _answer(parsed[1], parsed[3])


def check(example: dict) -> bool:
    """True iff the example's response is the answer recomputed from its prompt (and its kind is the prompt's)."""
    parsed = parse(example.get("prompt", ""))
    if parsed is None or parsed[0] != example.get("kind"):
        return False
    expected = _answer(parsed[1], parsed[3])
    return expected is not None and example.get("response") == expected


def to_text(example: dict) -> str:
    """The training text of an example: prompt, `SEP`, response (the loss covers the response only)."""
    return f"{example['prompt']}{SEP}{example['response']}"


def texts_for_tokenizer(data: LMTaskData | Iterable[dict]) -> list[str]:
    """Prompt+response texts to train a (byte-level BPE) tokenizer on: the train split of an `LMTaskData`
    (eval text stays unseen), or every example of an iterable of examples."""
    examples = data.train if isinstance(data, LMTaskData) else data
    return [to_text(ex) for ex in examples]


# ----------------------------------------------------------------------------------------------
# Sampling. One _Sampler per split; it owns the split's rng and its round of look-up facts.
# ----------------------------------------------------------------------------------------------


class _Sampler:
    def __init__(self, rng: random.Random, seen: set[str]) -> None:
        self.r = rng
        self.seen = seen  # prompts the split may not use (look-ups avoid them by choosing another phrasing)
        self.facts: list[tuple[str, str]] = []

    def template(self, kind: str, group: str | None = None) -> str:
        return self.r.choice([t for g, t in TEMPLATES[kind] if group is None or g == group])

    def items(self, template: str, items: list[str]) -> str:
        return template.format(items=self.r.choice((" ", ", ")).join(items))

    def number(self) -> int:
        return self.r.randrange(10)

    def sample(self, kind: str) -> tuple[str, str]:
        """(prompt, response) of one example of `kind`."""
        r = self.r
        if kind == "add":
            a, b = self.number(), self.number()
            return self.template("add").format(a=a, b=b), str(a + b)
        if kind == "sort":
            if r.random() < 0.5:
                xs = [str(r.randrange(10)) for _ in range(r.randint(3, 6))]
                return self.items(self.template("sort", "num"), xs), " ".join(sorted(xs, key=int))
            ws = r.sample(WORD_POOL, r.randint(3, 5))
            return self.items(self.template("sort", "word"), ws), " ".join(sorted(ws))
        if kind == "reverse":
            ws = r.sample(WORD_POOL, r.randint(3, 5))
            return self.items(self.template("reverse"), ws), " ".join(reversed(ws))
        if kind == "count":
            ws = [r.choice(WORD_POOL) for _ in range(r.randint(2, 9))]
            return self.items(self.template("count"), ws), str(len(ws))
        return self.lookup()

    def lookup(self) -> tuple[str, str]:
        """The next fact of the round (facts are dealt in shuffled rounds, every fact once per round), in a
        phrasing not in `seen`; a fact whose every phrasing is taken is skipped."""
        for _ in range(len(_FACT_LIST) + 1):
            if not self.facts:
                self.facts = list(_FACT_LIST)
                self.r.shuffle(self.facts)
            group, word = self.facts.pop()
            free = [t.format(word=word) for g, t in TEMPLATES["lookup"] if g == group]
            free = [p for p in free if p not in self.seen]
            if free:
                return self.r.choice(free), FACTS[group][word]
        raise ValueError("lm_synthetic: every look-up prompt is taken: the split is too large for kinds=['lookup']")


def _stream(seed: int, name: str) -> random.Random:
    return random.Random(
        f"distillkit.lm_synthetic:{seed}:{name}"
    )  # the module's old name: a seed, kept so the data stay the same


def _kinds_stream(rng: random.Random, kinds: Sequence[str], n: int) -> list[str]:
    """Kinds in fixed proportions: shuffled blocks of KIND_WEIGHTS[k] copies of each kind (prefix-stable)."""
    out: list[str] = []
    while len(out) < n:
        block = [k for k in kinds for _ in range(KIND_WEIGHTS[k])]
        rng.shuffle(block)
        out.extend(block)
    return out[:n]


_MAX_REDRAWS = 200


def _split(seed: int, name: str, n: int, kinds: Sequence[str], banned: set[str], unique: bool) -> list[dict]:
    """`n` examples whose prompts are not in `banned`; with `unique`, no prompt twice either."""
    seen: set[str] = set(banned)
    sampler, rows = _Sampler(_stream(seed, name), seen), []
    for kind in _kinds_stream(_stream(seed, name + "-kinds"), kinds, n):
        for _ in range(_MAX_REDRAWS):
            prompt, response = sampler.sample(kind)
            if prompt not in seen:
                break
        else:
            raise ValueError(
                f"lm_synthetic: could not draw a new {kind!r} prompt for the {name} split after "
                f"{_MAX_REDRAWS} tries: the split is too large for the kinds chosen"
            )
        if unique:
            seen.add(prompt)
        rows.append({"prompt": prompt, "response": response, "kind": kind})
    return rows


def _check_args(seed, n_train, n_eval, kinds) -> tuple[str, ...]:
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    for name, v in (("n_train", n_train), ("n_eval", n_eval)):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v <= 0:
            raise ValueError(f"{name} must be a positive integer (>= 1), got {v!r}")
    if kinds is None:
        return KINDS
    if isinstance(kinds, str) or not kinds or any(k not in KINDS for k in kinds):
        raise ValueError(f"kinds must be a non-empty list drawn from {list(KINDS)}, got {kinds!r}")
    return tuple(k for k in KINDS if k in kinds)  # canonical order: the data do not depend on the order given


def generate(seed: int = 0, n_train: int = 8000, n_eval: int = 500, kinds: Sequence[str] | None = None) -> LMTaskData:
    """Generate the train/eval splits (see the module docstring); `kinds` picks a subset of `KINDS`."""
    chosen = _check_args(seed, n_train, n_eval, kinds)
    eval_ = _split(int(seed), "eval", int(n_eval), chosen, banned=set(), unique=True)
    train = _split(int(seed), "train", int(n_train), chosen, banned={ex["prompt"] for ex in eval_}, unique=False)
    return LMTaskData(train=train, eval=eval_)
