"""Deterministic synthetic review-classification task: the default, offline dataset of distillkit.

Classes: 4 topics x 2 sentiments = 8 labels ("food/positive", "food/negative", "travel/...",
"movies/...", "music/..."). Topics are grouped into two domains, hospitality = {food, travel} and
media = {movies, music}, so class similarity is graded: the same topic with the opposite sentiment
and the other topic of the same domain are "near" classes, the other domain is "far" (`label_distance`).

Each example is one review sentence (lowercase, punctuation as separate tokens, 5-36 tokens, mean ~13,
vocabulary ~520 words). A plain adjective agrees with the label more often than not, but roughly 40%
of the sentences need word order to be read correctly:
  * negation and its scope: "never bland", "anything but tasty", "neither dull nor slow",
    "i would never call the film boring", "could not have been better" / "... worse";
  * contrast, where the main clause decides: "A , but B", "A ; however , B", "although A , B" and
    "B , although A" (B decides), "i expected it to be X , but it was Y";
  * topic asides: "unlike the album , which was dull , the pasta was superb" is food/positive
    although half of its words are about music: the main clause decides the topic.
So a bag-of-words model falls well short of an order-aware one (see scripts/check_synthetic.py).
Some examples are genuinely ambiguous, and a good teacher should be soft on them: ~10% of the
deciding phrases are mild ("somewhat bland", "not great", "okay") and agree with the label only
~70% of the time; ~8% of sentences name only a domain-generic noun ("the staff", "the show"),
leaving the topic within the domain open (clean-label Bayes accuracy is about 0.93).
Eval labels are clean. In TRAIN only, a `label_noise` fraction of the labels is replaced by another
class drawn with weights 3 (same topic, opposite sentiment), 2 (same domain, same sentiment),
1 (same domain, opposite sentiment) and 1/4 for each of the four far classes, so 6/7 of the flips
land on near classes, as annotator confusions do; flipped examples carry noisy=True. Train, eval and
noise use separate `random.Random` streams: the eval split does not depend on n_train, the texts do
not depend on label_noise, and a higher noise rate flips a superset of what a lower one flips.
"""

from __future__ import annotations

import bisect
import numbers
import random
from dataclasses import dataclass

from distillkit.tasks.lexicon import (
    _COMPARATIVE,
    _CONTEXTS,
    _EXTREME_ADJ,
    _EXTREME_INTENSIFIERS,
    _GENERIC_ADJ,
    _GENERIC_CONTEXTS,
    _GENERIC_NOUNS,
    _HEDGES,
    _INTENSIFIERS,
    _MILD_FIXED,
    _NEGATORS,
    _NEVER_VERB,
    _NOUN_MODIFIERS,
    _NOUNS,
    _PREDICATES,
    _PREFIXES,
    _RECOMMEND,
    _SUFFIXES,
    _TOPIC_ADJ,
    _TOPIC_VERB,
    DOMAINS,
)

__all__ = [
    "DOMAINS",
    "LABEL_NAMES",
    "NUM_CLASSES",
    "SENTIMENTS",
    "TOPICS",
    "SyntheticSplits",
    "generate",
    "label_distance",
]

TOPICS: tuple[str, ...] = ("food", "travel", "movies", "music")
SENTIMENTS: tuple[str, ...] = ("positive", "negative")
LABEL_NAMES: tuple[str, ...] = tuple(f"{t}/{s}" for t in TOPICS for s in SENTIMENTS)
NUM_CLASSES: int = len(LABEL_NAMES)

