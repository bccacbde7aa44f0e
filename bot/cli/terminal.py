"""The terminal front end: ``ask`` and ``chat``, through the same pipeline as Slack."""

from __future__ import annotations

import argparse
import asyncio
import json
import re
from typing import TYPE_CHECKING

from bot.cli.output import err, out
from bot.cli.screen import AnswerSink, PlainSink, plain_sources, stdout_is_terminal
from bot.core.sinks import CollectingSink
from bot.core.types import Audience, ExchangeResult, Question
from bot.errors import UsageError
from bot.runtime import Runtime, build_runtime
from bot.settings import Settings

if TYPE_CHECKING:
    from rich.console import Console

CHANNEL_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,79}$")


def _channel(name: str | None) -> Audience:
    if name is None:
        return Audience()
    value = name.strip().lstrip("#").lower()
    if not CHANNEL_RE.match(value):
        raise UsageError(f"{name!r} is not a channel name (letters, digits, '-', '_' and '.')")
    return Audience(kind="channel", channel=value)


def _question_text(text: str) -> str:
    if not text or not text.strip():
        raise UsageError(
            'the question is empty: ask something, e.g. ask "How do I expense a taxi?"'
        )
    return text


async def _runtime(settings: Settings) -> Runtime:
    runtime = await build_runtime(settings)
    for warning in runtime.warnings:
        err(f"warning: {warning}")
    return runtime


def _asker(runtime: Runtime, as_: str | None) -> str:
    ref = as_ or runtime.directory.default_ref()
    return runtime.directory.lookup(ref).email


def ask(settings: Settings, args: argparse.Namespace) -> int:
    text = _question_text(args.question)
    audience = _channel(args.channel)
    # At a terminal the answer is rendered Markdown; in a pipe or a file it stays plain text.
    console: Console | None = None
    if not args.json and stdout_is_terminal():
        from bot.cli.rich_screen import new_console

        console = new_console()

    async def main() -> ExchangeResult:
        runtime = await _runtime(settings)
        try:
            email = _asker(runtime, args.as_)
            sink: AnswerSink
            if args.json:
                sink = CollectingSink()
            elif console is not None:
                from bot.cli.rich_screen import LiveSink

                sink = LiveSink(console)
            else:
                sink = PlainSink()
            question = Question(text=text, asker_ref=email, audience=audience, surface="cli")
            return await runtime.pipeline.ask(question, sink)
        finally:
            runtime.close()

    result = asyncio.run(main())
    if args.json:
        out(json.dumps(result.to_json(), ensure_ascii=False, indent=2))
    elif console is not None:
        from bot.cli.rich_screen import show_sources

        show_sources(console, result)
    else:
        for line in plain_sources(result):
            out(line)
    return 0


def chat(settings: Settings, args: argparse.Namespace) -> int:
    return asyncio.run(_chat(settings, args.as_))


async def _chat(settings: Settings, as_: str | None) -> int:
    from bot.cli.chat import Chat, make_screen

    runtime = await _runtime(settings)
    try:
        email = _asker(runtime, as_)
        return await Chat(runtime, make_screen(), email).run()
    finally:
        runtime.close()
