"""WordNet synonyms through nltk, for synonym replacement and insertion on real text.

nltk is optional: it is imported only here, inside the functions, so the rest of distillkit runs without it.
``check_wordnet`` runs at plan time and turns a missing nltk or a missing WordNet corpus into one ConfigError
naming the config key, before any model is loaded; it only looks for the corpus files (``nltk.data.find``) and
does not load the corpus. ``wordnet_synonyms`` loads it on the first lookup (a few seconds) and caches every
word's answer, sorted, so that a seeded ``rng.choice`` picks the same synonym on every machine.
On a Debian machine without access to nltk's download server, ``scripts/install_wordnet.sh`` installs the
corpus from Debian's wordnet-base and wordnet-sense-index packages.
"""

from __future__ import annotations

import functools

from distillkit.augment.text import Synonyms
from distillkit.errors import ConfigError

_DOWNLOAD = (
    "python -m nltk.downloader wordnet, or point NLTK_DATA at a directory holding corpora/wordnet "
    "(on Debian without internet access: bash scripts/install_wordnet.sh)."
)


@functools.cache
def _lookup(word: str) -> tuple[str, ...]:
    from nltk.corpus import wordnet

    names = {name.replace("_", " ").lower() for synset in wordnet.synsets(word) for name in synset.lemma_names()}
    names.discard(word.lower())
    return tuple(sorted(names))


def _synonyms(word: str) -> list[str]:
    return list(_lookup(word))


def wordnet_synonyms() -> Synonyms:
    """``Synonyms`` from WordNet: the lemma names of every synset of the word (underscores as spaces, lowercase,
    without the word itself, deduplicated and sorted), cached per word. Call ``check_wordnet`` first."""
    return _synonyms


def check_wordnet(key: str) -> None:
    """Raise ConfigError(key, "wordnet", ...) when nltk or its WordNet corpus is missing (no corpus load)."""
    try:
        import nltk
    except ImportError:
        raise ConfigError(
            key,
            "wordnet",
            "synonyms from WordNet need the nltk package, which is not installed.",
            f"pip install nltk, then {_DOWNLOAD}",
        ) from None
    try:
        nltk.data.find("corpora/wordnet")
    except LookupError:
        raise ConfigError(
            key,
            "wordnet",
            "synonyms from WordNet need nltk's WordNet corpus, which nltk cannot "
            "find on its data path (nltk.data.path, NLTK_DATA).",
            _DOWNLOAD,
        ) from None
    try:
        nltk.data.find("corpora/wordnet/lexnames")
    except LookupError:
        raise ConfigError(
            key,
            "wordnet",
            "nltk found a WordNet corpus directory without its lexnames file (a copy "
            "of a system WordNet such as Debian's is incomplete without it).",
            _DOWNLOAD,
        ) from None
