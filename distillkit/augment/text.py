"""Rule-based text augmentation: EDA's four word operations (Wei & Zou 2019) and sentence shuffling, as pure
functions of a string and a ``random.Random`` (same rng state, same output).

Words. A text is split on whitespace into tokens and rejoined with single spaces. A token's *key* is its
lowercase core with leading and trailing punctuation stripped ("Movie," → "movie"); lookups use the key, and a
replacement keeps the token's punctuation and the capital of its first letter ("Movie," → "Film,"). A token
whose key is empty ("," or "." in the embedded task's "honestly , the pasta was not bland .") is punctuation,
not a word: no op deletes, moves or counts it, so sentence boundaries survive.

Protected words. Negations and contrast words (``NEGATIONS``, and any "n't" form) decide the label of
sentences like "the pasta was not bland" or "bland at first , but delicious"; no op replaces, deletes or moves
them, and no synonym containing one is ever inserted. Stop-words (``STOP_WORDS``, EDA's list) are never
replaced by synonyms, though deletion and swap may touch them, as in EDA.

Synonyms come from a ``Synonyms`` function (word key → candidate replacements, without the word itself):
WordNet for real text (``distillkit/augment/wordnet.py``) or, for the embedded synthetic task,
``lexicon_synonyms()``, built from its own word lists so that no substitution changes the label (see
``lexicon_table``).
"""

from __future__ import annotations

import functools
import random
import re
import string
from collections.abc import Callable

from distillkit.tasks.lexicon import (
    _CONTEXTS,
    _EXTREME_ADJ,
    _EXTREME_INTENSIFIERS,
    _GENERIC_ADJ,
    _GENERIC_CONTEXTS,
    _GENERIC_NOUNS,
    _HEDGES,
    _INTENSIFIERS,
    _NEGATORS,
    _NOUNS,
    _PREFIXES,
    _TOPIC_ADJ,
    DOMAINS,
)

Synonyms = Callable[[str], list[str]]

# EDA's stop-word list (NLTK's English list as EDA ships it).
STOP_WORDS: frozenset[str] = frozenset(
    """
i me my myself we our ours ourselves you your yours yourself yourselves he him his himself she her hers herself
it its itself they them their theirs themselves what which who whom this that these those am is are was were be
been being have has had having do does did doing a an the and but if or because as until while of at by for with
about against between into through during before after above below to from up down in out on off over under
again further then once here there when where why how all any both each few more most other some such no nor not
only own same so than too very s t can will just don should now
""".split()
)

NEGATIONS: frozenset[str] = frozenset(
    """
not no never nor none nobody nothing neither nowhere cannot without hardly barely scarcely n't
don't doesn't didn't isn't aren't wasn't weren't hasn't haven't hadn't won't wouldn't can't couldn't
shouldn't mustn't needn't ain't
but however although though despite yet
""".split()
)

_PUNCTUATION = string.punctuation + "“”‘’«»…–—"


# ------------------------------------------------------------------------------------------- tokens
def _parts(token: str) -> tuple[str, str, str]:
    """(leading punctuation, core, trailing punctuation) of a token."""
    rest = token.lstrip(_PUNCTUATION)
    core = rest.rstrip(_PUNCTUATION)
    return token[: len(token) - len(rest)], core, rest[len(core) :]


def _key(token: str) -> str:
    """The lookup form: the lowercase core, with a typographic apostrophe made plain ("Didn’t" → "didn't")."""
    return _parts(token)[1].lower().replace("’", "'")


def _protected(key: str) -> bool:
    return key in NEGATIONS or key.endswith("n't")


def _movable(token: str) -> bool:
    """A word (not punctuation) that is no negation or contrast word: deletion and swap may touch it."""
    key = _key(token)
    return bool(key) and not _protected(key)


def _candidates(key: str, synonyms: Synonyms) -> list[str]:
    """Replacements for a word key: none for stop-words and protected words, and never one with a negation."""
    if not key or key in STOP_WORDS or _protected(key):
        return []
    return [s for s in synonyms(key) if not any(_protected(w) for w in s.split())]


