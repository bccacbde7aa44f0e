"""Delivery claims expire and are purged: a claim older than Slack's retry window no longer
blocks, and the ``delivery_purge`` job (run by one instance) deletes it, through the Slack
endpoint and the command line, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from prometheus_client import REGISTRY
from sqlalchemy import create_engine, text, update

from bot.store.db import normalise_url
from bot.store.models import SlackDelivery, utcnow
from tests.slack_helpers import dm

ROOT = Path(__file__).resolve().parent.parent


def decided() -> float:
    """Event deliveries decided by this process so far (claimed or duplicate)."""
    total = 0.0
    for outcome in ("claimed", "duplicate"):
        for where in ("redis", "database", "local"):
            value = REGISTRY.get_sample_value(
                "concierge_slack_deliveries_total",
                {"kind": "event", "outcome": outcome, "where": where},
            )
            total += value or 0.0
    return total


async def deliver(slack: Any, event_id: str, ts: str) -> None:
    """One signed delivery; returns once its claim is decided and its work has finished."""
    before = decided()
    status, _, _ = await slack.event(
        dm("UEVE", "Where do I submit expenses?", ts), event_id=event_id
    )
    assert status == 200
    deadline = time.monotonic() + 20
    while decided() < before + 1:
        assert time.monotonic() < deadline, "the delivery was not decided"
        await asyncio.sleep(0.01)
    await asyncio.gather(*list(slack.deps.tasks), return_exceptions=True)


def answers(slack: Any, ts: str) -> int:
    return sum(
        1
        for method, p in slack.api.calls
        if method in ("chat.startStream", "chat.postMessage") and p.get("thread_ts") == ts
    )


def age_claims(url: str, keys: list[str]) -> None:
    """As if an hour and more had passed since these deliveries were claimed."""
    engine = create_engine(normalise_url(url))
    try:
        with engine.begin() as conn:
            conn.execute(
                update(SlackDelivery)
                .where(SlackDelivery.key.in_(keys))
                .values(expires_at=utcnow() - timedelta(minutes=1))
            )
    finally:
        engine.dispose()


def claimed_keys(url: str) -> set[str]:
    engine = create_engine(normalise_url(url))
    try:
        with engine.connect() as conn:
            return {
                str(k) for k in conn.execute(text("SELECT key FROM slack_deliveries")).scalars()
            }
    finally:
        engine.dispose()


async def test_an_expired_claim_no_longer_blocks_and_is_purged(
    slack: Any, env: dict[str, str]
) -> None:
    url = env["DATABASE_URL"]
    await deliver(slack, "EvOld", "9.1")
    await deliver(slack, "EvOld", "9.1")  # Slack's retry, within the window: nothing more
    assert answers(slack, "9.1") == 1
    await deliver(slack, "EvNew", "9.2")
    old = ["event:EvOld", "msg:T1:DEVE:9.1"]
    assert set(old) | {"event:EvNew", "msg:T1:DEVE:9.2"} <= claimed_keys(url)

    age_claims(url, old)
    await deliver(slack, "EvOld", "9.1")  # past the window: a claim that old blocks nothing
    assert answers(slack, "9.1") == 2

    age_claims(url, old)
    job = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "app.py"),
        "jobs",
        "run",
        "delivery_purge",
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(job.communicate(), 60)
    assert job.returncode == 0, err.decode()[-2000:]
    assert "delivery_purge: ok: removed 2 expired delivery claim(s)" in out.decode()
    left = claimed_keys(url)
    assert not set(old) & left
    assert {"event:EvNew", "msg:T1:DEVE:9.2"} <= left
    await deliver(slack, "EvNew", "9.2")  # a live claim still blocks after the purge
    assert answers(slack, "9.2") == 1
