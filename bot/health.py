"""Readiness: can this instance do its whole job right now, and if not, what is degraded.

``/readyz`` (bot/slack/server.py) serves ``readiness(runtime)``: 200 with
``{"ok": true, "database": "ok", "redis": "ok"|"off", "spool": 0}`` when all is well, else
503 with the same keys saying what is not (``database: "down"``, ``redis: "down"``, a spool
backlog). Degraded still answers questions (records are spooled, local state stands in for
Redis); 503 tells a load balancer or an operator to look. Each check is bounded by a short
timeout, so a hung dependency cannot hang the probe.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bot.core.shared import guard_for
from bot.runtime import Runtime, make_redis

PROBE_TIMEOUT_S = 1.0
# Probes run on threads of their own: under a burst the event loop's default threads are all
# busy, and a probe queued behind them would report a healthy dependency as down.
_PROBE_THREADS = ThreadPoolExecutor(2, thread_name_prefix="concierge-probe")


async def _database(runtime: Runtime) -> str:
    store = runtime.store
    try:
        reachable = await store.call(store.probe, PROBE_TIMEOUT_S, even_if_down=True)
    except Exception:  # unavailable, timed out (then marked down by the store), or worse
        return "down"
    return "ok" if reachable else "down"


async def _redis(runtime: Runtime) -> str:
    client = make_redis(runtime.settings)
    if client is None:
        return "off"
    guard = guard_for(client)
    loop = asyncio.get_running_loop()
    try:
        await asyncio.wait_for(loop.run_in_executor(_PROBE_THREADS, client.ping), PROBE_TIMEOUT_S)
    except Exception as exc:  # refused, dropped, timed out: all mean "down"
        guard.failed(exc)
        return "down"
    guard.ok()
    return "ok"


async def readiness(runtime: Runtime, *, stopping: bool = False) -> tuple[bool, dict[str, Any]]:
    """(ready, body) for ``/readyz``."""
    database, redis = await asyncio.gather(_database(runtime), _redis(runtime))
    spool = await asyncio.get_running_loop().run_in_executor(_PROBE_THREADS, runtime.spool.pending)
    degraded = [
        name
        for name, bad in (
            ("database", database != "ok"),
            ("redis", redis == "down"),
            ("spool", spool > 0),
            ("stopping", stopping),
        )
        if bad
    ]
    body: dict[str, Any] = {
        "ok": not degraded,
        "database": database,
        "redis": redis,
        "spool": spool,
    }
    if degraded:
        body["degraded"] = degraded
    return not degraded, body
