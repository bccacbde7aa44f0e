"""Admission control: at most ``CONCIERGE_MAX_ANSWERS`` answers are worked on at once in this
process; the questions beyond wait, in arrival order, for a free slot.

Why: acks, /healthz and the answers share one event loop. Under a burst of a thousand events,
a thousand answers in flight each take their turn on the loop between two acks, and acks took
seconds. Bounding the answers bounds that queue of ready work; a question that waits for a
slot costs nothing on the loop (a future in the semaphore's queue). Only answering waits:
the ack, the delivery claims and the look-ups ahead never do.

A waiting question is counted on /healthz and on the ``concierge_answers_queued`` gauge.
Runs on the event loop only (no lock needed); ``asyncio.Semaphore`` wakes its waiters in the
order they came (Python 3.11), so questions start in the order they joined the queue: after
their delivery claims, within milliseconds of arriving.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from bot.telemetry import ANSWERS_ACTIVE, ANSWERS_QUEUED


class Admission:
    """A bound on the answers worked on at once, with a FIFO queue beyond it."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("at least one answer must be allowed at a time")
        self.limit = limit
        self.active = 0
        self.queued = 0
        self._slots = asyncio.Semaphore(limit)

    @property
    def full(self) -> bool:
        """Whether a question arriving now would wait."""
        return self._slots.locked()

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one answer slot for the body; wait for one first when all are taken. A wait
        cancelled (shutdown) leaves the queue and raises ``CancelledError`` as usual."""
        self.queued += 1
        ANSWERS_QUEUED.inc()
        try:
            await self._slots.acquire()
        finally:
            self.queued -= 1
            ANSWERS_QUEUED.dec()
        self.active += 1
        ANSWERS_ACTIVE.inc()
        try:
            yield
        finally:
            self.active -= 1
            ANSWERS_ACTIVE.dec()
            self._slots.release()

    def state(self) -> dict[str, int]:
        """For /healthz."""
        return {
            "answers_active": self.active,
            "answers_queued": self.queued,
            "answers_limit": self.limit,
        }
