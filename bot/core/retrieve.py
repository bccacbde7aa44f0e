"""The retrieve step: search the allowed sources concurrently, each with its own timeout.

Only sources the asker may read are searched. With a channel audience, passages that every
reader there may see go to the prompt; what only the asker may see is withheld (its source
names are recorded, its text goes nowhere) and the answer says a fuller one is available
privately.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from bot.core.access import AccessDecision
from bot.core.embeddings import Embedder, EmbeddingError
from bot.core.types import Audience, Passage
from connectors.base import Connector, ConnectorError

log = logging.getLogger("concierge.retrieve")


@dataclass
class Retrieval:
    passages: list[Passage] = field(default_factory=list)  # for the prompt, best first
    withheld: list[Passage] = field(default_factory=list)  # asker-only, never in the prompt
    searched: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)  # safe to show to this audience
    failed_sources: list[str] = field(default_factory=list)  # all, for the record
    embedding_cost_usd: float = 0.0  # embedding the question (a priced provider)

    @property
    def withheld_sources(self) -> list[str]:
        return sorted({p.source for p in self.withheld})


class Retriever:
    def __init__(self, connectors: dict[str, Connector], embedder: Embedder | None = None) -> None:
        self.connectors = connectors
        self.embedder = embedder

    async def retrieve(
        self, *, query: str, access: AccessDecision, audience: Audience, k: int
    ) -> Retrieval:
        shared = {s.name for s in access.shared}
        targets = [s.name for s in access.readable if s.name in self.connectors]
        out = Retrieval(searched=targets)
        if self.embedder is not None and targets and query.strip():
            # Embedded once, here, with its cost; every source reuses the cached vector.
            try:
                _vector, out.embedding_cost_usd = await self.embedder.embed_query(query)
            except EmbeddingError as exc:
                log.warning("embedding the question failed: %s", exc)
        results = await asyncio.gather(
            *(
                self.connectors[name].search(query=query, principals=access.principals, k=k)
                for name in targets
            ),
            return_exceptions=True,
        )
        public: list[Passage] = []
        private: list[Passage] = []
        for name, res in zip(targets, results, strict=True):
            if isinstance(res, BaseException):
                if not isinstance(res, ConnectorError):
                    log.error("source %s raised %s", name, res.__class__.__name__)
                out.failed_sources.append(f"{name} ({res})")
                if name in shared:
                    # Details (paths, exceptions) go to the record and the log, not to people.
                    out.failures.append(f"{name} could not be searched right now")
                continue
            for p in res:
                # One rule for every passage: its labels (source readers, its own narrowing
                # readers, the person a row was fetched as) against what every reader of the
                # audience holds. A per-person row is never shared with a channel.
                if name in shared and p.labels.readable_by(access.audience_principals):
                    public.append(p)
                else:
                    private.append(p)
        public.sort(key=lambda p: p.score, reverse=True)
        out.passages = public[:k]
        if not audience.is_private and private:
            # What the asker alone may read and would have made the answer: all of it when
            # the shared passages left room, else what outranks the last shared one. (Rows
            # of sql and http sources often carry no score at all.)
            full = len(out.passages) >= k
            floor = out.passages[-1].score if full else 0.0
            out.withheld = sorted(
                (p for p in private if not full or p.score > floor),
                key=lambda p: p.score,
                reverse=True,
            )[:k]
        return out
