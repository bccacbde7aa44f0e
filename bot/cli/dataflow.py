"""``dataflow [--format md|html] [--out FILE]``: the data-flow document from the live config."""

from __future__ import annotations

import argparse
from pathlib import Path

from bot.cli.output import out
from bot.config import load_config
from bot.errors import UsageError
from bot.reports.dataflow import describe, to_html, to_markdown
from bot.settings import Settings


def dataflow(settings: Settings, args: argparse.Namespace) -> int:
    """Print the document, or write it to ``--out`` (needs no database and no network)."""
    flow = describe(load_config(settings.concierge_config), settings)
    text = to_html(flow) if args.format == "html" else to_markdown(flow)
    if not args.out:
        out(text.rstrip("\n"))
        return 0
    path = Path(args.out).expanduser()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None
    out(f"wrote {path}")
    return 0
