"""Replayed commands and clicks do nothing twice, without holding their ack.

A command or click is keyed on its signature (a replay within Slack's 5-minute window repeats
it exactly). The key is claimed in an in-process cache at once and in the shared store
(database or Redis, bot/slack/dedupe.py) for at most CLAIM_BUDGET_S before the ack. When the
store is slower than that, the request is acknowledged anyway and the claim goes on; the work
after the ack (``once``) then waits for its answer and does nothing if the claim finds the
request was a replay. Runs on the event loop only.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, MutableMapping
from typing import Any

from cachetools import TTLCache

from bot.slack.dedupe import Deduper

log = logging.getLogger("concierge.slack.replay")
REPLAY_WINDOW_S = 600  # Slack refuses timestamps older than 5 minutes; keep keys for 10
CLAIM_BUDGET_S = 0.02  # the longest an ack waits for the shared claim
LATE_CLAIM = "concierge_replay_claim"  # where a claim not waited for waits in the context


class ReplayGuard:
    def __init__(self, deduper: Deduper) -> None:
        self.deduper = deduper
        self.recent: TTLCache[str, bool] = TTLCache(maxsize=100_000, ttl=REPLAY_WINDOW_S)

    async def admit(self, key: str, context: MutableMapping[str, Any]) -> bool:
        """False for a replay (drop it before any work). True to go ahead; a shared claim
        still running is left in ``context`` for ``once``."""
        if key in self.recent:
            return False
        self.recent[key] = True
        claim = asyncio.ensure_future(self.deduper.claim(key, REPLAY_WINDOW_S))
        done, _ = await asyncio.wait({claim}, timeout=CLAIM_BUDGET_S)
        if claim not in done:
            log.warning("the replay check is slow; acknowledging without waiting for it")
            claim.add_done_callback(_observe)
            context[LATE_CLAIM] = claim
            return True
        return _first(claim)


def _first(claim: asyncio.Future[bool]) -> bool:
    """The claim's answer; a store that failed lets the request go ahead (logged)."""
    exc = claim.exception()
    if exc is not None:
        log.error("the replay check failed (%s); going ahead", exc.__class__.__name__)
        return True
    return bool(claim.result())


def _observe(claim: asyncio.Future[bool]) -> None:
    """Retrieve a late claim's outcome so that its failure is logged, never lost."""
    if not claim.cancelled():
        claim.exception()


async def once(context: MutableMapping[str, Any], work: Coroutine[Any, Any, Any]) -> None:
    """Run ``work`` (after the ack) unless the late replay claim finds a replay."""
    claim = context.get(LATE_CLAIM)
    if isinstance(claim, asyncio.Future):
        await asyncio.wait({claim})
        if not _first(claim):
            work.close()
            log.warning("dropped a repeated delivery after its ack (sig)")
            return
    await work
