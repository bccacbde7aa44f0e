"""Citation markers renumbered as the answer streams: the first passage the answer cites is
[1], the next new one [2], and so on, so that a reader never sees [1] followed by [4].

A model cites passages by their number in the prompt ("[4]"); the prompt's order is
retrieval's, not the answer's. ``CitationNumbers`` rewrites each marker as the text passes
through the emit step (a marker split across two stream pieces is held back until it is
whole), and remembers which prompt passage each new number stands for, so the sources list
is numbered the same way. Numbers that name no passage ("[2026]") are left as written.
"""

from __future__ import annotations

import re

MARKER = re.compile(r"\[(\d{1,3})\]")
# The end of a piece that may be the start of a marker ("[", "[1", "[12").
OPEN_TAIL = re.compile(r"\[\d{0,3}$")


class CitationNumbers:
    """Renumbers ``[n]`` markers (n = a passage's number in the prompt, 1..count) in order
    of first appearance. Feed the stream piece by piece, then ``flush`` at its end."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.cited: list[int] = []  # prompt passage numbers, in the order first cited
        self._held = ""
        self._shown: list[str] = []

    @property
    def text(self) -> str:
        """Everything returned so far (the answer as the person saw it)."""
        return "".join(self._shown)

    def feed(self, piece: str) -> str:
        """The renumbered text that can be shown now (possibly "", when a marker is open)."""
        text = self._held + piece
        tail = OPEN_TAIL.search(text)
        self._held = tail.group(0) if tail else ""
        ready = text[: tail.start()] if tail else text
        return self._show(MARKER.sub(self._renumber, ready))

    def flush(self) -> str:
        """What was held back at the end of the stream (an unfinished marker, as written)."""
        held, self._held = self._held, ""
        return self._show(held)

    def _show(self, text: str) -> str:
        if text:
            self._shown.append(text)
        return text

    def _renumber(self, m: re.Match[str]) -> str:
        n = int(m.group(1))
        if not 0 < n <= self.count:
            return m.group(0)
        if n not in self.cited:
            self.cited.append(n)
        return f"[{self.cited.index(n) + 1}]"


def renumber(text: str, count: int) -> tuple[str, list[int]]:
    """The whole text renumbered at once, and the prompt passages in citation order."""
    numbers = CitationNumbers(count)
    out = numbers.feed(text) + numbers.flush()
    return out, numbers.cited
