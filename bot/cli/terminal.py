"""The terminal front end: ``ask`` and ``chat``, through the same pipeline as Slack."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import re

from bot.cli.output import err, out
from bot.core.sinks import CollectingSink
from bot.core.types import Audience, ExchangeResult, Question, Turn
from bot.errors import UsageError
from bot.runtime import Runtime, build_runtime
from bot.settings import Settings
from bot.store.db import StoreUnavailable

log = logging.getLogger("concierge.cli")

CHANNEL_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,79}$")
YES = {"y", "yes", "+", "+1", "👍", "up"}
NO = {"n", "no", "-", "-1", "👎", "down"}


class TerminalSink:
    """Streams answer text to stdout as it arrives; status notes go to stderr."""

    def __init__(self) -> None:
        self.wrote = False

    async def status(self, text: str) -> None:
        err(f"[{text}]")

    async def write(self, text: str) -> None:
        self.wrote = True
        out(text, end="")

    async def replace(self, text: str) -> None:
        """A terminal cannot take back what it printed: the new answer starts on a new line
        (the status note on stderr says why)."""
        if self.wrote:
            out()
        if text:
            await self.write(text)

    async def close(self, result: ExchangeResult) -> None:
        if self.wrote:
            out()


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


def print_sources(result: ExchangeResult) -> None:
    if not result.sources:
        return
    out("Sources:")
    for s in result.sources:
        out(f"  [{s.get('ref')}] {s['source']}: {s['title']} ({s.get('location') or s['uri']})")


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

    async def main() -> ExchangeResult:
        runtime = await _runtime(settings)
        try:
            email = _asker(runtime, args.as_)
            sink = CollectingSink() if args.json else TerminalSink()
            question = Question(text=text, asker_ref=email, audience=audience, surface="cli")
            return await runtime.pipeline.ask(question, sink)
        finally:
            runtime.close()

    result = asyncio.run(main())
    if args.json:
        out(json.dumps(result.to_json(), ensure_ascii=False, indent=2))
    else:
        print_sources(result)
    return 0


def chat(settings: Settings, args: argparse.Namespace) -> int:
    return asyncio.run(_chat(settings, args.as_))


async def _read(prompt: str) -> str | None:
    try:
        return await asyncio.to_thread(input, prompt)
    except EOFError:
        return None


async def _chat(settings: Settings, as_: str | None) -> int:
    runtime = await _runtime(settings)
    try:
        email = _asker(runtime, as_)
        out(
            f"Concierge ({runtime.config.name}) — you are {email}. "
            "Ask a question; /new starts a new thread, /quit leaves."
        )
        history: list[Turn] = []
        thread = 1
        pending: str | None = None
        while True:
            line = pending if pending is not None else await _read("you> ")
            pending = None
            if line is None:
                out()
                return 0
            line = line.strip()
            if not line:
                continue
            if line in ("/quit", "/exit", "/q"):
                return 0
            if line == "/new":
                history.clear()
                thread += 1
                out("(new thread)")
                continue
            if line == "/help":
                out("Type a question. /new starts a new thread; /quit leaves.")
                continue
            question = Question(
                text=line,
                asker_ref=email,
                surface="chat",
                history=tuple(history),
                thread=f"chat-{thread}",
            )
            out("concierge> ", end="")
            result = await runtime.pipeline.ask(question, TerminalSink())
            print_sources(result)
            if result.outcome in ("answered", "incomplete", "no_answer"):
                history.append(Turn(line, result.answer, result.labels))
            pending = await _feedback(runtime, result, email)
    finally:
        runtime.close()


async def _feedback(runtime: Runtime, result: ExchangeResult, email: str) -> str | None:
    """Ask for a vote; anything that is not a vote is taken as the next question."""
    reply = await _read("Helpful? [y/n, Enter to skip] ")
    if reply is None:
        return None
    choice = reply.strip().lower()
    if choice in YES or choice in NO:
        vote = 1 if choice in YES else -1
        reason = None
        if vote < 0:
            reason = (await _read("What was wrong? (optional) ") or "").strip() or None

        # Stored, or spooled while the database is unreachable (replayed when it returns).
        await runtime.vote(exchange_id=result.exchange_id, voter=email, vote=vote, reason=reason)
        if vote < 0 and reason:
            try:
                await runtime.reviews.feedback(result.exchange_id, email, reason)
            except StoreUnavailable:
                log.error(
                    "the database is unreachable: the owners see this vote's reason in "
                    "the report once it returns, not as a review item"
                )
        out(
            "Thanks, noted."
            if vote > 0
            else "Thanks — this goes to the owners' report"
            + (" and the sources' owners." if reason else ".")
        )
        return None
    return reply if choice else None
