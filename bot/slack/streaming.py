"""The emit step for Slack: a Sink that streams an answer into a thread.

The first words go out as soon as the model produces them (no 256-character buffer); after
that, writes are coalesced under the workspace's shared budget (bot/slack/pacing.py). Slack's
native streaming (chat.startStream / appendStream / stopStream) is used where it works, and
chat.postMessage + chat.update otherwise. Text only ever grows; a 429 delays a write but never
drops it; the final message holds the whole answer, split over several messages when it
would exceed one message's limit.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.core.types import ExchangeResult
from bot.slack.blocks import MARKDOWN_LIMIT, answer_blocks
from bot.slack.pacing import Pacer
from bot.slack.text import defang_links, escape, split_text

log = logging.getLogger("concierge.slack.stream")


@dataclass
class Target:
    channel: str
    thread_ts: str | None
    team: str
    user: str | None = None  # the asker, for native streaming's recipient


def slack_error(exc: SlackApiError) -> str:
    """Slack's error code, or the HTTP status when the body was not Slack's JSON."""
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
        self.statuses: list[str] = []

    # -- Sink ------------------------------------------------------------------------------
    async def status(self, text: str) -> None:
        self.statuses.append(text)

    async def write(self, text: str) -> None:
        self.text += defang_links(text, self.text[-1:])
        if self._task is None:
            self._task = asyncio.create_task(self._run())
        self._wake.set()

    async def close(self, result: ExchangeResult) -> None:
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
        await self._finish(result)

    # -- writing ---------------------------------------------------------------------------
    def _family(self) -> str:
        return "append" if self.native else "update"

    async def _run(self) -> None:
        """Write as text arrives: the first words at once, then one coalesced update per slot
        of the workspace budget. Stops waiting for a slot as soon as the answer is over (the
        final write takes everything left)."""
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
            await self._flush(final=False)

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
        """One Web API call; waits out 429s (pausing the workspace's bucket) and retries."""
        bucket = self.pacer.bucket(self.target.team, family)
        for _ in range(20):
            try:
                self.writes += 1
                return await getattr(self.client, method)(**kwargs)
            except SlackApiError as exc:
                wait = retry_after(exc)
                if wait is None:
                    raise
                log.info("%s rate limited; retrying in %.1fs", method, wait)
                bucket.pause(wait)
                await bucket.acquire()
        raise RuntimeError(f"{method} kept being rate limited")

    async def _send(self, text: str, *, complete: bool) -> None:
        if self.native:
            try:
                await self._send_native(text)
            except SlackApiError as exc:
                if self.ts is not None:
                    raise
                # Starting a native stream failed for a reason other than a rate limit (the
                # method is unknown here, the channel type unsupported, a proxy lacks it):
                # the answer goes out with chat.postMessage + chat.update instead.
                log.info("native streaming unavailable (%s); using chat.update", slack_error(exc))
                self.native = False
            else:
                if complete:
                    await self._stop(text, blocks=None)
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

    async def _stop(self, text: str, blocks: list[Any] | None) -> None:
        await self._call(
            "chat_stopStream", "append", channel=self.target.channel, ts=self.ts, blocks=blocks
        )
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
        blocks = answer_blocks(escape(tail), result, offline_models=self.offline_models)
        if self.native and self.ts is not None:
            extras = answer_blocks(
                "", result, offline_models=self.offline_models, include_text=False
            )
            try:
                await self._stop(tail, extras)
                return
            except SlackApiError:
                log.warning("chat.stopStream failed; posting the final message instead")
                self.native = False
                self._roll()
        self.native = False
        await self._send_update(tail, blocks=blocks)
        self._roll()
