"""The workspace's Slack write budget, shared fairly by every answer in flight, and the one
owner of Slack's rate limits.

Slack limits each Web API method per workspace (per app token) by the minute, bursts
tolerated: chat.startStream and chat.stopStream are Tier 2 (20+ a minute), chat.update Tier 3
(50+), chat.appendStream Tier 4 (100+); chat.postMessage allows about one a second per
channel, with bursts. Each limit here is aiolimiter's leaky bucket of that many calls a
minute: a burst may spend a whole minute's calls at once, then they come back steadily.

- A **lane** per method (per channel for chat.postMessage) hands out its calls in turn:
  final writes first, then the answers served least, then whoever has waited longest (each
  answer asks again only after its turn, so answers take turns round-robin and each turn
  carries all of an answer's pending text). An answer that has had a turn leaves room for
  the answers that have not had one yet (at least half the burst), so one that arrives
  late is not starved by those that came first. Intermediate chat.updates also leave room
  for the final update of every answer that will need one.
- A **native stream** is admitted only when its chat.startStream and its chat.stopStream
  both fit in Tier 2 now; both are counted at once, so an answer's last write never waits
  for the budget. When they do not fit (more than ~20 new answers a minute), the answer
  uses chat.postMessage + chat.update instead of queueing for a stream. When even the
  update budget is spoken for (every call of it owed to an answer's final update), a new
  answer is posted whole, once, when it ends.
- A **429** pauses its method for every caller until its Retry-After has passed
  (``MeteredWebClient`` in bot/slack/metered.py reports it here and retries the call after
  the pause; nothing else in the process retries a 429).

aiolimiter only counts the calls; the order of turns is the lanes' own (aiolimiter's queue
is first come, first served, with no notion of final writes or of answers served least).

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

from aiolimiter import AsyncLimiter

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
    """One method's calls, handed out in turn within its budget."""

    def __init__(
        self,
        pacer: Pacer,
        method: str,
        budget: AsyncLimiter,
        reserve: Callable[[], int] = lambda: 0,
    ) -> None:
        self.pacer = pacer
        self.method = method
        self.budget = budget
        self.reserve = reserve  # calls intermediate writes must leave in the budget
        # Answers writing here that have not had an intermediate turn yet: an answer that
        # has had one leaves room for each of them (one that came late still gets its turn).
        self.newcomers = 0
        self._waiting: list[tuple[int, int, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def turn(self, *, urgent: bool = False, served: int = 0) -> None:
        """Wait for this caller's turn and a call in the budget (counted as taken). Final
        writes go first, then the answers served least here, then the longest waiting."""
        rank = 0 if urgent else 1
        if self.free(self._need(rank, served)):  # nobody ahead, and room now
            await self.take()
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiting, (rank, served, next(self._seq), fut))
        self._changed.set()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._dispatch())
        await fut

    def _need(self, rank: int, served: int) -> int:
        """Room in the budget a turn needs: one call for a final write; an intermediate
        one also leaves the reserve, and once served, room for the first turns of answers
        that have not had one: every newcomer now, and at least half the burst for the
        answers still to come (repeat writes get the steady rate, never the whole burst)."""
        if rank == 0:
            return 1
        room = max(self.newcomers, int(self.budget.max_rate) // 2) if served else 0
        return 1 + self.reserve() + room

    def free(self, calls: int = 1) -> bool:
        """Whether ``calls`` more fit now (nobody waiting ahead, no 429 pause)."""
        return (
            not self._waiting
            and self.pacer.paused_for(self.method) <= 0
            and calls <= self.budget.max_rate
            and self.budget.has_capacity(calls)
        )

    async def take(self) -> None:
        """Count one call now (after ``free`` said it fits: never waits)."""
        await self.budget.acquire()

    async def _dispatch(self) -> None:
        # One call's worth drains from the bucket in this time.
        slot_s = self.budget.time_period / self.budget.max_rate
        while self._waiting:
            self._changed.clear()
            rank, served, _, fut = self._waiting[0]
            if fut.done():  # its caller gave up (the answer ended meanwhile)
                heapq.heappop(self._waiting)
                continue
            wait = self.pacer.paused_for(self.method)
            if wait <= 0:
                need = self._need(rank, served)
                if need <= self.budget.max_rate and self.budget.has_capacity(need):
                    await self.budget.acquire()  # there is room: returns at once
                    heapq.heappop(self._waiting)
                    fut.set_result(None)
                    continue
                wait = slot_s
            # Until a call drains or the pause ends; sooner if an urgent write arrives (it
            # may use the room kept for final writes).
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout=wait)


class Pacer:
    """One workspace's write budget and rate-limit state (one per app token)."""

    def __init__(self, budget: Budget | None = None) -> None:
        self.budget = budget or Budget()
        self._paused: dict[str, float] = {}
        self._lanes: dict[tuple[str, str], Lane] = {}
        # Answers holding a chat.update message that still needs its final update.
        self.updating = 0
        b = self.budget
        self._rates: dict[str, tuple[float, float]] = {  # (calls, per seconds)
            START: (b.streams_per_minute, 60),
            STOP: (b.streams_per_minute, 60),
            APPEND: (b.append_per_minute, 60),
            UPDATE: (b.update_per_minute, 60),
            POST: (b.posts_per_channel_10s, 10),
        }

    def lane(self, method: str, channel: str = "") -> Lane:
        key = (method, channel if method == POST else "")
        lane = self._lanes.get(key)
        if lane is None:
            calls, period = self._rates[method]
            reserve = self._update_reserve if method == UPDATE else (lambda: 0)
            lane = Lane(self, method, AsyncLimiter(max(calls, 1), period), reserve)
            self._lanes[key] = lane
        return lane

    def _update_reserve(self) -> int:
        """Room intermediate chat.updates leave for final ones: one per answer that will
        need one. When more answers need one than the budget holds, intermediate updates
        wait: a finished answer shown whole comes before a growing one."""
        return self.updating

    async def turn(
        self, method: str, *, channel: str = "", urgent: bool = False, served: int = 0
    ) -> None:
        await self.lane(method, channel).turn(urgent=urgent, served=served)

    def room_for_updates(self) -> bool:
        """Whether one more answer may post its first words and owe a final chat.update:
        the update budget holds the final updates of all those that owe one, and its own."""
        lane = self.lane(UPDATE)
        owed = self.updating + 1
        return owed <= lane.budget.max_rate and lane.budget.has_capacity(owed)

    async def open_stream(self) -> bool:
        """Whether a new native stream fits: its start and its stop are both counted now
        (so its final write never waits), or neither is and the answer uses post + update."""
        start, stop = self.lane(START), self.lane(STOP)
        if not (start.free() and stop.free()):
            return False
        await start.take()
        await stop.take()
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
