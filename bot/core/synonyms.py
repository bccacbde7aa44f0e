"""Query expansion from a vocabulary of words people use for the same thing at work.

"How much vacation do I get?" and the handbook's "paid time off" share no word, and a small
static embedding model does not always bridge them. A question that uses one phrase of a
group is also searched with the group's other phrases; the offline model weighs them below
the person's own words (as borrowed words), so an expansion can widen what is found but not
outvote what was asked. Matching is on lightly stemmed whole words, so "rolls over" matches
"roll over" and "pc" never matches inside "pcs-1234".

The built-in groups (bot/core/synonyms.yaml) are generic workplace terms, related rather than
equal, so they earn part credit. A workspace's own groups (``retrieval.synonyms``) are its
exact in-house words ("quibbletab" for "expense claim"): their group-mates join the question
itself. The built-in ones can be turned off (``retrieval.builtin_synonyms: false``).
This is the offline path; with a hosted model the
query rewrite (bot/core/rewrite.py) covers what no list can.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import lru_cache
from pathlib import Path

import yaml

from bot.core.text import stem, words

BUILTIN = Path(__file__).with_name("synonyms.yaml")
MAX_EXPANSION_WORDS = 40


def _key(phrase: str) -> tuple[str, ...]:
    return tuple(stem(w) for w in words(phrase))


class Synonyms:
    def __init__(self, groups: Iterable[Sequence[str]]) -> None:
        self.groups: list[tuple[tuple[tuple[str, ...], str], ...]] = []
        for group in groups:
            phrases = tuple(dict.fromkeys((_key(p), " ".join(words(p))) for p in group if words(p)))
            if len(phrases) > 1:
                self.groups.append(phrases)

    def expand(self, text: str) -> str:
        """The other phrases of every group ``text`` uses (space-separated; "" for none)."""
        stems = tuple(stem(w) for w in words(text))
        if not stems:
            return ""
        found: list[str] = []
        for group in self.groups:
            if any(_contains(stems, key) for key, _ in group):
                found += [raw for key, raw in group if not _contains(stems, key)]
        out = " ".join(dict.fromkeys(found)).split()
        return " ".join(out[:MAX_EXPANSION_WORDS])


def _contains(stems: tuple[str, ...], key: tuple[str, ...]) -> bool:
    n = len(key)
    return any(stems[i : i + n] == key for i in range(len(stems) - n + 1))


@lru_cache(maxsize=1)
def builtin_groups() -> tuple[tuple[str, ...], ...]:
    data = yaml.safe_load(BUILTIN.read_text(encoding="utf-8"))
    return tuple(tuple(str(p) for p in g) for g in data["groups"])


class Vocabulary:
    """The workspace's own groups (exact equivalents its people use: they join the question
    itself) and the built-in ones (related words: part credit)."""

    def __init__(self, custom: Iterable[Sequence[str]], builtin: bool = True) -> None:
        self.exact = Synonyms(custom)
        self.related = Synonyms(builtin_groups() if builtin else ())


def synonyms_for(custom: Iterable[Sequence[str]], builtin: bool = True) -> Vocabulary:
    return Vocabulary(custom, builtin)
