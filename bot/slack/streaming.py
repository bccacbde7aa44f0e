"""The emit step for Slack: a Sink that streams an answer into a thread.

The first words go out as soon as the model produces them (no 256-character buffer); after
that, each write carries all the text pending since the last one, at most one every
``write_interval_s``, in turn with every other answer in the workspace (bot/slack/pacing.py).
The last write goes out the moment the answer ends: it never waits for an intermediate
write's turn, and a native stream's chat.stopStream (which carries the rest of the text) was
counted in the budget when the stream was opened.

Slack's native streaming (chat.startStream / appendStream / stopStream) is used while the
workspace's Tier 2 budget admits a new stream, and chat.postMessage + chat.update otherwise.
Text only ever grows; the final message holds the whole answer, split over several messages
when it would exceed one message's limit.

Rate limits belong to the client (bot/slack/metered.py: a 429 pauses its method for the
whole workspace, then the call is made again), so a 429 delays a write and never drops it.
This streamer retries a 5xx or a transport error a few times with a short backoff (its client
has no retry handlers). A native stream that still cannot continue is stopped and the answer
goes on with chat.postMessage + chat.update carrying the whole text so far. A stream is
always stopped when the answer ends, and a failed chat.stopStream never posts shown text a
second time. What the person finally saw is reported as ``result.delivery``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.core.types import Delivery, ExchangeResult
from bot.slack.blocks import MARKDOWN_LIMIT, answer_blocks
from bot.slack.pacing import APPEND, POST, UPDATE, Pacer
from bot.slack.text import defang_links, escape, split_text

log = logging.getLogger("concierge.slack.stream")

TRANSIENT_RETRIES = 2  # after the first try: three tries in all
TRANSIENT_BACKOFF_S = 0.2  # doubled after each try
# A write failed for good (after its retries), or Slack refused it.
WRITE_ERRORS = (SlackApiError, aiohttp.ClientError, asyncio.TimeoutError, OSError)


@dataclass
class Target:
    channel: str
    thread_ts: str | None
    team: str
    user: str | None = None  # the asker, for native streaming's recipient


def slack_error(exc: BaseException) -> str:
    """Slack's error code, the HTTP status when the body was not Slack's JSON, or the
    transport error's class."""
    if not isinstance(exc, SlackApiError):
        return exc.__class__.__name__
    data = getattr(exc.response, "data", None)
    if isinstance(data, dict) and data.get("error"):
        return str(data["error"])
    return f"HTTP {getattr(exc.response, 'status_code', '?')}"


def transient(exc: BaseException) -> bool:
    """A failure that may pass: a 5xx from Slack, or the connection failed or timed out."""
    if isinstance(exc, SlackApiError):
        status = getattr(exc.response, "status_code", 0) or 0
        return int(status) >= 500
    return isinstance(exc, aiohttp.ClientError | asyncio.TimeoutError | OSError)


class _Superseded(Exception):
    """An intermediate write gave up its turn: the answer ended, the last write takes all."""


