"""A shared change counter: instances compare it to what they last saw and drop cached state
when it moved (for example the identity cache after Slack's user_change event reached one
instance). Redis when REDIS_URL is set; otherwise a counter in this process."""

from __future__ import annotations

import asyncio
from typing import Any


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

    async def get(self) -> int:
        value = await asyncio.to_thread(self.client.get, self.key)
        return int(value or 0)

    async def bump(self) -> None:
        await asyncio.to_thread(self.client.incr, self.key)
