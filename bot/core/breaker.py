"""A circuit breaker per model: after ``failures`` failures in a row, a model is skipped for
``cooldown_s`` so that every question stops paying its timeout. Shared by all instances
through Redis when REDIS_URL is set; otherwise counted in this process (behind a lock).

Hand-written on purpose, after looking at pybreaker, aiobreaker and purgatory: they wrap a
call (``breaker.call(f)`` / ``async with breaker``) and judge it when it returns, while the
router's outcomes arrive apart from any one call (a raced attempt is judged after its answer
is over, a streamed one when its stream ends), a provider's Retry-After must hold a model
open for exactly that long, and the state must fall back to this process while Redis is away
(bot/core/shared.py). pybreaker's Redis storage is synchronous; aiobreaker is unmaintained
since 2021; purgatory has neither a hold nor a local fallback. What is left is a counter and
a key with a time to live.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any, Protocol

from bot.core.shared import guard_for


class Breaker(Protocol):
    async def is_open(self, model: str) -> bool: ...

    async def record(self, model: str, ok: bool) -> None: ...

    async def hold(self, model: str, seconds: float) -> None:
        """Skip ``model`` for ``seconds`` (a provider's Retry-After)."""


class LocalBreaker:
    def __init__(self, failures: int = 3, cooldown_s: float = 30.0) -> None:
        self.failures = failures
        self.cooldown_s = cooldown_s
        self._state: dict[str, tuple[int, float]] = {}
        self._lock = threading.Lock()

    async def is_open(self, model: str) -> bool:
        with self._lock:
            _, until = self._state.get(model, (0, 0.0))
            return time.monotonic() < until

    async def record(self, model: str, ok: bool) -> None:
        with self._lock:
            count, until = self._state.get(model, (0, 0.0))
            if ok:
                self._state[model] = (0, 0.0)
                return
            count += 1
            if count >= self.failures:
                self._state[model] = (0, time.monotonic() + self.cooldown_s)
            else:
                self._state[model] = (count, until)

    async def hold(self, model: str, seconds: float) -> None:
        with self._lock:
            count, until = self._state.get(model, (0, 0.0))
            self._state[model] = (count, max(until, time.monotonic() + seconds))


class RedisBreaker:
    def __init__(
        self, client: Any, prefix: str, failures: int = 3, cooldown_s: float = 30.0
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.failures = failures
        self.cooldown_s = cooldown_s
        self.guard = guard_for(client)  # while Redis is away, this process counts alone
        self.local = LocalBreaker(failures, cooldown_s)

    async def is_open(self, model: str) -> bool:
        async def shared() -> bool:
            key = f"{self.prefix}breaker:{model}:open"
            return bool(await asyncio.to_thread(self.client.exists, key))

        return await self.guard.run(shared, lambda: self.local.is_open(model))

    async def record(self, model: str, ok: bool) -> None:
        await self.guard.run(lambda: self._record(model, ok), lambda: self.local.record(model, ok))

    async def _record(self, model: str, ok: bool) -> None:
        fails = f"{self.prefix}breaker:{model}:fails"

        def write() -> None:
            if ok:
                self.client.delete(fails)
                return
            pipe = self.client.pipeline()
            pipe.incr(fails)
            pipe.expire(fails, int(self.cooldown_s * 4) + 1)
            count = int(pipe.execute()[0])
            if count >= self.failures:
                self.client.set(
                    f"{self.prefix}breaker:{model}:open", "1", px=int(self.cooldown_s * 1000)
                )
                self.client.delete(fails)

        await asyncio.to_thread(write)

    async def hold(self, model: str, seconds: float) -> None:
        await self.guard.run(
            lambda: self._hold(model, seconds), lambda: self.local.hold(model, seconds)
        )

    async def _hold(self, model: str, seconds: float) -> None:
        key = f"{self.prefix}breaker:{model}:open"
        ms = max(1, int(seconds * 1000))

        def write() -> None:
            current = self.client.pttl(key)
            if current is None or int(current) < ms:
                self.client.set(key, "1", px=ms)

        await asyncio.to_thread(write)
