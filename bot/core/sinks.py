"""The emit step's interface: where answer text goes (a terminal, Slack, a test)."""

from __future__ import annotations

from typing import Protocol

from bot.core.types import ExchangeResult


class Sink(Protocol):
    async def status(self, text: str) -> None:
        """A short progress note ("the primary model is slow; answering with …")."""

    async def write(self, text: str) -> None:
        """The next piece of the answer, in order."""

    async def replace(self, text: str) -> None:
        """Drop the answer text written so far and show ``text`` instead (another model
        starts the answer over after one stalled); later writes follow it."""

    async def close(self, result: ExchangeResult) -> None:
        """The answer is over (whatever its outcome); ``result`` is what gets recorded."""


class CollectingSink:
    """Keeps everything; used by ``ask --json`` and tests."""

    def __init__(self) -> None:
        self.statuses: list[str] = []
        self.pieces: list[str] = []
        self.result: ExchangeResult | None = None
        self.replaced: list[str] = []  # the texts dropped by ``replace``

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    async def status(self, text: str) -> None:
        self.statuses.append(text)

    async def write(self, text: str) -> None:
        self.pieces.append(text)

    async def replace(self, text: str) -> None:
        self.replaced.append(self.text)
        self.pieces = [text] if text else []

    async def close(self, result: ExchangeResult) -> None:
        self.result = result
