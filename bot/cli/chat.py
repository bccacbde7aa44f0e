"""``app.py chat``: a terminal conversation through the same pipeline as Slack.

Each line is a question (or a slash command: /help, /new, /as EMAIL, /quit; any other
``/word`` is refused, never asked). An answer streams as it is written, with its sources,
then a thumbs prompt. Ctrl-C during an answer stops it (recorded as ``incomplete``) and
returns to the prompt; Ctrl-C on an empty prompt, or Ctrl-D, leaves. Each conversation has
its own thread id, so the owners' report can tell them apart.
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import logging
import signal
import uuid
from dataclasses import dataclass, field

from bot.cli.screen import Interrupted, PlainScreen, Screen, interactive
from bot.core.identity import DirectoryResolver, UnknownPerson
from bot.core.pipeline import ASKER_STOPPED
from bot.core.types import ExchangeResult, Question, Turn
from bot.runtime import Runtime
from bot.store.db import StoreUnavailable

log = logging.getLogger("concierge.cli")

YES = {"y", "yes", "+", "+1", "👍", "up"}
NO = {"n", "no", "-", "-1", "👎", "down"}
QUIT = {"/quit", "/exit", "/q"}
HELP = """\
Ask a question in your own words. Commands:
  /new          start a new conversation (earlier turns are forgotten)
  /as EMAIL     ask as someone else (starts a new conversation)
  /help         this list
  /quit         leave (Ctrl-D does too)
