"""Printing for the terminal: flushed at once so that streamed text shows as it comes."""

from __future__ import annotations

import sys


def out(text: str = "", *, end: str = "\n") -> None:
    sys.stdout.write(text + end)
    sys.stdout.flush()


def err(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()
