"""Web API calls made after an ack that must not be lost to a burst of 429s or a blip.

The client already retries each call a couple of times (bot/slack/app.py ``make_client``);
``patiently`` keeps trying a little longer, within a total bound, for the few calls an answer
cannot do without (opening the asker's DM, the message an answer threads under).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from slack_sdk.errors import SlackApiError

from bot.slack.streaming import WRITE_ERRORS, retry_after, slack_error, transient

log = logging.getLogger("concierge.slack.calls")
T = TypeVar("T")
PATIENCE_S = 30.0  # the longest a call is retried in all


async def patiently(call: Callable[[], Awaitable[T]], *, limit_s: float = PATIENCE_S) -> T:
    """``call()``, retried on 429 (after its Retry-After), 5xx and transport errors until
    ``limit_s`` has passed; any other error, or the last one, is raised."""
    deadline = time.monotonic() + limit_s
    backoff = 0.2
    while True:
        try:
            return await call()
        except WRITE_ERRORS as exc:
            wait = retry_after(exc) if isinstance(exc, SlackApiError) else None
            if wait is None and not transient(exc):
                raise
            wait = backoff if wait is None else wait
            if time.monotonic() + wait > deadline:
                raise
            log.info("a Slack call failed (%s); retrying in %.1fs", slack_error(exc), wait)
            await asyncio.sleep(wait)
            backoff = min(backoff * 2, 5.0)
