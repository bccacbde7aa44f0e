"""Exactly-once for Slack deliveries: retried events, one message seen as several event
types, replayed commands and clicks. A key is claimed once; later claims fail.

Claims live in the database (``slack_deliveries``, so they survive restarts) or in Redis
(``SET NX EX``) when REDIS_URL is set, shared by every instance.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any, Protocol

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError

from bot.store.db import Store
from bot.store.models import SlackDelivery, utcnow


class Deduper(Protocol):
    async def claim(self, key: str, ttl_s: int) -> bool:
        """True the first time ``key`` is seen within ``ttl_s`` seconds."""


class StoreDeduper:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def claim(self, key: str, ttl_s: int) -> bool:
        def insert() -> bool:
            try:
                with self.store.session() as s:
                    s.add(
                        SlackDelivery(key=key[:200], expires_at=utcnow() + timedelta(seconds=ttl_s))
                    )
                return True
            except IntegrityError:
                return False

        return await asyncio.to_thread(insert)

    def purge(self) -> int:
        with self.store.session() as s:
            result: Any = s.execute(
                delete(SlackDelivery).where(SlackDelivery.expires_at < utcnow())
            )
            return int(result.rowcount or 0)


class RedisDeduper:
    def __init__(self, client: Any, prefix: str) -> None:
        self.client = client
        self.prefix = prefix

    async def claim(self, key: str, ttl_s: int) -> bool:
        name = f"{self.prefix}dedupe:{key}"
        return bool(await asyncio.to_thread(self.client.set, name, "1", nx=True, ex=ttl_s))
