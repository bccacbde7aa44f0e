"""Exactly-once for Slack deliveries: retried events, one message seen as several event
types, replayed commands and clicks. A key is claimed once; later claims fail.

Claims live in the database (``slack_deliveries``, so they survive restarts) or in Redis
(``SET NX EX``) when REDIS_URL is set, shared by every instance.

When the database or Redis cannot be reached (or does not answer within a short bound), a
claim is made in this process instead (a TTL cache): a duplicate answer is better than
silence. That is logged once per outage.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from datetime import timedelta
from typing import Any, Protocol

from cachetools import TTLCache
from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError

from bot.core.shared import guard_for
from bot.store.db import Store, StoreUnavailable
from bot.store.models import SlackDelivery, utcnow

log = logging.getLogger("concierge.slack.dedupe")
# A claim waits at most this long for the database before it is made locally.
CLAIM_TIMEOUT_S = 1.0


class Deduper(Protocol):
    async def claim(self, key: str, ttl_s: int) -> bool:
        """True the first time ``key`` is seen within ``ttl_s`` seconds."""


class LocalClaims:
    """Claims in this process (a TTL cache behind a lock): the fallback of both dedupers."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._seen: TTLCache[str, bool] = TTLCache(maxsize=100_000, ttl=24 * 3600)
        self._lock = threading.Lock()
        self._outage = False

    async def claim(self, key: str, ttl_s: int) -> bool:
        with self._lock:
            if not self._outage:
                self._outage = True
                log.error(
                    "%s cannot be reached: Slack deliveries are de-duplicated on this instance "
                    "only until it returns (a duplicate answer is possible, a lost one is not)",
                    self.what,
                )
            if key in self._seen:
                return False
            self._seen[key] = True
            return True

    def seen(self, key: str) -> bool:
        with self._lock:
            return key in self._seen

    def recovered(self) -> None:
        self._outage = False


class StoreDeduper:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.local = LocalClaims("the database")

    async def claim(self, key: str, ttl_s: int) -> bool:
        # A key claimed locally during an outage stays claimed here after it, too.
        if self.local.seen(key):
            return False
        try:
            claimed = await self.store.call(lambda: self._insert(key, ttl_s), CLAIM_TIMEOUT_S)
        except StoreUnavailable:
            return await self.local.claim(key, ttl_s)
        self.local.recovered()
        return claimed

    def _insert(self, key: str, ttl_s: int) -> bool:
        try:
            with self.store.session() as s:
                s.add(SlackDelivery(key=key[:200], expires_at=utcnow() + timedelta(seconds=ttl_s)))
            return True
        except IntegrityError:
            return False

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
        self.guard = guard_for(client)
        self.local = LocalClaims("Redis")

    async def claim(self, key: str, ttl_s: int) -> bool:
        name = f"{self.prefix}dedupe:{key}"

        async def shared() -> bool:
            return bool(await asyncio.to_thread(self.client.set, name, "1", nx=True, ex=ttl_s))

        if self.local.seen(key):
            return False
        claimed = await self.guard.run(shared, lambda: self.local.claim(key, ttl_s))
        if not self.guard.down:
            self.local.recovered()
        return claimed
