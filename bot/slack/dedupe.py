"""Exactly-once for Slack deliveries: retried events, one message seen as several event
types, replayed commands and clicks. A key is claimed once; later claims fail, across every
instance that shares the database (and Redis).

The database is the authority (``slack_deliveries``, one atomic ``INSERT … ON CONFLICT``
per claim, bot/store/claims.py; an event's two keys, its id and its message, in one
statement: one write). With REDIS_URL set, Redis is asked first (``SET NX EX``):
a key Redis has already seen is dropped without a database round trip, which is what most
retries cost. A key Redis grants is still claimed in the database, so an instance that
could not reach Redis for a moment (a timeout, a blip on its own connection) and claimed in
the database alone can never answer what another instance answers too.

Only when the database cannot be reached (or does not answer within a short bound) does
Redis decide alone; when neither answers, the claim is made in this process (a TTL cache):
a duplicate answer is better than silence. That is logged once per outage.

Claims expire after ``CLAIM_TTL_S``: an expired claim no longer blocks, Redis forgets it by
itself and the ``delivery_purge`` job deletes the rows (bot/jobs/tasks.py).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Sequence
from typing import Any, Protocol

from cachetools import TTLCache

from bot.core.shared import guard_for
from bot.store import claims
from bot.store.db import Store, StoreUnavailable
from bot.telemetry import SLACK_DELIVERIES

log = logging.getLogger("concierge.slack.dedupe")
# A claim waits at most this long for the database before Redis (or this process) decides.
CLAIM_TIMEOUT_S = 1.0
# How long a delivery's claim blocks a repeat. Slack retries an event three times within
# about five minutes and refuses a signed request older than five minutes: an hour covers
# both with room to spare.
CLAIM_TTL_S = 3600


class Deduper(Protocol):
    async def claim(self, key: str, ttl_s: int) -> bool:
        """True the first time ``key`` is seen within ``ttl_s`` seconds."""

    async def claim_all(self, keys: Sequence[str], ttl_s: int) -> bool:
        """True when none of ``keys`` was seen within ``ttl_s`` seconds (all are now
        claimed); False when any one was (a delivery of something already taken)."""


class LocalClaims:
    """Claims in this process (a TTL cache behind a lock): the last resort."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._seen: TTLCache[str, bool] = TTLCache(maxsize=100_000, ttl=CLAIM_TTL_S)
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


class SharedDeduper:
    """Redis (when configured) as the fast first check, the database as the authority."""

    def __init__(self, store: Store, redis: Any | None = None, prefix: str = "") -> None:
        self.store = store
        self.redis = redis
        self.prefix = prefix
        self.guard = guard_for(redis) if redis is not None else None
        self.local = LocalClaims("the database" if redis is None else "the database or Redis")

    async def claim(self, key: str, ttl_s: int) -> bool:
        return await self.claim_all([key], ttl_s)

    async def claim_all(self, keys: Sequence[str], ttl_s: int) -> bool:
        """All of ``keys`` at once: Redis is asked about each in turn (a key it has seen
        ends the claim), then the database takes them all in one statement (one write,
        bot/store/claims.py), which decides."""
        # A key claimed locally during an outage stays claimed here after it, too.
        for key in keys:
            if self.local.seen(key):
                return counted(key, False, "local")
        in_redis = True  # Redis granted every key (False without Redis or while it is away)
        for key in keys:
            granted = await self._redis(key, ttl_s)
            if granted is False:
                return counted(key, False, "redis")
            in_redis = in_redis and granted is True
        try:
            taken = await self.store.call(
                lambda: self._insert(keys, ttl_s), timeout_s=CLAIM_TIMEOUT_S
            )
        except StoreUnavailable:
            if in_redis:  # the database is away: Redis decided
                return all([counted(key, True, "redis") for key in keys])
            for key in keys:
                if not await self.local.claim(key, ttl_s):
                    return counted(key, False, "local")
            return all([counted(key, True, "local") for key in keys])
        self.local.recovered()
        return all([counted(key, key[: claims.KEY_CHARS] in taken, "database") for key in keys])

    async def _redis(self, key: str, ttl_s: int) -> bool | None:
        """Redis's answer (True: first to see it), or None without Redis or while it is away."""
        if self.redis is None or self.guard is None:
            return None
        name = f"{self.prefix}dedupe:{key}"
        redis = self.redis

        async def shared() -> bool | None:
            return bool(await asyncio.to_thread(redis.set, name, "1", nx=True, ex=ttl_s))

        async def away() -> bool | None:
            return None

        return await self.guard.run(shared, away)

    def _insert(self, keys: Sequence[str], ttl_s: int) -> set[str]:
        with self.store.session() as s:
            return claims.claim_all(s, keys, ttl_s)


def counted(key: str, claimed: bool, where: str) -> bool:
    """Count a decided claim on /metrics (kind is the key's prefix: event, msg, sig)."""
    SLACK_DELIVERIES.labels(
        kind=key.split(":", 1)[0], outcome="claimed" if claimed else "duplicate", where=where
    ).inc()
    return claimed
