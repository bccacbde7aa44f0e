"""/readyz under load: a load balancer probes every few seconds, including during a burst
when every thread of the event loop's default pool is busy. A healthy database and Redis
must be reported (and kept) healthy: a probe that only waited for a thread is not an
outage (which would turn the whole instance to its degraded paths)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import REDIS_TEST_URL


@pytest.fixture
def with_redis(
    env: dict[str, str], redis_client: Any, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    monkeypatch.setenv("REDIS_URL", REDIS_TEST_URL)
    monkeypatch.setenv("CONCIERGE_REDIS_PREFIX", redis_client.test_prefix)
    yield


async def test_readyz_with_every_default_thread_busy_reports_healthy_dependencies(
    with_redis: None, slack: Any
) -> None:
    release = threading.Event()
    # More blocking jobs than the default pool has threads (min(32, cores + 4)).
    busy = [asyncio.ensure_future(asyncio.to_thread(release.wait, 5)) for _ in range(40)]
    try:
        await asyncio.sleep(0)  # let them take every default thread
        async with slack.session.get(slack.url + "/readyz") as r:
            status, body = r.status, await r.json()
    finally:
        release.set()
        await asyncio.gather(*busy)
    assert (status, body) == (200, {"ok": True, "database": "ok", "redis": "ok", "spool": 0})
    assert not slack.deps.runtime.store.health.down
