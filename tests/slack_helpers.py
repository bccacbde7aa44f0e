"""Driving the real app over HTTP like Slack does: signed requests to /slack/events."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import aiohttp

from bot.slack.deps import SlackDeps
from support.slack_wire import SECRET, dm, event_body, mention, sign
from support.standins.slack_api import TEAM, SlackStandIn

__all__ = ["SECRET", "SlackDriver", "button_click", "dm", "mention", "sign"]


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
        body = event_body(event, event_id=event_id)
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
        """Wait for the work started so far, then insist that ``check()`` holds."""
        await self.settle(limit_s)
        assert check(), "the expected work did not happen"

    async def settle(self, limit_s: float = 20) -> None:
        """Wait until every piece of work started after an ack has finished: Bolt's listener
        runs, the answers they spawned, and what those started (deps tracks them all), not a
        guessed quiet period."""
        await asyncio.wait_for(self.deps.idle(), limit_s)


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
