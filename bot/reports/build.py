"""Building the owners' report for its readers: the one entry point for ``app.py report``,
``/concierge report`` and the weekly job.

A report is written for people (``readers``, by email). Being an owner gives no read access
(DESIGN.md), so a question, a vote reason, a topic name or a nearest document appears only
when every reader may read it: the exchange's stored labels for its text, and the readers'
own access for the documents searched. Without readers, only what everyone may read appears.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from bot.core.access import may_read_source
from bot.core.labels import Labels
from bot.core.types import Passage
from bot.reports import gaps, metrics
from bot.reports.metrics import Report

if TYPE_CHECKING:
    from bot.runtime import Runtime

log = logging.getLogger("concierge.reports")

NEAREST_K = 5
EVERYONE = frozenset({"everyone"})


@dataclass(frozen=True)
class Readers:
    """Who reads a report, and what each of them holds."""

    emails: tuple[str, ...]
    principals: tuple[frozenset[str], ...]

    def may_read(self, labels: Labels) -> bool:
        """Whether every reader may read text carrying ``labels`` (none: public text only)."""
        if not self.principals:
            return labels.is_public
        return all(labels.readable_by(p) for p in self.principals)

    @property
    def holders(self) -> tuple[frozenset[str], ...]:
        return self.principals or (EVERYONE,)


async def readers_of(runtime: Runtime, emails: Sequence[str]) -> Readers:
    unique = tuple(dict.fromkeys(e.strip().lower() for e in emails if e.strip()))
    held = [await runtime.principals_of(e) for e in unique]
    return Readers(unique, tuple(held))


async def build(
    runtime: Runtime, *, days: int, readers: Sequence[str], now: datetime | None = None
) -> Report:
    """The report of the last ``days`` calendar days as ``readers`` may see it, with its
    content-gap list and each topic's nearest documents."""
    audience = await readers_of(runtime, readers)

    def load() -> Report:
        with runtime.store.session() as s:
            report = metrics.load(s, days=days, now=now, may_read=audience.may_read)
        report.gaps = gaps.group([r for r in report.unanswered if r.shown])
        return report

    # Reading and grouping take a while over a long period: off the event loop.
    report = await asyncio.to_thread(load)
    report.readers = audience.emails

    async def search(query: str) -> list[gaps.NearestDoc]:
        return await nearest_documents(runtime, audience, query)

    await gaps.attach_nearest(report.gaps, search)
    return report


async def nearest_documents(
    runtime: Runtime, audience: Readers, query: str
) -> list[gaps.NearestDoc]:
    """The documents nearest to ``query`` that every reader may read: the places where an
    answer could be added. Only document sources are searched (a sql or http source answers
    per person; its rows are not places to write)."""
    names = [
        s.name
        for s in runtime.config.sources
        if s.kind == "docs"
        and s.name in runtime.connectors
        and all(may_read_source(s, p) for p in audience.holders)
    ]
    first = audience.holders[0]
    floor = runtime.config.retrieval.min_relevance

    def relevant(p: Passage) -> bool:
        # As for answers: a document below the relevance floor is not near the topic, and
        # pointing an owner at it would mislead (a new document is needed instead).
        return p.relevance is None or p.relevance >= floor

    found = await asyncio.gather(
        *(runtime.connectors[n].search(query=query, principals=first, k=NEAREST_K) for n in names),
        return_exceptions=True,
    )
    passages: list[Passage] = []
    for name, res in zip(names, found, strict=True):
        if isinstance(res, BaseException):
            log.warning("report: nearest documents of %s not found (%s)", name, res)
            continue
        passages += [p for p in res if audience.may_read(p.labels) and relevant(p)]
    passages.sort(key=lambda p: p.score, reverse=True)
    out: list[gaps.NearestDoc] = []
    for p in passages:
        doc = gaps.NearestDoc(p.title or p.uri, p.source, p.uri)
        if doc not in out:
            out.append(doc)
    return out