# Probability that the phrase deciding the sentiment is a mild/hedged one, and how often such a
# phrase leans towards the true sentiment (neutral words like "okay" lean nowhere).
_P_MILD = 0.1
_P_MILD_AGREES = 0.75
_P_MILD_NEUTRAL = 0.2
_MAX_TOKENS = 36
# Mixture weights of the grammar (see _Gen). Kept so that a plain adjective still agrees with the
# label more often than not (real text works like that, and it gives a transformer trained from
# scratch a foothold: with plain adjectives as rare as negated/contrasted ones it stays at chance on
# sentiment), while roughly 40% of the examples need word order to be read correctly.
_FRAME_WEIGHTS = {"simple": 0.60, "and": 0.14, "contrast": 0.12, "expect": 0.05, "aside": 0.09}
_CLAUSE_WEIGHTS = {
    "copula": 0.80,
    "predicate": 0.08,
    "never_call": 0.03,
    "nothing_about": 0.03,
    "never_better": 0.03,
    "recommend": 0.03,
}
_COMPLEMENT_WEIGHTS = {
    "plain": 0.70,
    "negated": 0.15,
    "anything_but": 0.03,
    "neither_nor": 0.03,
    "not_just": 0.03,
    "and": 0.06,
}


@dataclass(frozen=True)
class SyntheticSplits:
    train: list[dict]  # each {"text": str, "label": int, "noisy": bool}
    eval: list[dict]  # each {"text": str, "label": int, "noisy": False}
    label_names: list[str]  # index = label id, e.g. "food/positive"


