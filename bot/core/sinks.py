"""The emit step's interface: where answer text goes (a terminal, Slack, a test)."""

from __future__ import annotations

from typing import Protocol

from bot.core.types import ExchangeResult


class Sink(Protocol):
    async def status(self, text: str) -> None:
        """A short progress note ("the primary model is slow; answering with …")."""

    async def write(self, text: str) -> None:
        """The next piece of the answer, in order; never rewritten."""

    async def close(self, result: ExchangeResult) -> None:
        """The answer is over (whatever its outcome); ``result`` is what gets recorded."""


class CollectingSink:
    """Keeps everything; used by ``ask --json`` and tests."""

    def __init__(self) -> None:
        self.statuses: list[str] = []
        self.pieces: list[str] = []
        self.result: ExchangeResult | None = None

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    async def status(self, text: str) -> None:
        self.statuses.append(text)

    async def write(self, text: str) -> None:
        self.pieces.append(text)

    async def close(self, result: ExchangeResult) -> None:
        self.result = result
