"""Questions check the active grants side by side: the usual check (nothing changed since the
last read) holds no lock across its database round trip, so a slow database makes each
question wait for its own query, not for everyone else's in turn."""

from __future__ import annotations

import asyncio
import time

import pytest

from bot.runtime import build_runtime
from bot.settings import Settings
from support.standins.tcp_proxy import TcpProxy

AT_ONCE = 6


@pytest.fixture
def db_url(pg_url: str) -> str:
    return pg_url


async def timed(n: int, check) -> float:  # type: ignore[no-untyped-def]
    began = time.perf_counter()
    await asyncio.gather(*(check() for _ in range(n)))
    return time.perf_counter() - began


async def test_grant_checks_at_once_do_not_queue_behind_each_other(proxy: TcpProxy) -> None:
    runtime = await build_runtime(Settings(), prepare=False)
    try:
        await timed(AT_ONCE, runtime.grants)  # grants read, one connection per checker
        loads = runtime.grant_cache.loads
        proxy.latency_s = 0.2  # every message to the database now waits 200 ms
        one = await timed(1, runtime.grants)
        together = await timed(AT_ONCE, runtime.grants)
        assert runtime.grant_cache.loads == loads  # served from the cache, checked each time
        # Queued behind one lock the six checks took six times one check.
        assert together < 2.5 * one, (one, together)
    finally:
        proxy.latency_s = 0.0
        runtime.close()
