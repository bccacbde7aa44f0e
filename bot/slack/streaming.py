"""The emit step for Slack: a Sink that streams an answer into a thread.

The first words go out as soon as the model produces them (no 256-character buffer); after
that, writes are coalesced under the workspace's shared budget (bot/slack/pacing.py). Slack's
native streaming (chat.startStream / appendStream / stopStream) is used where it works, and
chat.postMessage + chat.update otherwise. Text only ever grows; a 429 delays a write but never
drops it; the final message holds the whole answer, split over several messages when it
would exceed one message's limit.

This streamer owns the retries of its own writes (its client has no retry handlers): a 429
pauses the workspace's bucket for its Retry-After; a 5xx or a transport error is retried a
few times with a short backoff. A native stream that still cannot continue is stopped and the
answer goes on with chat.postMessage + chat.update carrying the whole text so far. A stream
is always stopped when the answer ends, and a failed chat.stopStream never posts the text a
second time. What the person finally saw is reported as ``result.delivery``.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.core.types import Delivery, ExchangeResult
from bot.slack.blocks import MARKDOWN_LIMIT, answer_blocks
from bot.slack.pacing import Pacer
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


def retry_after(exc: SlackApiError) -> float | None:
    if exc.response is not None and exc.response.status_code == 429:
        return float(
            exc.response.headers.get("Retry-After", exc.response.headers.get("retry-after", 1))
        )
    return None


def transient(exc: BaseException) -> bool:
    """A failure that may pass: a 5xx from Slack, or the connection failed or timed out."""
    if isinstance(exc, SlackApiError):
        status = getattr(exc.response, "status_code", 0) or 0
        return int(status) >= 500
    return isinstance(exc, aiohttp.ClientError | asyncio.TimeoutError | OSError)


class SlackStreamer:
    """One answer's messages. Runs on the event loop; a background task does the writes."""

    def __init__(
        self,
        client: AsyncWebClient,
        target: Target,
        pacer: Pacer,
        *,
        native: bool = True,
        message_limit: int = 11_000,
        offline_models: frozenset[str] = frozenset({"offline"}),
    ) -> None:
        self.client = client
        self.target = target
        self.pacer = pacer
        self.native = native and target.thread_ts is not None
        self.limit = min(message_limit, MARKDOWN_LIMIT)
        self.offline_models = offline_models
        # Everything the pipeline wrote, unescaped, with Markdown links defanged as it came
        # (defang_links: the same whatever the chunking, so every update is safe too).
        self.text = ""
        self.sent = 0  # characters of the current message confirmed by Slack
        self.base = 0  # where the current message starts in self.text
        self.ts: str | None = None  # the current message
        self.finished_messages: list[str] = []
        self.writes = 0
        self._wake = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self._writing = asyncio.Lock()  # a flush and a replace never interleave
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
            self.text = self.text[: self.base] + defang_links(text)
            # -1 differs from any length: the next flush rewrites the message shown.
            self.sent = -1 if self.ts is not None else 0
        await self.write("")

    async def close(self, result: ExchangeResult) -> None:
        """The last write, whatever happened before; never raises. ``result.delivery`` says
        what the person saw."""
        self._closing = True
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
        result.delivery = self.delivery

    def _undelivered(self) -> None:
        """The end of the answer was not shown: part of it if any message went out."""
        self.delivery = "partial" if (self.finished_messages or self.ts) else "failed"

    # -- writing ---------------------------------------------------------------------------
    def _family(self) -> str:
        return "append" if self.native else "update"

    async def _run(self) -> None:
        """Write as text arrives: the first words at once, then one coalesced update per slot
        of the workspace budget. Stops waiting for a slot as soon as the answer is over (the
        final write takes everything left). A write that fails is left for the next one
        (each carries everything pending), so this task never raises."""
        first = True
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self._closing:
                return
            if not first:
                slot = asyncio.ensure_future(
                    self.pacer.bucket(self.target.team, self._family()).acquire()
                )
                closed = asyncio.ensure_future(self._closed())
                done, _ = await asyncio.wait({slot, closed}, return_when=asyncio.FIRST_COMPLETED)
                if slot not in done:
                    slot.cancel()
                    return
                closed.cancel()
                if self._closing:
                    return
            first = False
            try:
                async with self._writing:
                    await self._flush(final=False)
            except Exception as exc:  # never ends the writer: the final write retries it all
                log.warning("a streamed write failed (%s); the next one retries", slack_error(exc))

    async def _closed(self) -> None:
        while not self._closing:
            await self._wake.wait()
            self._wake.clear()
        self._wake.set()

    def _current(self) -> str:
        return self.text[self.base :]

    async def _flush(self, *, final: bool) -> None:
        """Send what is pending in the current message (rolling over when it is full)."""
        while True:
            pending = self._current()
            if len(pending) > self.limit:
                head = split_text(pending, self.limit)[0]
                await self._send(head, complete=True)
                self.base += len(head)
                while self.base < len(self.text) and self.text[self.base].isspace():
                    self.base += 1
                continue
            if len(pending) > self.sent or (self.ts is None and pending):
                await self._send(pending, complete=False)
            return

    async def _call(self, method: str, family: str, **kwargs: Any) -> Any:
        """One Web API call. Waits out 429s (pausing the workspace's bucket) and retries a 5xx
        or a transport error a few times with a short backoff; raises what is left."""
        bucket = self.pacer.bucket(self.target.team, family)
        transient_left = TRANSIENT_RETRIES
        backoff = TRANSIENT_BACKOFF_S
        for _ in range(20):
            try:
                self.writes += 1
                return await getattr(self.client, method)(**kwargs)
            except WRITE_ERRORS as exc:
                wait = retry_after(exc) if isinstance(exc, SlackApiError) else None
                if wait is not None:
                    log.info("%s rate limited; retrying in %.1fs", method, wait)
                    bucket.pause(wait)
                    await bucket.acquire()
                    continue
                if not transient(exc) or transient_left <= 0:
                    raise
                transient_left -= 1
                log.info("%s failed (%s); retrying in %.1fs", method, slack_error(exc), backoff)
                await asyncio.sleep(backoff)
                backoff *= 2
        raise RuntimeError(f"{method} kept being rate limited")

    async def _send(self, text: str, *, complete: bool) -> None:
        if self.native:
            try:
                await self._send_native(text)
            except WRITE_ERRORS as exc:
                if self.ts is None:
                    # Starting a native stream failed (the method is unknown here, the
                    # channel type unsupported, a proxy lacks it): the answer goes out with
                    # chat.postMessage + chat.update instead.
                    log.info(
                        "native streaming unavailable (%s); using chat.update", slack_error(exc)
                    )
                else:
                    # The stream cannot continue: it is stopped as it is, and a new message
                    # carries the whole text of this part so far.
                    log.warning(
                        "chat.appendStream failed (%s); continuing with chat.update",
                        slack_error(exc),
                    )
                    await self._close_stream()
                self.native = False
            else:
                if complete:  # this message is full: the rest goes on in the next one
                    await self._close_stream()
                return
        await self._send_update(text)
        if complete:
            self._roll()

    async def _send_native(self, text: str) -> None:
        t = self.target
        if self.ts is None:
            resp = await self._call(
                "chat_startStream",
                "append",
                channel=t.channel,
                thread_ts=t.thread_ts,
                recipient_user_id=t.user,
                recipient_team_id=t.team,
                markdown_text=escape(text),
            )
            self.ts = resp["ts"]
        else:
            await self._call(
                "chat_appendStream",
                "append",
                channel=t.channel,
                ts=self.ts,
                markdown_text=escape(text[self.sent :]),
            )
        self.sent = len(text)

    async def _stop(self, blocks: list[Any] | None) -> None:
        await self._call(
            "chat_stopStream", "append", channel=self.target.channel, ts=self.ts, blocks=blocks
        )
        self._roll()

    async def _close_stream(self) -> None:
        """Stop a native stream left open (best effort; what it shows stays as it is)."""
        if not (self.native and self.ts is not None):
            return
        try:
            await self._stop(blocks=None)
        except WRITE_ERRORS as exc:
            log.warning("could not stop a stream in %s (%s)", self.target.channel, slack_error(exc))
            self._roll()

    def _roll(self) -> None:
        if self.ts:
            self.finished_messages.append(self.ts)
        self.ts = None
        self.sent = 0

    async def _send_update(self, text: str, blocks: list[Any] | None = None) -> None:
        t = self.target
        body = escape(text) or "…"
        if self.ts is None:
            resp = await self._call(
                "chat_postMessage",
                "update",
                channel=t.channel,
                thread_ts=t.thread_ts,
                text=body,
                blocks=blocks,
                unfurl_links=False,
                unfurl_media=False,
            )
            self.ts = resp["ts"]
        else:
            await self._call(
                "chat_update",
                "update",
                channel=t.channel,
                ts=self.ts,
                text=body,
                blocks=blocks,
            )
        self.sent = len(text)

    async def _finish(self, result: ExchangeResult) -> None:
        """The last write: the whole remaining text with sources, footer and feedback."""
        if not self.text and result.answer:
            self.text = defang_links(result.answer)
        if self.ts is not None:
            await self.pacer.bucket(self.target.team, self._family()).acquire(urgent=True)
        await self._flush(final=True)
        tail = self._current()
        if self.native and self.ts is not None:
            extras = answer_blocks(
                "", result, offline_models=self.offline_models, include_text=False
            )
            try:
                await self._stop(extras)
                return
            except WRITE_ERRORS as exc:
                # The text is all in the stream already: only the sources, footer and
                # buttons are missing, so only they are posted (never the text again).
                log.warning(
                    "chat.stopStream failed (%s); posting the sources on their own",
                    slack_error(exc),
                )
                self.native = False
                self._roll()
                await self._send_update("", blocks=extras)
                self._roll()
                return
        self.native = False
        blocks = answer_blocks(escape(tail), result, offline_models=self.offline_models)
        await self._send_update(tail, blocks=blocks)
        self._roll()
