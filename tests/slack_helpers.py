"""Driving the real app over HTTP like Slack does: signed requests to /slack/events."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import aiohttp

from bot.slack.deps import SlackDeps
from tests.standins.slack_api import TEAM, SlackStandIn

SECRET = "test-signing-secret"


def sign(body: str, *, secret: str = SECRET, timestamp: int | None = None) -> dict[str, str]:
    ts = str(timestamp if timestamp is not None else int(time.time()))
    digest = hmac.new(secret.encode(), f"v0:{ts}:{body}".encode(), hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": f"v0={digest}"}


@dataclass
class SlackDriver:
    url: str
    api: SlackStandIn
    deps: SlackDeps
    session: aiohttp.ClientSession

    async def post(
        self,
        body: str,
        content_type: str,
        *,
        headers: dict[str, str] | None = None,
        signed: dict[str, str] | None = None,
    ) -> tuple[int, str, dict[str, str]]:
        h = {
            "Content-Type": content_type,
            **(signed if signed is not None else sign(body)),
            **(headers or {}),
        }
        async with self.session.post(
            self.url + "/slack/events", data=body.encode(), headers=h
        ) as r:
            return r.status, await r.text(), h

    async def event(
        self,
        event: dict[str, Any],
        *,
        event_id: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, str, dict[str, str]]:
        body = json.dumps(
            {
                "type": "event_callback",
                "team_id": TEAM,
                "api_app_id": "A1",
                "event_id": event_id or f"Ev{uuid.uuid4().hex[:10]}",
                "event_time": int(time.time()),
                "event": event,
                "authorizations": [{"team_id": TEAM, "user_id": "UBOT", "is_bot": True}],
            }
        )
        return await self.post(body, "application/json", headers=headers)

    async def command(self, user: str, text: str) -> tuple[int, str, dict[str, str]]:
        body = urlencode(
            {
                "command": "/concierge",
                "text": text,
                "user_id": user,
                "team_id": TEAM,
                "channel_id": "C1",
                "trigger_id": "trig",
                "response_url": "http://127.0.0.1:9/none",
            }
        )
        return await self.post(body, "application/x-www-form-urlencoded")

    async def interaction(self, payload: dict[str, Any]) -> tuple[int, str, dict[str, str]]:
        body = urlencode({"payload": json.dumps(payload)})
        return await self.post(body, "application/x-www-form-urlencoded")

    async def until(self, check: Any, limit_s: float = 10) -> None:
        """Settle, then keep settling until ``check()`` is true (work that Slack events start
        after the ack can begin a moment later on a loaded machine)."""
        deadline = time.monotonic() + limit_s
        await self.settle()
        while not check() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            await self.settle()
        assert check(), "the expected work did not happen"

    async def settle(self, limit_s: float = 20) -> None:
        """Wait until every answer started after an ack has finished."""
        deadline = time.monotonic() + limit_s
        quiet_since: float | None = None
        # Bolt runs listeners after the ack, so work may be spawned a moment later: settled
        # means no work in flight for a short quiet period, not merely none right now.
        while time.monotonic() < deadline:
            if self.deps.tasks:
                quiet_since = None
                await asyncio.gather(*list(self.deps.tasks), return_exceptions=True)
                continue
            now = time.monotonic()
            if quiet_since is None:
                quiet_since = now
            elif now - quiet_since >= 0.15:
                break
            await asyncio.sleep(0.03)
        assert not self.deps.tasks, "answers still running"


def dm(user: str, text: str, ts: str, thread_ts: str | None = None) -> dict[str, Any]:
    event = {
        "type": "message",
        "channel": "D" + user.lstrip("U"),
        "channel_type": "im",
        "user": user,
        "text": text,
        "ts": ts,
    }
    if thread_ts:
        event["thread_ts"] = thread_ts
    return event


def mention(
    user: str, text: str, ts: str, channel: str = "C1", thread_ts: str | None = None
) -> dict[str, Any]:
    event = {
        "type": "app_mention",
        "channel": channel,
        "user": user,
        "text": f"<@UBOT> {text}",
        "ts": ts,
    }
    if thread_ts:
        event["thread_ts"] = thread_ts
    return event


def button_click(user: str, action_id: str, value: str, channel: str, ts: str) -> dict[str, Any]:
    """A signed-payload body for a click on one of our buttons (``value``) in a message."""
    return {
        "type": "block_actions",
        "user": {"id": user},
        "team": {"id": "T1"},
        "trigger_id": f"trig-{user}",
        "container": {"type": "message", "channel_id": channel, "message_ts": ts},
        "channel": {"id": channel},
        "actions": [
            {
                "action_id": action_id,
                "block_id": f"review_{value}",
                "type": "button",
                "value": value,
            }
        ],
    }
