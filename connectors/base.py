"""The connector interface.

``Connector.search`` is the public method and does the plumbing every connector needs:
the access check (a connector is never called for an asker who may not read its source),
the timeout, the per-passage ACL filter and logging. A kind implements ``_search`` (and,
if it keeps an index, ``_refresh``), in the shape of langchain-core's retrievers.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from bot.config import Source, WorkspaceConfig
from bot.core.access import may_read_source, source_token
from bot.core.embeddings import Embedder
from bot.core.types import Passage
from bot.errors import ConciergeError
from bot.telemetry import CONNECTOR_ERRORS, CONNECTOR_SECONDS

log = logging.getLogger("concierge.connectors")


class ConnectorError(ConciergeError):
    """A source failed; the message is safe to show (no passage text, no secrets)."""


class SourceUnavailable(ConnectorError):
    """The source cannot be searched right now (missing folder, broken index, timeout)."""


class AccessDenied(ConciergeError):
    """Raised if code ever asks a connector to search for someone who may not read it."""


@dataclass(frozen=True)
class ConnectorContext:
    """What connectors may use from the process: where derived data lives, the config."""

    config: WorkspaceConfig
    index_dir: Path
    refresh_interval_s: float = 10.0
    secrets: Mapping[str, str] = field(default_factory=dict)  # credentials named in config
    embedder: Embedder | None = None  # dense retrieval (None: words only)


class Connector(ABC):
    kind: ClassVar[str]

    def __init__(self, source: Source, context: ConnectorContext) -> None:
        self.source = source
        self.context = context

    @property
    def name(self) -> str:
        return self.source.name

    @property
    def source_reader_tokens(self) -> tuple[str, ...]:
        """The clause of principals that may read this source (a grant of it counts)."""
        if self.source.is_public:
            return ("everyone",)
        return (*sorted(self.source.reader_tokens), source_token(self.name))

    async def prepare(self) -> list[str]:
        """Build or refresh derived data; return warnings for a person to read."""
        return []

    async def search(
        self, *, query: str, principals: frozenset[str], k: int, timeout_s: float | None = None
    ) -> list[Passage]:
        """Passages for ``query`` that the holder of ``principals`` may read, best first."""
        if not may_read_source(self.source, principals):
            log.error("refused search of %s: asker may not read it", self.name)
            raise AccessDenied(f"not allowed to search {self.name}")
        started = time.perf_counter()
        limit = timeout_s if timeout_s is not None else self.source.timeout_s
        try:
            raw = await asyncio.wait_for(
                self._search(query=query, principals=principals, k=k), limit
            )
        except TimeoutError:
            CONNECTOR_ERRORS.labels(self.name).inc()
            log.warning("source %s timed out after %.1fs", self.name, limit)
            raise SourceUnavailable(f"{self.name} did not answer within {limit:g}s") from None
        except ConnectorError:
            CONNECTOR_ERRORS.labels(self.name).inc()
            raise
        except Exception as exc:  # a connector bug must not take the question down
            CONNECTOR_ERRORS.labels(self.name).inc()
            log.exception("source %s failed", self.name)
            raise SourceUnavailable(f"{self.name} failed ({exc.__class__.__name__})") from exc
        finally:
            CONNECTOR_SECONDS.labels(self.name).observe(time.perf_counter() - started)
        readers = self.source_reader_tokens
        stamped = [
            dataclasses.replace(p, source_readers=readers, data_class=self.source.data_class)
            for p in raw
            if p.source == self.name
        ]
        allowed = [p for p in stamped if p.labels.readable_by(principals)][:k]
        log.debug(
            "searched %s: %d passages (%d filtered) in %.1f ms",
            self.name,
            len(allowed),
            len(raw) - len(allowed),
            (time.perf_counter() - started) * 1000,
        )
        return allowed

    async def refresh(self) -> int:
        """Re-read the source now (the scheduled re-index); returns how many items changed."""
        return 0

    async def document_state(self, location: str, principals: frozenset[str] | None) -> str | None:
        """A fingerprint of the document at ``location`` (a passage's ``location``) as the
        holder of ``principals`` may see it (None: whoever): "" when it is gone or not visible
        to them, None when this kind of source cannot tell (a verified answer stays valid)."""
        return None

    @abstractmethod
    async def _search(self, *, query: str, principals: frozenset[str], k: int) -> list[Passage]:
        """Return up to ``k`` passages; may pre-filter by ``principals`` (the base re-checks)."""
