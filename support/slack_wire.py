"""What Slack sends to /slack/events, built and signed the way Slack does: used by the tests'
driver and by the benchmarks (which post to a separate ``app.py serve`` process)."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from typing import Any

from support.standins.slack_api import TEAM

SECRET = "test-signing-secret"


def sign(body: str, *, secret: str = SECRET, timestamp: int | None = None) -> dict[str, str]:
    ts = str(timestamp if timestamp is not None else int(time.time()))
    digest = hmac.new(secret.encode(), f"v0:{ts}:{body}".encode(), hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": f"v0={digest}"}


def event_body(event: dict[str, Any], *, event_id: str | None = None) -> str:
    """The JSON body of an Events API delivery of ``event``."""
    return json.dumps(
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
