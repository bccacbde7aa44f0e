"""Web API calls made after an ack that must not be lost to a blip.

Rate limits are the client's (bot/slack/metered.py waits out a 429 for every call, pausing
the method for the whole workspace), and it retries a failed connection twice (bot/slack/
app.py ``make_client``); ``patiently`` also waits out 5xx and transport errors a little
longer, within a total bound, for the few calls an answer cannot do without (opening the
asker's DM, the message an answer threads under).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from bot.slack.streaming import WRITE_ERRORS, slack_error, transient

log = logging.getLogger("concierge.slack.calls")
T = TypeVar("T")
PATIENCE_S = 30.0  # the longest a call is retried in all


async def patiently(call: Callable[[], Awaitable[T]], *, limit_s: float = PATIENCE_S) -> T:
    """``call()``, retried on 5xx and transport errors until ``limit_s`` has passed; any
    other error (a 429 the client gave up on included), or the last one, is raised."""
    deadline = time.monotonic() + limit_s
    backoff = 0.2
    while True:
        try:
            return await call()
        except WRITE_ERRORS as exc:
            if not transient(exc) or time.monotonic() + backoff > deadline:
                raise
            log.info("a Slack call failed (%s); retrying in %.1fs", slack_error(exc), backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)