Ctrl-C stops an answer; on an empty line it leaves."""


def new_thread() -> str:
    return f"chat-{uuid.uuid4().hex[:12]}"


def _likeness(typed: str, email: str) -> float:
    """How alike two addresses are: their names before the @, when the domains are alike
    (a typo in the name, or a name typed without its domain)."""
    name, _, domain = typed.partition("@")
    known_name, _, known_domain = email.partition("@")
    if domain and difflib.SequenceMatcher(None, domain, known_domain).ratio() < 0.55:
        return 0.0
    return difflib.SequenceMatcher(None, name, known_name).ratio()


def who_is_known(directory: DirectoryResolver, ref: str, *, few: int = 5) -> str:
    """For an unknown person: the nearest known emails, or a few known people."""
    known = sorted(directory.known)
    typed = ref.strip().lower()
    scored = sorted(((_likeness(typed, e), e) for e in known), reverse=True)
    close = [e for score, e in scored if score >= 0.6][:3]
    if close:
        return "Did you mean " + " or ".join(close) + "?"
    if not known:
        return "The workspace's config lists no people."
    more = f" (and {len(known) - few} more)" if len(known) > few else ""
    return "Known people include " + ", ".join(known[:few]) + more + "."


def answered_by_sources(result: ExchangeResult) -> bool:
    """A model or a verified answer replied (not small talk, not a refusal): worth a vote,
    and a turn a follow-up may lean on."""
    return bool(result.models_tried) or result.verified_answer_id is not None


@dataclass
class Conversation:
    asker: str
    thread: str = field(default_factory=new_thread)
    history: list[Turn] = field(default_factory=list)

    def restart(self, asker: str | None = None) -> None:
        self.asker = asker or self.asker
        self.thread = new_thread()
        self.history.clear()


class Chat:
    def __init__(self, runtime: Runtime, screen: Screen, email: str) -> None:
        self.runtime = runtime
        self.screen = screen
        self.conversation = Conversation(email)
        self.answering: asyncio.Task[ExchangeResult] | None = None

    # -- Ctrl-C as a signal (while an answer streams, or reading plain input) ---------------
    def on_interrupt(self) -> None:
        if self.answering is not None and not self.answering.done():
            self.answering.cancel(ASKER_STOPPED)
        else:
            self.screen.interrupt()

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        try:
            loop.add_signal_handler(signal.SIGINT, self.on_interrupt)
            handled = True
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread
            handled = False
        try:
            self._welcome()
            await self._loop()
        finally:
            if handled:
                loop.remove_signal_handler(signal.SIGINT)
        return 0

    def _welcome(self) -> None:
        name = self.runtime.config.name
        self.screen.say(
            f"Concierge ({name}) — you are {self._who()}. "
            "Ask a question; /help lists commands, /quit leaves."
        )

    def _who(self) -> str:
        asker = self.runtime.directory.lookup(self.conversation.asker)
        return f"{asker.email} ({asker.name})" if asker.name else asker.email

    async def _loop(self) -> None:
        pending: str | None = None
        while True:
            if pending is not None:
                line: str | None = pending
                pending = None
            else:
                try:
                    line = await self.screen.read("you> ")
                except Interrupted:
                    return  # Ctrl-C on an empty line
            if line is None:  # Ctrl-D, or the end of standard input
                return
            line = line.strip()
            if not line:
                continue
            if line.startswith("/"):
                if not self._command(line):
                    return
                continue
            result = await self._ask(line)
            if result is not None:
                pending = await self._feedback(result)

    # -- slash commands -----------------------------------------------------------------------
    def _command(self, line: str) -> bool:
        """Carries out a slash command; False to leave."""
        word, _, rest = line.partition(" ")
        word = word.lower()
        if word in QUIT:
            return False
        if word in ("/help", "/?"):
            self.screen.say(HELP)
        elif word == "/new":
            self.conversation.restart()
            self.screen.note("New conversation.")
        elif word == "/as":
            self._switch(rest.strip())
        else:
            self.screen.say(f"Unknown command {word}; try /help.")
        return True

    def _switch(self, ref: str) -> None:
        directory = self.runtime.directory
        if not ref:
            self.screen.say(f"You are {self._who()}. Usage: /as EMAIL")
            return
        try:
            email = directory.lookup(ref).email
        except UnknownPerson:
            self.screen.say(f"I don't know {ref}. {who_is_known(directory, ref)}")
            return
        self.conversation.restart(email)
        self.screen.note(f"You are now {self._who()}; new conversation.")

    # -- a question ---------------------------------------------------------------------------
    async def _ask(self, line: str) -> ExchangeResult | None:
        """The answer, streamed; None when the person stopped it (Ctrl-C)."""
        conv = self.conversation
        question = Question(
            text=line,
            asker_ref=conv.asker,
            surface="chat",
            history=tuple(conv.history),
            thread=conv.thread,
        )
        self.answering = asyncio.create_task(
            self.runtime.pipeline.ask(question, self.screen.answer_sink())
        )
        try:
            result = await self.answering
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # the chat itself is being stopped
            return None  # stopped by the person: the pipeline recorded it as incomplete
        finally:
            self.answering = None
        self.screen.sources(result)
        if result.outcome in ("answered", "incomplete", "no_answer") and answered_by_sources(
            result
        ):
            conv.history.append(Turn(line, result.answer, result.labels))
        return result

    async def _feedback(self, result: ExchangeResult) -> str | None:
        """Ask for a vote; anything that is not a vote is taken as the next question."""
        if not answered_by_sources(result):  # a greeting or a refusal: nothing to rate
            return None
        try:
            reply = await self.screen.read("Helpful? [y/n, Enter to skip] ", history=False)
        except Interrupted:
            return None
        if reply is None:
            return None
        choice = reply.strip().lower()
        if choice not in YES and choice not in NO:
            return reply if choice else None
        vote = 1 if choice in YES else -1
        reason = None
        if vote < 0:
            with contextlib.suppress(Interrupted):
                reason = (
                    await self.screen.read("What was wrong? (optional) ", history=False) or ""
                ).strip() or None
        email = self.conversation.asker
        # Stored, or spooled while the database is unreachable (replayed when it returns).
        await self.runtime.vote(
            exchange_id=result.exchange_id, voter=email, vote=vote, reason=reason
        )
        if vote < 0 and reason:
            try:
                await self.runtime.reviews.feedback(result.exchange_id, email, reason)
            except StoreUnavailable:
                log.error(
                    "the database is unreachable: the owners see this vote's reason in "
                    "the report once it returns, not as a review item"
                )
        self.screen.note(
            "Thanks, noted."
            if vote > 0
            else "Thanks — this goes to the owners' report"
            + (" and the sources' owners." if reason else ".")
        )
        return None


def make_screen() -> Screen:
    if interactive():
        from bot.cli.rich_screen import RichScreen

        return RichScreen()
    return PlainScreen()
