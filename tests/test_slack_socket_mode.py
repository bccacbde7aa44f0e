"""Socket Mode: envelopes over a WebSocket from a local stand-in, acknowledged by id."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import select

from bot.settings import Settings
from bot.slack.app import build_app
from bot.slack.server import drain, prepare, socket_handler
from bot.store.models import Exchange
from tests.slack_helpers import dm
from tests.standins import slack_api
from tests.standins.slack_api import SlackStandIn


@pytest.fixture
async def socket(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Any]:
    api = SlackStandIn()
    api.add_user("UEVE", "eve@canary.test")
    runner = await slack_api.start(api)
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-test")
    monkeypatch.setenv("SLACK_APP_TOKEN", "xapp-test")
    monkeypatch.setenv("SLACK_API_URL", api.url)
    runtime, deps = await prepare(Settings())
    handler = socket_handler(build_app(deps, socket_mode=True), "xapp-test", deps.client)
    await handler.connect_async()
    await asyncio.wait_for(api.socket_connected.wait(), 10)
    try:
        yield api, deps
    finally:
        await drain(deps, 10)
        await handler.close_async()
        await runner.cleanup()
        runtime.close()


async def wait_for(predicate: Any, limit_s: float = 15) -> None:
    deadline = time.monotonic() + limit_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_events_are_acked_by_envelope_and_answered_once(socket) -> None:
    api, deps = socket
    payload = {
        "type": "event_callback",
        "team_id": "T1",
        "event_id": "EvS1",
        "event": dm("UEVE", "Where do I submit expenses?", "10.1"),
    }
    envelope = {
        "envelope_id": "env-1",
        "type": "events_api",
        "payload": payload,
        "accepts_response_payload": False,
        "retry_attempt": 0,
    }
    await api.socket_outbox.put(envelope)
    await api.socket_outbox.put({**envelope, "envelope_id": "env-2", "retry_attempt": 1})
    await wait_for(lambda: {"env-1", "env-2"} <= {a.get("envelope_id") for a in api.socket_acks})
    await wait_for(lambda: any(m.blocks for m in api.in_channel("DEVE")))
    await drain(deps, 10)
    with deps.runtime.store.session() as s:
        rows = list(s.scalars(select(Exchange)))
    assert len(rows) == 1 and "Pleo" in (rows[0].answer or "")


async def test_slash_command_ack_carries_the_reply(socket) -> None:
    api, _ = socket
    await api.socket_outbox.put(
        {
            "envelope_id": "env-cmd",
            "type": "slash_commands",
            "accepts_response_payload": True,
            "payload": {
                "command": "/concierge",
                "text": "help",
                "user_id": "UEVE",
                "team_id": "T1",
                "channel_id": "C1",
                "trigger_id": "t",
                "response_url": "http://127.0.0.1:9/x",
            },
        }
    )
    await wait_for(lambda: any(a.get("envelope_id") == "env-cmd" for a in api.socket_acks))
    ack = next(a for a in api.socket_acks if a.get("envelope_id") == "env-cmd")
    assert "/concierge" in str(ack.get("payload"))


async def test_malformed_envelopes_are_acked_and_dropped_before_any_listener(
    socket, caplog: pytest.LogCaptureFixture
) -> None:
    """The boundary check of the HTTP endpoint holds in Socket Mode too: an envelope Bolt
    cannot take is acknowledged once (not redelivered forever), runs no work, logs no
    traceback, and the next good question is answered."""
    api, deps = socket
    bad_bodies: list[Any] = [
        {"type": "event_callback", "team_id": "T1", "event_id": "EvB1", "event": "text"},
        {"type": "event_callback", "team_id": "T1", "event_id": "EvB2", "event": None},
        {
            "type": "event_callback",
            "team_id": "T1",
            "event_id": "EvB3",
            "authorizations": "all",
            "event": dm("UEVE", "Where do I submit expenses?", "11.1"),
        },
        {
            "type": "event_callback",
            "team_id": "T1",
            "event_id": "EvB4",
            "event": {"type": "assistant_thread_started", "assistant_thread": "x"},
        },
    ]
    for i, body in enumerate(bad_bodies):
        await api.socket_outbox.put(
            {"envelope_id": f"bad-{i}", "type": "events_api", "payload": body, "retry_attempt": 0}
        )
    good = {
        "type": "event_callback",
        "team_id": "T1",
        "event_id": "EvGood",
        "event": dm("UEVE", "Where do I submit expenses?", "12.1"),
    }
    await api.socket_outbox.put(
        {"envelope_id": "good", "type": "events_api", "payload": good, "retry_attempt": 0}
    )
    wanted = {f"bad-{i}" for i in range(len(bad_bodies))} | {"good"}
    await wait_for(lambda: wanted <= {a.get("envelope_id") for a in api.socket_acks})
    await wait_for(lambda: any(m.blocks for m in api.in_channel("DEVE")))
    await drain(deps, 10)
    with deps.runtime.store.session() as s:
        rows = list(s.scalars(select(Exchange)))
    assert len(rows) == 1 and rows[0].question == "Where do I submit expenses?"
    acked = [a.get("envelope_id") for a in api.socket_acks]
    assert all(acked.count(e) == 1 for e in wanted)
    assert not [r for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()]


async def test_times_run_from_the_envelopes_arrival(socket) -> None:
    """Socket Mode too: Slack's 0.6 s to describe the channel is part of the recorded time."""
    api, deps = socket
    api.delays["conversations.info"] = 0.6
    event = {"type": "app_mention", "channel": "C1", "user": "UEVE", "ts": "30.1"}
    event["text"] = "<@UBOT> Where do I submit expenses?"
    payload = {"type": "event_callback", "team_id": "T1", "event_id": "EvS9", "event": event}
    await api.socket_outbox.put(
        {"envelope_id": "env-9", "type": "events_api", "payload": payload, "retry_attempt": 0}
    )
    await wait_for(lambda: "env-9" in {a.get("envelope_id") for a in api.socket_acks})
    await asyncio.wait_for(deps.idle(), 20)
    with deps.runtime.store.session() as s:
        (row,) = s.scalars(select(Exchange).where(Exchange.channel == "C1"))
    assert row.outcome == "answered" and row.total_ms >= 600
