"""The real Slack app served over HTTP against the Slack Web API stand-in, for attacks that
need control over what happens before it starts (auth.test failing) or several instances
sharing Redis. Environment comes from the ``env`` fixture (tests/conftest.py)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select

from bot.settings import Settings
from bot.slack.app import build_app
from bot.slack.server import prepare, start_http
from bot.store.models import AuditEvent, Grant
from tests.slack_helpers import SECRET, SlackDriver
from tests.standins import slack_api
from tests.standins.slack_api import SlackStandIn


def standard_users(api: SlackStandIn) -> None:
    """The people of the ``slack`` fixture in tests/conftest.py."""
    api.add_user("UEVE", "eve@canary.test")
    api.add_user("UHANA", "hana@canary.test")
    api.add_user("UMAYA", "maya@canary.test")
    api.add_user("UGUS", "gus@partner.test", is_restricted=True)
    api.add_user("UEXT", "eve@canary.test", team_id="T9")
    api.channels = {"C1": {"id": "C1", "name": "general"}, "C2": {"id": "C2", "name": "ops"}}


@contextlib.asynccontextmanager
async def standin(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[SlackStandIn]:
    """A running stand-in, with the app's Slack settings pointed at it."""
    api = SlackStandIn()
    standard_users(api)
    runner = await slack_api.start(api)
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-test-token")
    monkeypatch.setenv("SLACK_SIGNING_SECRET", SECRET)
    monkeypatch.setenv("SLACK_API_URL", api.url.rstrip("/"))
    monkeypatch.setenv("CONCIERGE_SLACK_UPDATES_PER_MIN", "6000")
    monkeypatch.setenv("CONCIERGE_SLACK_APPENDS_PER_MIN", "6000")
    monkeypatch.setenv("CONCIERGE_SLACK_STREAMS_PER_MIN", "6000")
    monkeypatch.setenv("CONCIERGE_SLACK_WRITE_INTERVAL_S", "0")
    monkeypatch.setenv("CONCIERGE_SCHEDULER", "false")
    try:
        yield api
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def instance(api: SlackStandIn) -> AsyncIterator[SlackDriver]:
    """One instance of the app (``app.py serve`` in HTTP mode), started like serve does."""
    runtime, deps = await prepare(Settings())
    runner, port = await start_http(build_app(deps), deps, "127.0.0.1", 0)
    async with aiohttp.ClientSession() as session:
        driver = SlackDriver(f"http://127.0.0.1:{port}", api, deps, session)
        try:
            yield driver
            await driver.settle()
        finally:
            await runner.cleanup()
            runtime.close()


def replies(slack: SlackDriver, user: str | None = None) -> list[str]:
    return [
        str(p.get("text", ""))
        for p in slack.api.called("chat.postEphemeral")
        if user is None or p.get("user") == user
    ]


def audit(slack: SlackDriver) -> list[AuditEvent]:
    with slack.deps.runtime.store.session() as s:
        return list(s.scalars(select(AuditEvent).order_by(AuditEvent.id)))


def grants(slack: SlackDriver) -> list[tuple[str, str]]:
    with slack.deps.runtime.store.session() as s:
        return [
            (g.principal, g.target)
            for g in s.scalars(select(Grant).where(Grant.revoked_at.is_(None)))
        ]


def posted_in(slack: SlackDriver, channel: str) -> str:
    return "\n".join(m.full_text() for m in slack.api.in_channel(channel))


def chat_calls(api: SlackStandIn) -> list[dict[str, Any]]:
    return [p for m, p in api.calls if m.startswith("chat.")]
