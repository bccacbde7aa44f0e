"""The workspace's Slack write budget, shared fairly by every answer in flight, and the one
owner of Slack's rate limits.

Slack limits each Web API method per workspace (per app token) by the minute, bursts
tolerated: chat.startStream and chat.stopStream are Tier 2 (20+ a minute), chat.update Tier 3
(50+), chat.appendStream Tier 4 (100+); chat.postMessage allows about one a second per
channel, with bursts. Each limit here is a moving window of that many calls ("20 in any
60 s": a burst may spend the whole minute at once), counted by the ``limits`` library.

- A **lane** per method (per channel for chat.postMessage) hands out its calls in turn:
  final writes first, then whoever has waited longest (each answer asks again only after
  its turn, so answers take turns round-robin and each turn carries all of an answer's
  pending text). Intermediate chat.updates leave room in the window for the final update
  of every answer that will need one.
- A **native stream** is admitted only when its chat.startStream and its chat.stopStream
  both fit in Tier 2 now; both are counted at once, so an answer's last write never waits
  for the budget. When they do not fit (more than ~20 new answers a minute), the answer
  uses chat.postMessage + chat.update instead of queueing for a stream.
- A **429** pauses its method for every caller until its Retry-After has passed
  (``PacedWebClient`` in bot/slack/metered.py reports it here and retries the call after the
  pause; nothing else in the process retries a 429).

Runs on the event loop only.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from limits import RateLimitItem, RateLimitItemPerMinute, RateLimitItemPerSecond
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter

log = logging.getLogger("concierge.slack.pacing")

START, APPEND, STOP = "chat.startStream", "chat.appendStream", "chat.stopStream"
UPDATE, POST = "chat.update", "chat.postMessage"


@dataclass(frozen=True)
class Budget:
    """Calls a minute per method for one workspace (Slack's documented floors by default)."""

    streams_per_minute: float = 20  # chat.startStream and chat.stopStream, each (Tier 2)
    append_per_minute: float = 100  # chat.appendStream (Tier 4)
    update_per_minute: float = 50  # chat.update (Tier 3)
    posts_per_channel_10s: float = 10  # chat.postMessage: ~1 a second per channel, bursts
    # One answer's intermediate writes are at least this far apart, so one answer alone
    # cannot spend the minute's budget in a second (its last write never waits for it).
    write_interval_s: float = 1.0


class Lane:
    """One method's calls, handed out in turn within its moving window."""

    def __init__(
        self,
        pacer: Pacer,
        method: str,
        item: RateLimitItem,
        key: str,
        reserve: Callable[[], int] = lambda: 0,
    ) -> None:
        self.pacer = pacer
        self.method = method
        self.item = item
        self.key = key
        self.reserve = reserve  # calls intermediate writes must leave in the window
        self._waiting: list[tuple[int, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def turn(self, *, urgent: bool = False) -> None:
        """Wait for this caller's turn and a call in the window (counted as taken)."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiting, (0 if urgent else 1, next(self._seq), fut))
        self._changed.set()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._dispatch())
        await fut

    async def take(self) -> bool:
        """A call now if the window has one and nobody is waiting or paused; else False."""
        if self._waiting or self.pacer.paused_for(self.method) > 0:
            return False
        return await self.pacer.limiter.test(self.item, self.key) and await self.pacer.hit(
            self.item, self.key
        )

    async def _dispatch(self) -> None:
        while self._waiting:
            self._changed.clear()
            rank, _, fut = self._waiting[0]
            if fut.done():  # its caller gave up (the answer ended meanwhile)
                heapq.heappop(self._waiting)
                continue
            wait = self.pacer.paused_for(self.method)
            if wait <= 0:
                stats = await self.pacer.limiter.get_window_stats(self.item, self.key)
                room = stats.remaining - (self.reserve() if rank else 0)  # 0: a final write
                if room > 0 and await self.pacer.hit(self.item, self.key):
                    heapq.heappop(self._waiting)
                    fut.set_result(None)
                    continue
                wait = max(stats.reset_time - time.time(), 0.005)
            # Until a call leaves the window or the pause ends; sooner if an urgent write
            # arrives (it may use the room kept for final writes).
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout=wait)


class Pacer:
    """One workspace's write budget and rate-limit state (one per app token)."""

    def __init__(self, budget: Budget | None = None) -> None:
        self.budget = budget or Budget()
        self.limiter = MovingWindowRateLimiter(MemoryStorage())
        self._paused: dict[str, float] = {}
        self._lanes: dict[tuple[str, str], Lane] = {}
        # Answers holding a chat.update message that still needs its final update.
        self.updating = 0
        b = self.budget
        self._items: dict[str, RateLimitItem] = {
            START: RateLimitItemPerMinute(max(int(b.streams_per_minute), 1)),
            STOP: RateLimitItemPerMinute(max(int(b.streams_per_minute), 1)),
            APPEND: RateLimitItemPerMinute(max(int(b.append_per_minute), 1)),
            UPDATE: RateLimitItemPerMinute(max(int(b.update_per_minute), 1)),
            POST: RateLimitItemPerSecond(max(int(b.posts_per_channel_10s), 1), 10),
        }

    async def hit(self, item: RateLimitItem, key: str) -> bool:
        return await self.limiter.hit(item, key)

    def lane(self, method: str, channel: str = "") -> Lane:
        key = (method, channel if method == POST else "")
        lane = self._lanes.get(key)
        if lane is None:
            reserve = self._update_reserve if method == UPDATE else (lambda: 0)
            lane = Lane(self, method, self._items[method], f"{method}/{key[1]}", reserve)
            self._lanes[key] = lane
        return lane

    def _update_reserve(self) -> int:
        """Room intermediate chat.updates leave for final ones: one per answer that will
        need one, at most half the window (intermediate progress never stops entirely)."""
        return min(self.updating, self._items[UPDATE].amount // 2)

    async def turn(self, method: str, *, channel: str = "", urgent: bool = False) -> None:
        await self.lane(method, channel).turn(urgent=urgent)

    async def open_stream(self) -> bool:
        """Whether a new native stream fits: its start and its stop are both counted now
        (so its final write never waits), or neither is and the answer uses post + update."""
        start, stop = self.lane(START), self.lane(STOP)
        if self.paused_for(START) > 0 or self.paused_for(STOP) > 0:
            return False
        if not await self.limiter.test(stop.item, stop.key):
            return False
        if not await start.take():
            return False
        await self.hit(stop.item, stop.key)
        return True

    # -- 429s ------------------------------------------------------------------------------
    def pause(self, method: str, seconds: float) -> None:
        """After a 429: nobody in this workspace calls ``method`` until it passes."""
        until = time.monotonic() + max(seconds, 0.0)
        if until > self._paused.get(method, 0.0):
            self._paused[method] = until
            log.info("%s rate limited: paused for %.1fs", method, seconds)
        for (m, _), lane in self._lanes.items():
            if m == method:
                lane._changed.set()

    def waits_out(self, method: str) -> bool:
        """Whether a call rate limited by a 429 is made again once the pause is over. Not
        chat.startStream: a new answer then uses chat.postMessage at once instead."""
        return method != START

    def paused_for(self, method: str) -> float:
        return max(self._paused.get(method, 0.0) - time.monotonic(), 0.0)

    async def unpaused(self, method: str) -> None:
        # A pause can only grow while it runs (pause() keeps the later end): sleep to its end.
        while (wait := self.paused_for(method)) > 0:  # noqa: ASYNC110
            await asyncio.sleep(wait)
