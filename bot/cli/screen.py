"""What the terminal front end shows and reads: rendered and live on a terminal, plain text
anywhere else (a pipe, a file, a test), never an escape code there.

``RichScreen`` (stdin and stdout both terminals): answers stream as rendered Markdown (rich's
``Live``, a spinner until the first words), questions are read with prompt_toolkit (line
editing, history with the arrow keys; Ctrl-C on a line with text clears it, on an empty line
leaves; Ctrl-D leaves). ``PlainScreen``: the answer's text as it streams and lines read from
standard input. Both read in a way Ctrl-C can interrupt at once (``interrupt``).
"""

from __future__ import annotations

import asyncio
import re
import sys
import threading
from typing import Protocol

from bot.cli.output import err, out
from bot.core.types import ExchangeResult

# C0 controls but newline and tab, DEL and C1 controls: an escape sequence from a document
# or a model would restyle, retitle or rewrite the reader's terminal.
CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """``text`` as it may be shown on a terminal: without control characters."""
    return CONTROLS.sub("", text)


def stdout_is_terminal() -> bool:
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False


class Interrupted(Exception):
    """Ctrl-C while reading a line (the caller decides: skip, or leave)."""


def citation_lines(result: ExchangeResult) -> list[tuple[str, str, str, str]]:
    """``(number, title, where, date)`` per cited source: ``where`` is the source and the
    document's path inside it (with the section's anchor), or its link."""
    rows: list[tuple[str, str, str, str]] = []
    for s in result.sources:
        uri = str(s.get("uri") or "")
        location = str(s.get("location") or "")
        if uri.startswith(("https://", "http://")):
            where = uri
        else:
            where = f"{s['source']}/{location or uri}" if (location or uri) else str(s["source"])
        date = f"updated {s['date']}" if s.get("date") else ""
        title = str(s.get("title") or "")
        rows.append((str(s.get("ref", len(rows) + 1)), printable(title), printable(where), date))
    return rows


def plain_sources(result: ExchangeResult) -> list[str]:
    lines = []
    for ref, title, where, date in citation_lines(result):
        lines.append(f"  [{ref}] {title} — {where}" + (f", {date}" if date else ""))
    return ["Sources:", *lines] if lines else []


class AnswerSink(Protocol):
    async def status(self, text: str) -> None: ...
    async def write(self, text: str) -> None: ...
    async def replace(self, text: str) -> None: ...
    async def close(self, result: ExchangeResult) -> None: ...


class Screen(Protocol):
    async def read(self, prompt: str, *, history: bool = True) -> str | None:
        """A line; None at end of input (Ctrl-D); raises Interrupted on Ctrl-C."""

    def interrupt(self) -> None:
        """Ctrl-C arrived as a signal: a read in progress raises Interrupted."""

    def say(self, text: str) -> None: ...

    def note(self, text: str) -> None:
        """A quiet line (a status, a hint)."""

    def answer_sink(self) -> AnswerSink: ...

    def sources(self, result: ExchangeResult) -> None: ...


class PlainSink:
    """Streams answer text to stdout as it arrives; status notes go to stderr."""

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix
        self.wrote = False
        # A pipe gets the text exactly; a terminal never gets its control characters.
        self.clean = printable if stdout_is_terminal() else str

    async def status(self, text: str) -> None:
        err(f"[{text}]")

    async def write(self, text: str) -> None:
        if not self.wrote and self.prefix:
            out(self.prefix, end="")
        self.wrote = True
        out(self.clean(text), end="")

    async def replace(self, text: str) -> None:
        """Printed text cannot be taken back: the new answer starts on a new line (the status
        note on stderr says why)."""
        if self.wrote:
            out()
            self.wrote = False
        if text:
            await self.write(text)

    async def close(self, result: ExchangeResult) -> None:
        if self.wrote:
            out()


class PlainScreen:
    """Lines from standard input, read on a daemon thread so that Ctrl-C (a signal) ends
    the wait at once; the thread never holds the process open."""

    def __init__(self) -> None:
        self._waiting: asyncio.Future[str | None] | None = None

    async def read(self, prompt: str, *, history: bool = True) -> str | None:
        out(prompt, end="")
        loop = asyncio.get_running_loop()
        waiting: asyncio.Future[str | None] = loop.create_future()
        self._waiting = waiting
        stdin = sys.stdin

        def deliver(line: str | None) -> None:
            if not waiting.done():
                waiting.set_result(line)

        def reader() -> None:
            try:
                line = stdin.readline()
            except (OSError, ValueError):
                line = ""
            value = line.rstrip("\n") if line else None
            loop.call_soon_threadsafe(deliver, value)

        threading.Thread(target=reader, name="chat-stdin", daemon=True).start()
        try:
            return await waiting
        finally:
            self._waiting = None

    def interrupt(self) -> None:
        if self._waiting is not None and not self._waiting.done():
            self._waiting.set_exception(Interrupted())

    def say(self, text: str) -> None:
        out(text)

    def note(self, text: str) -> None:
        out(text)

    def answer_sink(self) -> AnswerSink:
        return PlainSink(prefix="concierge> ")

    def sources(self, result: ExchangeResult) -> None:
        for line in plain_sources(result):
            out(line)


def interactive() -> bool:
    """Both ends are a terminal: render and edit; otherwise plain text only."""
    try:
        return sys.stdin.isatty() and stdout_is_terminal()
    except (AttributeError, ValueError):
        return False