class SlackStreamer:
    """One answer's messages. Runs on the event loop; a background task does the writes
    while the answer streams, ``close`` makes the last one."""

    def __init__(
        self,
        client: AsyncWebClient,
        target: Target,
        pacer: Pacer,
        *,
        native: bool = True,
        message_limit: int = 11_000,
        offline_models: frozenset[str] = frozenset({"offline"}),
        write_interval_s: float | None = None,
    ) -> None:
        self.client = client
        self.target = target
        self.pacer = pacer
        # Native streaming may be tried for this answer (a thread is needed); whether the
        # current message is a native stream is ``native``.
        self.may_stream = native and target.thread_ts is not None
        self.native = False
        self.limit = min(message_limit, MARKDOWN_LIMIT)
        self.offline_models = offline_models
        self.interval = (
            pacer.budget.write_interval_s if write_interval_s is None else write_interval_s
        )
        # Everything the pipeline wrote, unescaped, with Markdown links defanged as it came
        # (defang_links: the same whatever the chunking, so every update is safe too).
        self.text = ""
        self.sent = 0  # characters of the current message confirmed by Slack
        self.base = 0  # where the current message starts in self.text
        self.ts: str | None = None  # the current message
        self.finished_messages: list[str] = []
        self.writes = 0
        self._wake = asyncio.Event()
        self._closing = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._writing = asyncio.Lock()  # a flush and a replace never interleave
        self._last_write = 0.0
        self._holds_update = False  # counted in pacer.updating (a final update is owed)
        self._served: dict[str, int] = {}  # intermediate turns had, per method
        self._newcomer_in: str | None = None  # the lane counting this answer as a newcomer
        self.statuses: list[str] = []
        self.delivery: Delivery = "delivered"

    # -- Sink ------------------------------------------------------------------------------
    async def status(self, text: str) -> None:
        self.statuses.append(text)

    async def write(self, text: str) -> None:
        self.text += defang_links(text, self.text[-1:])
        if self._task is None:
            self._task = asyncio.create_task(self._run())
        self._wake.set()

    async def replace(self, text: str) -> None:
        """Show ``text`` instead of this message's text so far. A native stream only appends,
        so it is stopped and the same message rewritten with chat.update from then on; text
        already rolled into earlier messages (past one message's limit) stays."""
        async with self._writing:
            if self.native and self.ts is not None:
                await self._close_stream()
                self.ts = self.finished_messages.pop() if self.finished_messages else None
            self.native = False
            if self.ts is not None:
                self._hold_update(True)  # the rewritten message is owed its final update
            self.text = self.text[: self.base] + defang_links(text)
            # -1 differs from any length: the next flush rewrites the message shown.
            self.sent = -1 if self.ts is not None else 0
        await self.write("")

    async def close(self, result: ExchangeResult) -> None:
        """The last write, whatever happened before; never raises. ``result.delivery`` says
        what the person saw."""
        self._closing.set()
        self._wake.set()
        try:
            if self._task is not None:
                await self._task
            await self._finish(result)
        except WRITE_ERRORS as exc:
            self._undelivered()
            log.error(
                "could not deliver the end of an answer in %s (%s): %s",
                self.target.channel,
                slack_error(exc),
                self.delivery,
            )
        except Exception:
            self._undelivered()
            log.exception("could not deliver the end of an answer in %s", self.target.channel)
        finally:
            await self._close_stream()
            self._hold_update(False)
            self._joined(None)
        result.delivery = self.delivery

    def _undelivered(self) -> None:
        """The end of the answer was not shown: part of it if any message went out."""
        self.delivery = "partial" if (self.finished_messages or self.ts) else "failed"

    # -- writing while the answer streams --------------------------------------------------
    async def _run(self) -> None:
        """Write as text arrives: the first words at once, then at most one write every
        ``interval``, each in its turn and carrying everything pending. Gives up waiting as
        soon as the answer is over (the last write takes everything left). A write that
        fails is left for the next one (each carries everything pending), so this task
        never raises."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self._closing.is_set():
                return
            if self.ts is not None:
                wait = self._last_write + self.interval - time.monotonic()
                if wait > 0 and not await self._unless_closed(asyncio.sleep(wait)):
                    return
            try:
                async with self._writing:
                    await self._flush(final=False)
            except _Superseded:
                return
            except Exception as exc:  # never ends the writer: the final write retries it all
                log.warning("a streamed write failed (%s); the next one retries", slack_error(exc))
            self._last_write = time.monotonic()

    async def _unless_closed(self, work: Awaitable[None]) -> bool:
        """Run ``work`` unless the answer ends first (then cancel it and say False)."""
        task = asyncio.ensure_future(work)
        closing = asyncio.ensure_future(self._closing.wait())
        try:
            await asyncio.wait({task, closing}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            closing.cancel()
        if task.done():
            task.result()
            return True
        task.cancel()
        return False

    async def _turn(self, method: str, *, final: bool) -> None:
        """This answer's turn for one ``method`` call in the workspace's budget. A final
        write goes first; an intermediate one is abandoned when the answer ends."""
        if final:
            await self.pacer.turn(method, channel=self.target.channel, urgent=True)
            return
        served = self._served.get(method, 0)
        if not await self._unless_closed(
            self.pacer.turn(method, channel=self.target.channel, served=served)
        ):
            raise _Superseded
        self._served[method] = served + 1
        if self._newcomer_in == method:
            self._joined(None)

    def _joined(self, method: str | None) -> None:
        """This answer now writes intermediate ``method`` calls and has had no turn yet
        (None: no longer waiting for a first one)."""
        if self._newcomer_in is not None:
            self.pacer.lane(self._newcomer_in).newcomers -= 1
        if method is not None:
            self.pacer.lane(method).newcomers += 1
        self._newcomer_in = method

    def _current(self) -> str:
        return self.text[self.base :]

    async def _flush(self, *, final: bool) -> None:
        """Send what is pending in the current message (rolling over when it is full)."""
        while True:
            pending = self._current()
            if len(pending) > self.limit:
                head = split_text(pending, self.limit)[0]
                await self._send(head, complete=True, final=final)
                self.base += len(head)
                while self.base < len(self.text) and self.text[self.base].isspace():
                    self.base += 1
                continue
            if len(pending) > self.sent or (self.ts is None and pending):
                await self._send(pending, complete=False, final=final)
            return

    async def _call(self, method: str, **kwargs: Any) -> Any:
        """One Web API call; a 5xx or a transport error is retried a few times with a short
        backoff (429s are the client's: it waits them out). Raises what is left."""
        transient_left = TRANSIENT_RETRIES
        backoff = TRANSIENT_BACKOFF_S
        while True:
            try:
                self.writes += 1
                return await getattr(self.client, method)(**kwargs)
            except WRITE_ERRORS as exc:
                if not transient(exc) or transient_left <= 0:
                    raise
                transient_left -= 1
                log.info("%s failed (%s); retrying in %.1fs", method, slack_error(exc), backoff)
                await asyncio.sleep(backoff)
                backoff *= 2

    async def _send(self, text: str, *, complete: bool, final: bool) -> None:
        """Show ``text`` (the current message's whole text so far); ``complete``: the
        message is full and the rest goes on in the next one."""
        if self.ts is None:
            # A new message: a native stream when the budget admits one now (a part that is
            # already complete is simply posted).
            self.native = not complete and self.may_stream and await self.pacer.open_stream()
            if not (self.native or complete or final):
                if not self.pacer.room_for_updates():
                    # The answers already owed a final chat.update fill the update budget:
                    # this one shows nothing until it ends, then comes whole in one
                    # chat.postMessage (its first words now would leave its end waiting
                    # minutes for an update).
                    return
                self._hold_update(True)  # counted before the post: no other answer races it
        if self.native and complete:
            await self._complete_stream(text, final=final)
            return
        if self.native:
            try:
                await self._send_native(text, final=final)
                return
            except WRITE_ERRORS as exc:
                if self.ts is None:
                    # Starting a native stream failed (the method is unknown here, the
                    # channel type unsupported, a proxy lacks it): this answer goes out with
                    # chat.postMessage + chat.update instead.
                    log.info(
                        "native streaming unavailable (%s); using chat.update", slack_error(exc)
                    )
                    self.may_stream = False
                else:
                    # The stream cannot continue: it is stopped as it is, and a new message
                    # carries the whole text of this part so far.
                    log.warning(
                        "a streamed write failed (%s); continuing with chat.update",
                        slack_error(exc),
                    )
                    await self._close_stream()
                self.native = False
        await self._send_update(text, final=final or complete)
        if complete:
            self._last_update_made()

    async def _complete_stream(self, text: str, *, final: bool) -> None:
        """A full message's stream: the rest of its text appended, then stopped (a stop
        that fails leaves the stream as it is: every word is shown, once)."""
        if len(text) > self.sent:
            try:
                await self._send_native(text, final=final)
            except WRITE_ERRORS as exc:
                log.warning(
                    "a streamed write failed (%s); continuing with chat.update", slack_error(exc)
                )
                await self._close_stream()
                self.native = False
                await self._send_update(text, final=True)
                self._last_update_made()
                return
        await self._close_stream()

    async def _send_native(self, text: str, *, final: bool) -> None:
        t = self.target
        if self.ts is None:  # its budget was counted by open_stream
            resp = await self._call(
                "chat_startStream",
                channel=t.channel,
                thread_ts=t.thread_ts,
                recipient_user_id=t.user,
                recipient_team_id=t.team,
                markdown_text=escape(text),
            )
            self.ts = resp["ts"]
            self._joined(APPEND)
        else:
            await self._turn(APPEND, final=final)
            await self._call(
                "chat_appendStream",
                channel=t.channel,
                ts=self.ts,
                markdown_text=escape(text[self.sent :]),
            )
        self.sent = len(text)

    async def _stop(self, rest: str, blocks: list[Any] | None) -> None:
        """Stop the current stream with the rest of its text (its budget was counted when
        it was opened, so it never waits for a turn)."""
        await self._call(
            "chat_stopStream",
            channel=self.target.channel,
            ts=self.ts,
            markdown_text=escape(rest) or None,
            blocks=blocks,
        )
        self._roll()

    async def _close_stream(self) -> None:
        """Stop a native stream left open (best effort; what it shows stays as it is)."""
        if not (self.native and self.ts is not None):
            return
        try:
            await self._stop("", blocks=None)
        except WRITE_ERRORS as exc:
            log.warning("could not stop a stream in %s (%s)", self.target.channel, slack_error(exc))
            self._roll()

    def _roll(self) -> None:
        if self.ts:
            self.finished_messages.append(self.ts)
        self.ts = None
        self.sent = 0
        self._joined(None)

    def _hold_update(self, holds: bool) -> None:
        """Count this answer among those owed a final chat.update (the pacer keeps room)."""
        if holds != self._holds_update:
            self.pacer.updating += 1 if holds else -1
            self._holds_update = holds

    def _last_update_made(self) -> None:
        self._roll()
        self._hold_update(False)

    async def _send_update(
        self, text: str, blocks: list[Any] | None = None, *, final: bool = False
    ) -> None:
        t = self.target
        body = escape(text) or "…"
        if self.ts is None:
            await self._turn(POST, final=final)
            resp = await self._call(
                "chat_postMessage",
                channel=t.channel,
                thread_ts=t.thread_ts,
                text=body,
                blocks=blocks,
                unfurl_links=False,
                unfurl_media=False,
            )
            self.ts = resp["ts"]
            self._hold_update(not final)
            self._joined(None if final else UPDATE)
        else:
            await self._turn(UPDATE, final=final)
            await self._call("chat_update", channel=t.channel, ts=self.ts, text=body, blocks=blocks)
        self.sent = len(text)

    # -- the last write --------------------------------------------------------------------
    async def _finish(self, result: ExchangeResult) -> None:
        """The last write: the whole remaining text with sources, footer and feedback."""
        if not self.text and result.answer:
            self.text = defang_links(result.answer)
        while len(self._current()) > self.limit:  # full messages before the last one
            head = split_text(self._current(), self.limit)[0]
            await self._send(head, complete=True, final=True)
            self.base += len(head)
            while self.base < len(self.text) and self.text[self.base].isspace():
                self.base += 1
        tail = self._current()
        if self.ts is None and self.may_stream and tail:
            # Nothing of this message is shown yet: one chat.postMessage with everything is
            # the fastest and cheapest last write.
            self.may_stream = False
        if self.native and self.ts is not None:
            extras = answer_blocks(
                "", result, offline_models=self.offline_models, include_text=False
            )
            try:
                await self._stop(tail[self.sent :], extras)
                return
            except WRITE_ERRORS as exc:
                # What the stream shows stays; only what it does not (the rest of the text,
                # the sources, footer and buttons) goes in a new message, never the text
                # shown already.
                log.warning(
                    "chat.stopStream failed (%s); posting the rest on its own",
                    slack_error(exc),
                )
                self.native = False
                tail = tail[self.sent :]
                self._roll()
        self.native = False
        blocks = answer_blocks(escape(tail), result, offline_models=self.offline_models)
        await self._send_update(tail, blocks=blocks, final=True)
        self._last_update_made()