def _replace(token: str, synonym: str) -> str:
    """``synonym`` in place of the token's core, keeping its punctuation and its first letter's case."""
    before, core, after = _parts(token)
    if core[:1].isupper():
        synonym = synonym[:1].upper() + synonym[1:]
    return before + synonym + after


def _word_count(tokens: list[str]) -> int:
    return sum(1 for t in tokens if _key(t))


# ------------------------------------------------------------------------------------------- EDA ops
def synonym_replace(text: str, rng: random.Random, p: float, synonyms: Synonyms, at_least_one: bool = True) -> str:
    """EDA synonym replacement: each word that is no stop-word or negation and has synonyms is replaced, with
    probability ``p`` and independently of the others, by ``rng.choice`` of its synonyms (which may be several
    words, e.g. "a bit"). ``at_least_one`` (with p > 0): when no word was drawn, one eligible word is replaced
    anyway, as EDA replaces max(1, p·words), so a copy is rarely the unchanged sentence."""
    tokens = text.split()
    options = [_candidates(_key(token), synonyms) for token in tokens]
    drawn = [bool(o) and rng.random() < p for o in options]
    eligible = [i for i, o in enumerate(options) if o]
    if at_least_one and p > 0 and eligible and not any(drawn):
        drawn[rng.choice(eligible)] = True
    return " ".join(_replace(t, rng.choice(o)) if d else t for t, o, d in zip(tokens, options, drawn))


def _delete(tokens: list[str], rng: random.Random, rate: float) -> list[str]:
    """Drop each movable word with probability ``rate``; if no word would be left, keep one of the dropped."""
    keep = [not (_movable(t) and rng.random() < rate) for t in tokens]
    dropped = [i for i, kept in enumerate(keep) if not kept]
    if dropped and not any(kept and _key(t) for kept, t in zip(keep, tokens)):
        keep[rng.choice(dropped)] = True
    return [t for t, kept in zip(tokens, keep) if kept]


def _swap(tokens: list[str], rng: random.Random, rate: float) -> list[str]:
    """``round(rate * words)`` swaps of two random movable words."""
    tokens = list(tokens)
    slots = [i for i, t in enumerate(tokens) if _movable(t)]
    if len(slots) < 2:
        return tokens
    for _ in range(round(rate * _word_count(tokens))):
        i, j = rng.sample(slots, 2)
        tokens[i], tokens[j] = tokens[j], tokens[i]
    return tokens


def _insert(tokens: list[str], rng: random.Random, rate: float, synonyms: Synonyms) -> list[str]:
    """``round(rate * words)`` insertions at random positions of a synonym of a random word that has some, or,
    when no word has synonyms, of a copy of a random word that is no negation."""
    tokens = list(tokens)
    options = [c for c in (_candidates(_key(t), synonyms) for t in tokens) if c]
    copies = [_key(t) for t in tokens if _movable(t)]
    if not options and not copies:
        return tokens
    for _ in range(round(rate * _word_count(tokens))):
        word = rng.choice(rng.choice(options)) if options else rng.choice(copies)
        tokens.insert(rng.randint(0, len(tokens)), word)
    return tokens


def perturb(text: str, rng: random.Random, insert: float, delete: float, swap: float, synonyms: Synonyms) -> str:
    """EDA's random deletion, swap and insertion, applied in that order, each at its own rate in [0, 1] and each
    counting the words of the text as the previous op left it. Deletion drops each word with probability
    ``delete`` but always leaves at least one; swap exchanges two random words ``round(swap * words)`` times;
    insertion adds ``round(insert * words)`` words (see ``_insert``). Negations, contrast words and punctuation
    are never deleted or moved."""
    tokens = _delete(text.split(), rng, delete)
    tokens = _swap(tokens, rng, swap)
    return " ".join(_insert(tokens, rng, insert, synonyms))


# ------------------------------------------------------------------------------------------- sentences
def split_sentences(text: str) -> list[str]:
    """Sentences, split after ". ", "! " or "? " and keeping their punctuation: "a b . c d ." → ["a b .", "c d ."]."""
    return [s for s in re.split(r"(?<=[.!?])\s+", text.strip()) if s]


