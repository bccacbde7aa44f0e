"""A shared change counter: instances compare it to what they last saw and drop cached state
when it moved (for example the identity cache after Slack's user_change event reached one
instance). Redis when REDIS_URL is set; otherwise a counter in this process (and while Redis
is unreachable: bot/core/shared.py)."""

from __future__ import annotations

import asyncio
from typing import Any

from bot.core.shared import guard_for


class LocalVersion:
    def __init__(self) -> None:
        self.value = 0

    async def get(self) -> int:
        return self.value

    async def bump(self) -> None:
        self.value += 1


class RedisVersion:
    def __init__(self, client: Any, key: str) -> None:
        self.client = client
        self.key = key
        self.guard = guard_for(client)
        self.local = LocalVersion()

    async def get(self) -> int:
        async def shared() -> int:
            value = await asyncio.to_thread(self.client.get, self.key)
            return int(value or 0)

        # While Redis is away, a local count that moves on every bump (offset so that it
        # differs from the shared value last seen, which makes readers drop their caches).
        async def local() -> int:
            return -1 - self.local.value

        return await self.guard.run(shared, local)

    async def bump(self) -> None:
        async def shared() -> None:
            await asyncio.to_thread(self.client.incr, self.key)

        await self.guard.run(shared, self.local.bump)
