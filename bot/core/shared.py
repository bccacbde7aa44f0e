"""Shared state that survives Redis going away.

REDIS_URL makes limits, budgets, breakers, change counters and de-duplication shared by every
instance. Redis is optional, so it must never be the reason a question fails: each Redis-backed
class asks its client's ``RedisGuard`` to run the Redis call, and when Redis refuses, drops or
does not answer within the client's short socket timeout, the same operation runs on a local,
in-process twin instead. After a failure Redis is left alone for a while (1 s, doubling to
15 s), so an outage costs each question nothing; the outage's start and end are logged once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from redis.exceptions import RedisError

from bot.outage import Outage

log = logging.getLogger("concierge.redis")
T = TypeVar("T")


class RedisGuard(Outage):
    """Whether Redis answered lately; runs a call on Redis or, failing that, locally."""

    def __init__(self) -> None:
        super().__init__(
            log,
            "Redis is unreachable (%s): limits, budgets, breakers and de-duplication "
            "continue on this instance's own state until it returns",
            "Redis is reachable again after %.1f s",
        )
        self.last_error: str | None = None

    def failed(self, why: BaseException | str) -> None:
        self.last_error = why if isinstance(why, str) else why.__class__.__name__
        super().failed(self.last_error)

    async def run(self, shared: Callable[[], Awaitable[T]], local: Callable[[], Awaitable[T]]) -> T:
        """``shared()`` while Redis answers; ``local()`` when it does not."""
        if self.should_try():
            try:
                value = await shared()
            except (RedisError, OSError, TimeoutError) as exc:
                self.failed(exc)
            else:
                self.ok()
                return value
        return await local()


_guards: dict[int, tuple[Any, RedisGuard]] = {}
_guards_lock = threading.Lock()


def guard_for(client: Any) -> RedisGuard:
    """The one guard of a Redis client (every user of the client shares its health)."""
    with _guards_lock:
        found = _guards.get(id(client))
        if found is None or found[0] is not client:
            found = (client, RedisGuard())
            _guards[id(client)] = found
        return found[1]