def shuffle_sentences(text: str, rng: random.Random) -> str | None:
    """The sentences of ``text`` in another order, drawn uniformly among the orders that differ from the original
    (reshuffling until one does: fewer than two tries on average). None when no other order exists: fewer than
    two sentences, or all sentences the same."""
    sentences = split_sentences(text)
    if len(set(sentences)) < 2:
        return None
    order = list(sentences)
    while order == sentences:
        rng.shuffle(order)
    return " ".join(order)


# ------------------------------------------------------------------------------------------- lexicon
def _single(phrases) -> list[str]:
    """The one-word entries of a list of phrases, punctuation dropped ("honestly ," → "honestly")."""
    words = [[w for w in p.split() if _key(w)] for p in phrases]
    return [w[0] for w in words if len(w) == 1]


def _lexicon_groups() -> list[frozenset[str]]:
    """Sets of interchangeable words: swapping two words of a set keeps the label and the grammar."""
    groups = []
    for adjectives in _GENERIC_ADJ.values():
        groups.append(frozenset(a for a in adjectives if a in _EXTREME_ADJ))
        groups.append(frozenset(a for a in adjectives if a not in _EXTREME_ADJ))
    groups += [frozenset(words) for by_sign in _TOPIC_ADJ.values() for words in by_sign.values()]
    groups += [frozenset(_single(_INTENSIFIERS)), frozenset(_single(_EXTREME_INTENSIFIERS))]
    groups += [frozenset(_single(_HEDGES)), frozenset(_single(_PREFIXES))]
    groups += [frozenset(nouns) for nouns in _NOUNS.values()]
    groups += [frozenset(nouns) for nouns in _GENERIC_NOUNS.values()]
    return groups


def _context_limits() -> list[tuple[list[str], frozenset[str]]]:
    """(phrases, nouns that may stand in any of their words): a noun inside a topic's context or multi-word noun
    ("at the film festival", "noodle soup") may only become a noun of that topic or a generic one of its domain,
    so a word that also appears in another domain's context ("service" in "on the streaming service") gets
    none."""
    limits = []
    for topic, nouns in _NOUNS.items():
        allowed = frozenset(nouns) | frozenset(_GENERIC_NOUNS[DOMAINS[topic]])
        limits.append((_CONTEXTS[topic] + [n for n in nouns if " " in n], allowed))
    for domain, contexts in _GENERIC_CONTEXTS.items():
        topics = [t for t, d in DOMAINS.items() if d == domain]
        limits.append((contexts, frozenset(_GENERIC_NOUNS[domain]).union(*(_NOUNS[t] for t in topics))))
    return limits


@functools.lru_cache(maxsize=1)
def lexicon_table() -> dict[str, tuple[str, ...]]:
    """The embedded task's synonym table: one-word key → sorted label-preserving replacements.

    Groups (``_lexicon_groups``): generic adjectives by sign, extreme apart from non-extreme (hedges never precede
    an extreme one); each topic's adjectives by sign; intensifiers; extreme intensifiers; one-word hedges; one-word
    prefixes; each topic's nouns; each domain's generic nouns. Suffixes and negators are left out, and no word of
    a negator phrase is a key or a value. A word in several groups, or inside a context phrase, gets only the
    words allowed in *all* of them ("really" → "truly", not "very", which never precedes "superb"): a union
    would keep the label only if every group carried the same label, and would still leave the grammar.
    """
    banned = {w for phrase in _NEGATORS for w in phrase.split()} | NEGATIONS
    allowed: dict[str, frozenset[str]] = {}
    for group in _lexicon_groups():
        for word in group:
            if " " not in word:
                allowed[word] = allowed.get(word, group) & group
    for phrases, limit in _context_limits():
        for word in {w for p in phrases for w in p.split()} & allowed.keys():
            allowed[word] &= limit
    table = {}
    for word, options in allowed.items():
        options = sorted(o for o in options if o != word and not banned & set(o.split()))
        if options and word not in banned:
            table[word] = tuple(options)
    return table


def lexicon_synonyms() -> Synonyms:
    """``Synonyms`` for the embedded synthetic task, backed by ``lexicon_table()``."""
    table = lexicon_table()
    return lambda word: list(table.get(word, ()))
