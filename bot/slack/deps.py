"""What the Slack listeners need, passed to each ``register(app, deps)``."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from slack_sdk.web.async_client import AsyncWebClient

from bot.runtime import Runtime
from bot.settings import Settings
from bot.slack.admission import Admission
from bot.slack.channels import ChannelDirectory, ChannelGuests
from bot.slack.dedupe import Deduper
from bot.slack.identity import SlackIdentityResolver
from bot.slack.pacing import Pacer

log = logging.getLogger("concierge.slack")


@dataclass
class SlackDeps:
    runtime: Runtime
    settings: Settings
    client: AsyncWebClient
    identity: SlackIdentityResolver
    pacer: Pacer
    deduper: Deduper
    offline_models: frozenset[str]
    channels: ChannelDirectory  # the one owner of conversations.info (names, sharing; cached)
    # The streamer's client: paced like ``client``, without connection retries (the streamer
    # retries its own writes' 5xx and transport errors).
    stream_client: AsyncWebClient | None = None
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    # Whether a channel has guest or external readers; refreshed in every instance on
    # member joins and leaves.
    channel_guests: ChannelGuests = field(default_factory=ChannelGuests)
    # Set when shutdown begins: nothing new is taken (HTTP answers 503), answers in flight
    # finish within the grace period.
    stopping: bool = False
    # At most settings.max_answers answers at once; the rest wait (bot/slack/admission.py).
    admission: Admission = field(init=False)

    def __post_init__(self) -> None:
        self.admission = Admission(self.settings.max_answers)

    def health(self) -> dict[str, Any]:
        """/healthz: alive, with the work after acks (tasks), answers worked on and queued."""
        return {"ok": True, "answers_in_flight": len(self.tasks), **self.admission.state()}

    @property
    def streaming_client(self) -> AsyncWebClient:
        return self.stream_client or self.client

    def spawn(self, work: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run slow work after the ack; keep a reference so shutdown can wait for it. Its
        failure is always observed and logged here (never "Task exception was never
        retrieved")."""
        task = asyncio.create_task(work)
        self.adopt(task)
        return task

    def adopt(self, task: asyncio.Task[Any]) -> None:
        """Track work someone else started after an ack (Bolt runs each listener in a task
        of its own: bot/slack/app.py hands it here as it starts), like ``spawn``'s own."""
        if task in self.tasks or task.done():
            return
        self.tasks.add(task)
        task.add_done_callback(self._done)

    async def idle(self) -> None:
        """Return once every piece of work started after an ack has finished, including the
        work it started meanwhile (a listener's answer, an answer's private follow-up).
        Shutdown drains the same set; tests await this instead of guessing a quiet period."""
        while self.tasks:
            await asyncio.wait(set(self.tasks))

    def _done(self, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error("work after an ack failed (%s)", exc.__class__.__name__, exc_info=exc)
