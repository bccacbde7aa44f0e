"""Several instances behind a load balancer: two real ``app.py serve`` processes on one
PostgreSQL and one Redis. Slack retries a delivery it thinks was lost, and a retry may reach
the other instance while the first is still at work: each event is answered once and
recorded once."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import create_engine, text

from support import instances
from tests.conftest import REDIS_TEST_URL
from tests.slack_helpers import dm
from tests.standins import slack_api
from tests.standins.slack_api import SlackStandIn
from tests.standins.tcp_proxy import TcpProxy

EVENTS = 12


@pytest.fixture
def db_url(pg_url: str) -> str:
    """Several instances share one database: PostgreSQL only."""
    return pg_url


@pytest.fixture
async def api() -> AsyncIterator[SlackStandIn]:
    standin = SlackStandIn()
    standin.add_user("UEVE", "eve@canary.test")
    runner = await slack_api.start(standin)
    try:
        yield standin
    finally:
        await runner.cleanup()


def answers(api: SlackStandIn) -> Counter[tuple[str, str]]:
    """Answers posted, by (channel, thread): a native stream started or a message posted."""
    return Counter(
        (str(p.get("channel")), str(p.get("thread_ts")))
        for method, p in api.calls
        if method in ("chat.startStream", "chat.postMessage")
    )


def exchanges(url: str) -> Counter[str]:
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT request_key FROM exchanges")).scalars().all()
    finally:
        engine.dispose()
    return Counter(str(r) for r in rows)


async def test_two_instances_answer_and_record_each_event_once(
    env: dict[str, str], redis_client: Any, api: SlackStandIn, tmp_path: Path
) -> None:
    serve_env = instances.serve_env(
        env,
        api.url,
        REDIS_URL=REDIS_TEST_URL,
        CONCIERGE_REDIS_PREFIX=redis_client.test_prefix,
        CONCIERGE_SCHEDULER="false",
    )
    async with aiohttp.ClientSession() as session:
        group = await instances.start(2, serve_env, tmp_path, session)
        try:
            sends = []
            for n in range(EVENTS):
                body = instances.event_body(
                    f"EvTwo{n}", dm("UEVE", "Where do I submit expenses?", f"7.{n}")
                )
                # Slack's first try goes to one instance; its retry, nearly at once, to the
                # other (alternating which is first, with and without X-Slack-Retry-Num).
                first, second = (0, 1) if n % 2 else (1, 0)
                sends.append(group.send(first, body))
                sends.append(group.send(second, body, retry=1 if n % 3 else None))
            probes = [group.session.get(m.url + "/readyz") for m in group.members for _ in range(3)]

            async def probe(ctx: Any) -> None:
                async with ctx as r:
                    await r.read()

            statuses = (await asyncio.gather(*sends, *map(probe, probes)))[: len(sends)]
            assert statuses == [200] * (2 * EVENTS)
            await group.settle()
            posted = answers(api)
            recorded = exchanges(env["DATABASE_URL"])
        finally:
            codes = await instances.stop(group)
    logs = "\n".join(inst.log() for inst in group.members)
    expected = {("DEVE", f"7.{n}") for n in range(EVENTS)}
    assert set(posted) == expected, logs[-3000:]
    assert [k for k, c in posted.items() if c > 1] == [], "answered twice"
    assert {k: c for k, c in recorded.items() if c != 1} == {}
    assert {f"T1:DEVE:7.{n}" for n in range(EVENTS)} <= set(recorded)
    assert codes == [0, 0], logs[-3000:]
    assert "Traceback" not in logs


async def test_a_redis_hiccup_on_one_instance_does_not_answer_twice(
    env: dict[str, str], redis_client: Any, api: SlackStandIn, tmp_path: Path
) -> None:
    """Redis is up, but one instance's connection to it stalls for longer than its timeout
    (a network blip, a slow command): that instance must not answer on its own say-so what
    the other instance, which reached Redis, answers too."""
    host, port = REDIS_TEST_URL.removeprefix("redis://").split("/")[0].split(":")
    proxy = TcpProxy(host, int(port))
    serve_env = instances.serve_env(
        env,
        api.url,
        REDIS_URL=REDIS_TEST_URL,
        CONCIERGE_REDIS_PREFIX=redis_client.test_prefix,
        CONCIERGE_SCHEDULER="false",
        CONCIERGE_REDIS_TIMEOUT_S="0.3",
    )
    stalled = {0: {"REDIS_URL": f"redis://{proxy.address}/0"}}
    async with aiohttp.ClientSession() as session:
        group = await instances.start(2, serve_env, tmp_path, session, overrides=stalled)
        try:
            proxy.set("hang")
            bodies = [
                instances.event_body(
                    f"EvHic{n}", dm("UEVE", "Where do I submit expenses?", f"8.{n}")
                )
                for n in range(3)
            ]
            sends = [group.send(i, b, retry=i or None) for b in bodies for i in (0, 1)]
            assert await asyncio.gather(*sends) == [200] * len(sends)
            # Every delivery is decided (instance 0 after its Redis timeout); then Redis
            # answers instance 0 again.
            deadline = asyncio.get_running_loop().time() + 30
            while await group.decided() < group.sent:
                assert asyncio.get_running_loop().time() < deadline, "deliveries not decided"
                await asyncio.sleep(0.05)
            proxy.set("pass")
            await group.settle()
            posted = answers(api)
            recorded = exchanges(env["DATABASE_URL"])
        finally:
            proxy.set("pass")
            await instances.stop(group)
            proxy.close()
    logs = "\n".join(inst.log() for inst in group.members)
    assert set(posted) == {("DEVE", f"8.{n}") for n in range(3)}, logs[-3000:]
    assert [k for k, c in posted.items() if c > 1] == [], "answered twice"
    assert {k: c for k, c in recorded.items() if c != 1} == {}
