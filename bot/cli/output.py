"""Printing for the terminal: flushed at once so that streamed text shows as it comes.

A reader that goes away early (``app.py ask … | head -1``) is not an error: the rest of the
output is dropped quietly (the command still finishes its work, e.g. records the exchange)
and nothing prints a BrokenPipeError traceback, now or when the interpreter exits.
"""

from __future__ import annotations

import contextlib
import os
import sys


def out(text: str = "", *, end: str = "\n") -> None:
    try:
        sys.stdout.write(text + end)
        sys.stdout.flush()
    except BrokenPipeError:
        stdout_closed()


def err(text: str) -> None:
    try:
        sys.stderr.write(text + "\n")
        sys.stderr.flush()
    except BrokenPipeError:
        pass


def stdout_closed() -> None:
    """Point stdout at /dev/null: what is still buffered, and any later write, goes nowhere
    instead of raising again (also at interpreter exit, when Python flushes stdout)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # no real file behind sys.stdout
        with contextlib.suppress(Exception):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the process
