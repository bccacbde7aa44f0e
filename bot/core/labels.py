"""Labels travel with text (DESIGN.md, invariant 8).

A ``Labels`` value says what a piece of text carries: the data classes it came from and who
may read it. Every piece of text that can reach a prompt, a message, a log or a record — a
passage, a history turn, a verified answer, a draft, a thumbs-down — carries one, and every
decision made on such text (which model may receive it, which audience may see it, who may be
notified with it) asks the labels of *everything* it would carry, through the methods here.

Readers are kept as a conjunction of clauses: each clause is a set of principal tokens
(``everyone``, ``user:EMAIL``, ``group:NAME``, ``role:NAME``, ``channel:NAME``,
``source:NAME``) of which a reader must hold at least one, and a reader must satisfy every
clause. A source readable by ``[role:hr]`` gives the clause ``{role:hr, source:NAME}`` (an
explicit grant of the source counts); a document narrowing it with front matter adds a
second clause; a row fetched as one person adds ``{user:EMAIL}``. Joining two labels unions
the classes and concatenates the clauses, so combined text is readable only by someone who
may read every part of it. No clause at all means everyone.

Labels that cannot be read (an old record, a corrupt value) are ``Labels.unknown()``: the
most restrictive classes and a clause nobody holds, so unknown text fails closed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

CLASS_ORDER = ("public", "internal", "confidential")
NOBODY = "nobody"  # a principal no one holds


@dataclass(frozen=True)
class Labels:
    classes: frozenset[str] = frozenset()
    readers: tuple[frozenset[str], ...] = ()  # all clauses must hold; each: any token

    # -- construction ----------------------------------------------------------------------
    @classmethod
    def of(cls, data_class: str | Iterable[str], *clauses: Iterable[str] | None) -> Labels:
        """Labels for text of ``data_class`` readable under each non-empty clause.

        A clause that is None or contains ``everyone`` (or ``*``) restricts nothing."""
        classes = frozenset([data_class] if isinstance(data_class, str) else data_class)
        kept: list[frozenset[str]] = []
        for clause in clauses:
            if clause is None:
                continue
            tokens = frozenset(str(t) for t in clause)
            if "everyone" in tokens or "*" in tokens:
                continue
            kept.append(tokens or frozenset({NOBODY}))
        return cls(classes, _dedupe(kept))

    @classmethod
    def unknown(cls) -> Labels:
        return cls(frozenset({"confidential"}), (frozenset({NOBODY}),))

    @classmethod
    def join_all(cls, items: Iterable[Labels]) -> Labels:
        out = cls()
        for item in items:
            out = out | item
        return out

    def __or__(self, other: Labels) -> Labels:
        return Labels(self.classes | other.classes, _dedupe([*self.readers, *other.readers]))

    # -- decisions -------------------------------------------------------------------------
    def readable_by(self, principals: frozenset[str] | set[str]) -> bool:
        """Whether the holder of ``principals`` may read all of the labelled text."""
        return all(clause & principals for clause in self.readers)

    def acceptable_to(self, accepted_classes: frozenset[str] | set[str]) -> bool:
        """Whether a model (or any recipient by class) accepting these classes may get it."""
        return self.classes <= accepted_classes

    @property
    def is_public(self) -> bool:
        return not self.readers

    @property
    def highest_class(self) -> str | None:
        for name in reversed(CLASS_ORDER):
            if name in self.classes:
                return name
        return next(iter(sorted(self.classes)), None)

    # -- storage ---------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {
            "classes": sorted(self.classes),
            "readers": [sorted(clause) for clause in self.readers],
        }

    @classmethod
    def from_json(cls, data: Any) -> Labels:
        """Read stored labels; anything unreadable is ``unknown`` (fails closed)."""
        if not isinstance(data, Mapping):
            return cls.unknown()
        classes = data.get("classes")
        readers = data.get("readers")
        if not isinstance(classes, list) or not isinstance(readers, list):
            return cls.unknown()
        if not all(isinstance(c, str) for c in classes):
            return cls.unknown()
        clauses: list[frozenset[str]] = []
        for clause in readers:
            if not isinstance(clause, list) or not all(isinstance(t, str) for t in clause):
                return cls.unknown()
            clauses.append(frozenset(clause) or frozenset({NOBODY}))
        return cls(frozenset(classes), _dedupe(clauses))


def _dedupe(clauses: Iterable[frozenset[str]]) -> tuple[frozenset[str], ...]:
    """Drop repeated clauses and those implied by a narrower one (a subset)."""
    unique = sorted(set(clauses), key=lambda c: (len(c), sorted(c)))
    kept: list[frozenset[str]] = []
    for clause in unique:
        if not any(k <= clause for k in kept):
            kept.append(clause)
    return tuple(kept)