def label_distance(a: int, b: int) -> int:
    """0 = same class, 1 = same topic (opposite sentiment), 2 = same domain (other topic), 3 = other domain."""
    if a == b:
        return 0
    ta, tb = TOPICS[a // 2], TOPICS[b // 2]
    if ta == tb:
        return 1
    return 2 if DOMAINS[ta] == DOMAINS[tb] else 3


# ----------------------------------------------------------------------------------------------
# Grammar. All functions take the example's rng explicitly; nothing touches global state.
# ----------------------------------------------------------------------------------------------


class _Gen:
    def __init__(self, rng: random.Random) -> None:
        self.r = rng

    # -- small helpers -----------------------------------------------------------------------
    def pick(self, seq):
        return seq[self.r.randrange(len(seq))]

    def chance(self, p: float) -> bool:
        return self.r.random() < p

    def adj(self, topic: str, pol: int, hedgeable: bool = False) -> str:
        if self.chance(0.55):
            return self.pick(_TOPIC_ADJ[topic][pol])
        while True:
            a = self.pick(_GENERIC_ADJ[pol])
            if not (hedgeable and a in _EXTREME_ADJ):
                return a

    def two_adj(self, topic: str, pol: int) -> tuple[str, str]:
        a = self.adj(topic, pol)
        while True:
            b = self.adj(topic, pol)
            if b != a:
                return a, b

    def noun_phrase(self, topic: str, allow_generic: bool = True, allow_context: bool = True) -> tuple[str, bool]:
        """Returns (np, topic_is_explicit)."""
        domain = DOMAINS[topic]
        generic = allow_generic and self.chance(0.12)
        noun = self.pick(_GENERIC_NOUNS[domain]) if generic else self.pick(_NOUNS[topic])
        det = self.pick(["the", "the", "the", "this", "their", "our"])
        if self.chance(0.2):
            noun = f"{self.pick(_NOUN_MODIFIERS)} {noun}"
        np = f"{det} {noun}"
        explicit = not generic
        if allow_context and self.chance(0.25):
            if generic and self.chance(0.5):
                np = f"{np} {self.pick(_GENERIC_CONTEXTS[domain])}"
            else:
                ctx = self.pick(_CONTEXTS[topic])
                if noun.split()[-1] not in ctx.split():  # not "the lodge at the mountain lodge"
                    np = f"{np} {ctx}"
                    explicit = True
        return np, explicit

    # -- complements after a copula ------------------------------------------------------------
    def choose(self, weights: dict[str, float]) -> str:
        u = self.r.random() * sum(weights.values())
        for key, w in weights.items():
            u -= w
            if u < 0:
                return key
        return key

    def clear_complement(self, topic: str, pol: int) -> str:
        k = self.choose(_COMPLEMENT_WEIGHTS)
        if k == "plain":
            a = self.adj(topic, pol)
            if self.chance(0.4):
                return f"{self.pick(_EXTREME_INTENSIFIERS if a in _EXTREME_ADJ else _INTENSIFIERS)} {a}"
            return a
        if k == "negated":
            return f"{self.pick(_NEGATORS)} {self.adj(topic, -pol)}"
        if k == "anything_but":
            return f"{self.pick(['anything but', 'far from'])} {self.adj(topic, -pol)}"
        if k == "neither_nor":
            return "neither {} nor {}".format(*self.two_adj(topic, -pol))
        if k == "not_just":
            return "{} {} but also {}".format(self.pick(["not just", "not only"]), *self.two_adj(topic, pol))
        return "{} and {}".format(*self.two_adj(topic, pol))

    def mild_complement(self, topic: str, pol: int) -> str:
        if self.chance(_P_MILD_NEUTRAL):
            return self.pick(_MILD_FIXED[0])
        lean = pol if self.chance(_P_MILD_AGREES) else -pol
        if self.chance(0.55):
            return f"{self.pick(_HEDGES)} {self.adj(topic, lean, hedgeable=True)}"
        return self.pick(_MILD_FIXED[lean])

    def complement(self, topic: str, pol: int, may_be_mild: bool) -> tuple[str, bool]:
        if may_be_mild and self.chance(_P_MILD):
            return self.mild_complement(topic, pol), True
        return self.clear_complement(topic, pol), False

    # -- clauses -------------------------------------------------------------------------------
    def copula_clause(self, np: str, topic: str, comp: str) -> str:
        k = self.r.random()
        if k < 0.45:
            return f"{np} was {comp}"
        if k < 0.55:
            return f"{np} is {comp}"
        if k < 0.65:
            return f"{np} {self.pick(['seemed', 'felt'])} {comp}"
        if k < 0.75:
            return f"{np} {_TOPIC_VERB[topic]} {comp}"
        if k < 0.87:
            return f"i found {np} {comp}"
        return f"i thought {np} was {comp}"

    def clause(self, topic: str, pol: int, deciding: bool, allow_generic: bool = True) -> tuple[str, bool, bool]:
        """A clause about `topic` expressing `pol`. Returns (text, mild, topic_explicit)."""
        np, explicit = self.noun_phrase(topic, allow_generic=allow_generic)
        k = self.choose(_CLAUSE_WEIGHTS)
        if k == "copula":
            comp, mild = self.complement(topic, pol, may_be_mild=deciding)
            return self.copula_clause(np, topic, comp), mild, explicit
        if k == "predicate":
            return f"{np} {self.pick(_PREDICATES[pol])}", False, explicit
        if k == "never_call":
            return f"i would never call {np} {self.adj(topic, -pol)}", False, explicit
        if k == "nothing_about":
            return f"there was nothing {self.adj(topic, -pol)} about {np}", False, explicit
        if k == "never_better":
            noun = self.pick(_NOUNS[topic])
            return f"i have never {_NEVER_VERB[topic]} a {self.pick(_COMPARATIVE[pol])} {noun}", False, True
        return self.pick(_RECOMMEND[pol]).format(np=np), False, explicit

    # -- sentences -----------------------------------------------------------------------------
    def sentence(self, topic_i: int, pol: int) -> tuple[str, str, bool, bool]:
        """Returns (text, frame, mild, topic_explicit)."""
        topic = TOPICS[topic_i]
        f = self.choose(_FRAME_WEIGHTS)
        if f == "simple":
            text, mild, explicit = self.clause(topic, pol, deciding=True)
            if self.chance(0.4):
                text = f"{self.pick(_PREFIXES)} {text}"
            if self.chance(0.35):
                text = f"{text} {self.pick(_SUFFIXES)}"
            return text + " .", "simple", mild, explicit
        if f == "and":  # conjunction, both clauses agree
            a, m1, e1 = self.clause(topic, pol, deciding=True)
            b, m2, e2 = self.clause(topic, pol, deciding=True)
            conj = self.pick([", and", "and", ", and also", "; also ,"])
            return f"{a} {conj} {b} .", "and", m1 and m2, e1 or e2
        if f == "contrast":  # the main clause decides
            a, _, ea = self.clause(topic, -pol, deciding=False)
            m, mild, em = self.clause(topic, pol, deciding=True)
            k = self.r.random()
            if k < 0.25:
                text = f"{a} , but {m} ."
            elif k < 0.35:
                text = f"{a} ; however , {m} ."
            elif k < 0.45:
                text = f"{a} . still , {m} ."
            elif k < 0.60:
                text = f"{self.pick(['although', 'even though', 'while'])} {a} , {m} ."
            elif k < 0.80:
                text = f"{m} , {self.pick(['although', 'even though', 'though'])} {a} ."
            else:
                np, e2 = self.noun_phrase(topic, allow_context=False)
                d = f"despite {np} being {self.adj(topic, -pol)}"
                text = f"{d} , {m} ." if self.chance(0.5) else f"{m} , {d} ."
                ea = ea or e2
            return text, "contrast", mild, ea or em
        if f == "expect":  # expectation vs. experience: the experience decides
            np, explicit = self.noun_phrase(topic)
            comp, mild = self.complement(topic, pol, may_be_mild=True)
            k = self.r.random()
            if k < 0.3:
                text = f"i expected {np} to be {self.adj(topic, -pol)} , but it was {comp} ."
            elif k < 0.55:
                other = self.clear_complement(topic, -pol)
                who = self.pick(["everyone", "the reviews", "my friends", "the critics", "my sister"])
                text = f"{who} said {np} was {other} , but i found it {comp} ."
            elif k < 0.8:
                other = self.clear_complement(topic, -pol)
                text = f"at first {np} seemed {other} , but in the end it was {comp} ."
            else:
                who = self.pick(["the reviews claimed", "i had feared", "people told me", "the ads promised"])
                text = f"{np} was {comp} , not {self.adj(topic, -pol)} as {who} ."
            return text, "expect", mild, explicit
        # topic aside: words from another topic, the main clause decides the topic
        if self.chance(0.5):
            other_i = topic_i ^ 1  # same domain
        else:
            other_i = self.pick([i for i in range(len(TOPICS)) if DOMAINS[TOPICS[i]] != DOMAINS[topic]])
        other = TOPICS[other_i]
        m, mild, em = self.clause(topic, pol, deciding=True)
        onp, _ = self.noun_phrase(other, allow_generic=False)
        ocomp = self.clear_complement(other, self.pick([1, -1]))
        k = self.r.random()
        if k < 0.2:
            np, em = self.noun_phrase(topic)
            comp, mild = self.complement(topic, pol, may_be_mild=True)
            text = f"unlike {onp} , which was {ocomp} , {np} was {comp} ."
        elif k < 0.4:
            text = f"{m} , unlike {onp} , which was {ocomp} ."
        elif k < 0.55:
            text = f"{m} ( {onp} was {ocomp} , but that is another story ) ."
        elif k < 0.7:
            text = f"{onp} was {ocomp} , but this review is about something else : {m} ."
        elif k < 0.85:
            text = f"forget {onp} , which was {ocomp} ; {m} ."
        else:
            text = f"{m} , and yes , {onp} was {ocomp} too ."
        return text, "aside", mild, em


def _sample(rng: random.Random, label: int) -> tuple[str, dict]:
    """One example of class `label`; returns (text, meta). Rejects overlong sentences."""
    g = _Gen(rng)
    topic_i, pol = label // 2, (1 if label % 2 == 0 else -1)
    while True:
        text, frame, mild, explicit = g.sentence(topic_i, pol)
        if len(text.split()) <= _MAX_TOKENS:
            return text, {"frame": frame, "mild": mild, "topic_explicit": explicit}


def _stream(seed: int, name: str) -> random.Random:
    # A str seed is hashed with SHA-512 by `random` (version 2): stable across machines and runs,
    # independent of PYTHONHASHSEED.
    return random.Random(
        f"distillkit.synthetic:{seed}:{name}"
    )  # the module's old name: a seed, kept so the data stay the same


def _labels_stream(rng: random.Random, n: int) -> list[int]:
    """Balanced labels: shuffled blocks each containing every class once (prefix-stable)."""
    out: list[int] = []
    while len(out) < n:
        block = list(range(NUM_CLASSES))
        rng.shuffle(block)
        out.extend(block)
    return out[:n]


def _flip_weight(a: int, b: int) -> float:
    """Relative chance that an annotator labels class `a` as class `b` (b != a)."""
    d = label_distance(a, b)
    if d == 1:  # same topic, opposite sentiment
        return 3.0
    if d == 2:  # same domain, other topic: same sentiment 2, opposite sentiment 1
        return 2.0 if a % 2 == b % 2 else 1.0
    return 0.25  # other domain: 4 such classes, 1 in total


def _noise_table() -> list[tuple[list[int], list[float]]]:
    """Per class: (candidate labels, cumulative flip probabilities)."""
    table = []
    for a in range(NUM_CLASSES):
        cands = [b for b in range(NUM_CLASSES) if b != a]
        weights = [_flip_weight(a, b) for b in cands]
        total, cum = sum(weights), []
        for w in weights:
            cum.append((cum[-1] if cum else 0.0) + w / total)
        table.append((cands, cum))
    return table


_NOISE_TABLE = _noise_table()


def _split(seed: int, name: str, n: int, with_meta: bool = False, sentences: int = 1) -> list:
    """``n`` examples; with ``sentences`` > 1 each is that many sentences of its class (a review of several
    sentences, for sentence-level augmentation); the one-sentence split draws exactly as it always has."""
    rng = _stream(seed, name)
    labels = _labels_stream(_stream(seed, name + "-labels"), n)
    rows = []
    for y in labels:
        text, meta = _sample(rng, y)
        if sentences > 1:
            text = " ".join([text] + [_sample(rng, y)[0] for _ in range(sentences - 1)])
        rows.append((text, y, meta) if with_meta else (text, y))
    return rows


def _check_args(seed, n_train, n_eval, label_noise) -> None:
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    for name, v in (("n_train", n_train), ("n_eval", n_eval)):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v <= 0:
            raise ValueError(f"{name} must be a positive integer (>= 1), got {v!r}")
    if (
        isinstance(label_noise, bool)
        or not isinstance(label_noise, numbers.Real)
        or not (0.0 <= float(label_noise) < 1.0)
    ):
        raise ValueError(f"label_noise must be a number in [0, 1), got {label_noise!r}")


def generate(
    seed: int = 0, n_train: int = 8000, n_eval: int = 1000, label_noise: float = 0.1, sentences: int = 1
) -> SyntheticSplits:
    """Generate the synthetic train/eval splits (see the module docstring for the task design); ``sentences``
    > 1: every example is that many sentences of its class (its multi-sentence mode)."""
    _check_args(seed, n_train, n_eval, label_noise)
    if isinstance(sentences, bool) or not isinstance(sentences, numbers.Integral) or sentences < 1:
        raise ValueError(f"sentences must be a positive integer, got {sentences!r}")
    seed, n_train, n_eval, label_noise = int(seed), int(n_train), int(n_eval), float(label_noise)

    noise_rng = _stream(seed, "noise")
    train = []
    for text, y in _split(seed, "train", n_train, sentences=sentences):
        # Always two draws per example, so the texts/flips are nested across noise rates.
        u, v = noise_rng.random(), noise_rng.random()
        noisy = u < label_noise
        if noisy:
            cands, cum = _NOISE_TABLE[y]
            y = cands[min(bisect.bisect_right(cum, v), len(cands) - 1)]
        train.append({"text": text, "label": y, "noisy": noisy})
    eval_ = [{"text": t, "label": y, "noisy": False} for t, y in _split(seed, "eval", n_eval, sentences=sentences)]
    return SyntheticSplits(train=train, eval=eval_, label_names=list(LABEL_NAMES))


def unlabeled(seed: int = 0, n: int = 8000) -> list[str]:
    """``n`` texts from the task's own distribution, without labels (noisy student's unlabeled pool): a stream of
    its own, so the pool shares no draws with the train or eval split of the same seed."""
    _check_args(seed, n, 1, 0.0)
    return [text for text, _ in _split(int(seed), "unlabeled", int(n))]
