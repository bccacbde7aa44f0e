"""The limits step: a per-person question rate, in-process or shared through Redis.

A fixed one-minute window per person. With REDIS_URL set, every instance counts in the same
Redis key; otherwise a cachetools TTL cache, guarded by a lock, counts in this process.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol

from cachetools import TTLCache

from bot.core.shared import guard_for


@dataclass(frozen=True)
class LimitDecision:
    allowed: bool
    retry_after_s: float = 0.0
    reason: str | None = None


class RateLimiter(Protocol):
    async def check(self, key: str) -> LimitDecision: ...


class LocalRateLimiter:
    """Counts in this process; the event loop calls it, threads may too (hence the lock)."""

    def __init__(self, per_minute: int, window_s: float = 60.0) -> None:
        self.per_minute = per_minute
        self.window_s = window_s
        self._counts: TTLCache[str, tuple[float, int]] = TTLCache(maxsize=100_000, ttl=window_s)
        self._lock = threading.Lock()

    async def check(self, key: str) -> LimitDecision:
        now = time.monotonic()
        with self._lock:
            start, count = self._counts.get(key, (now, 0))
            if now - start >= self.window_s:
                start, count = now, 0
            count += 1
            self._counts[key] = (start, count)
        if count > self.per_minute:
            return LimitDecision(False, max(0.0, self.window_s - (now - start)), "rate_limited")
        return LimitDecision(True)


class RedisRateLimiter:
    """Shared by every instance that uses the same Redis and key prefix; counts in this
    process while Redis is unreachable (bot/core/shared.py)."""

    def __init__(self, client: Any, prefix: str, per_minute: int, window_s: int = 60) -> None:
        self.client = client
        self.prefix = prefix
        self.per_minute = per_minute
        self.window_s = window_s
        self.guard = guard_for(client)
        self.local = LocalRateLimiter(per_minute, window_s)

    async def check(self, key: str) -> LimitDecision:
        return await self.guard.run(lambda: self._shared(key), lambda: self.local.check(key))

    async def _shared(self, key: str) -> LimitDecision:
        bucket = int(time.time() // self.window_s)
        name = f"{self.prefix}rate:{key}:{bucket}"

        def incr() -> int:
            pipe = self.client.pipeline()
            pipe.incr(name)
            pipe.expire(name, self.window_s * 2)
            return int(pipe.execute()[0])

        count = await asyncio.to_thread(incr)
        if count > self.per_minute:
            retry = self.window_s - (time.time() % self.window_s)
            return LimitDecision(False, retry, "rate_limited")
        return LimitDecision(True)
