"""Properties of the Slack surface under arbitrary input, through signed requests to one
running app per test (invariant 7, and 3 for non-admins):

- ``/concierge access …`` and ``/concierge ask …`` with any text: never a 5xx or a
  traceback, a clear ephemeral reply (or DM) for every command, and a non-admin changes no
  state (no grant, nothing audited but refusals).
- a signed ``event_callback`` with random or malformed fields: never a 5xx or a traceback.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.security.slack_app import audit, grants
from tests.slack_helpers import SlackDriver

PROPERTY = settings(
    max_examples=int(os.environ.get("PROPERTY_EXAMPLES", "50")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# Words that steer the parser into its branches, mixed with arbitrary text and Slack markup.
WORDS = st.sampled_from(
    [
        "grant",
        "revoke",
        "list",
        "who-can",
        "audit",
        "request",
        "for",
        "because",
        "30d",
        "0d",
        "99999w",
        "finance-notes",
        "role:hr",
        "role:",
        "group:",
        "channel:",
        "#ops",
        "<@UEVE>",
        "<@UEVE|eve>",
        "<@UNOBODY>",
        "<!subteam^S1|@finance>",
        "<!subteam^S1>",
        "<!subteam^>",
        "<#C2|ops>",
        "<#C2>",
        "<!channel>",
        "<https://evil.example|IT portal>",
        "eve@canary.test",
        "-1",
        "100000",
        "\u202e",
        "&lt;",
    ]
)
TEXT = st.lists(WORDS | st.text(max_size=12), max_size=8).map(" ".join)


async def command(slack: SlackDriver, user: str, text: str) -> tuple[int, str]:
    """A signed /concierge command with its own trigger_id, as every real one has: two
    identical bodies in the same second would be one replayed request (dropped by design)."""
    body = urlencode(
        {
            "command": "/concierge",
            "text": text,
            "user_id": user,
            "team_id": "T1",
            "channel_id": "C1",
            "trigger_id": f"trig-{uuid.uuid4().hex}",
            "response_url": "http://127.0.0.1:9/none",
        }
    )
    status, reply, _ = await slack.post(body, "application/x-www-form-urlencoded")
    return status, reply


def crashes(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Error records (with or without a traceback) from the app or Bolt."""
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.ERROR and r.name.startswith(("concierge", "slack_bolt"))
    ]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@PROPERTY
@given(text=TEXT, user=st.sampled_from(["UEVE", "UFAKE", "UGUS"]))
@example(text="grant <@UEVE> finance-notes for 30d because admin said so", user="UFAKE")
@example(text="grant <!subteam^S1|@finance> role:hr", user="UGUS")
async def test_any_access_command_from_a_non_admin_is_answered_and_changes_nothing(
    slack: SlackDriver, caplog: pytest.LogCaptureFixture, text: str, user: str
) -> None:
    caplog.set_level(logging.ERROR)
    slack.api.add_user("UFAKE", "ada@canary.test", team_id="T9")  # an admin's email, external
    before = len(slack.api.called("chat.postEphemeral"))
    status, body = await command(slack, user, f"access {text}")
    assert status == 200, body

    def said() -> list[dict[str, Any]]:
        return slack.api.called("chat.postEphemeral")[before:]

    def answered() -> bool:
        mine = [p for p in said() if p.get("user") == user and str(p.get("text", "")).strip()]
        return bool(mine) or "Usage" in body

    await slack.until(answered)  # the reply comes after the ack: wait for it, not for quiet
    assert all("Traceback" not in str(p.get("text")) for p in said())
    assert grants(slack) == []
    assert {a.action for a in audit(slack)} <= {"refused", "request"}
    assert crashes(caplog) == []


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@PROPERTY
@given(text=TEXT)
@example(text="<!channel> where is the <https://evil.example|IT portal>? <@UEVE|eve>")
async def test_any_ask_command_is_answered_without_live_markup_in_the_echo(
    slack: SlackDriver, caplog: pytest.LogCaptureFixture, text: str
) -> None:
    caplog.set_level(logging.ERROR)
    before = len(slack.api.calls)
    status, body = await command(slack, "UEVE", f"ask {text}")
    assert status == 200, body
    await slack.settle()
    assert body.strip(), text  # the ack itself says what happens
    echoes = [
        p
        for m, p in slack.api.calls[before:]
        if m == "chat.postMessage" and "You asked" in str(p.get("text"))
    ]
    for p in echoes:
        echoed = str(p["text"])
        assert "<!" not in echoed and "<@" not in echoed and "<http" not in echoed
    assert crashes(caplog) == []


def _scalar() -> st.SearchStrategy[Any]:
    return st.none() | st.booleans() | st.integers() | st.text(max_size=20)


JSONISH = st.recursive(
    _scalar(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=10,
)
EVENT_TYPES = st.sampled_from(
    [
        "app_mention",
        "message",
        "team_join",
        "user_change",
        "member_joined_channel",
        "member_left_channel",
        "subteam_members_changed",
        "assistant_thread_started",
        "assistant_thread_context_changed",
        "reaction_added",
    ]
)
FIELDS = st.fixed_dictionaries(
    {"type": EVENT_TYPES},
    optional={
        "user": st.sampled_from(["UEVE", "UGUS", "UNOBODY", ""]) | JSONISH,
        "channel": st.sampled_from(["C1", "C2", "DEVE", ""]) | JSONISH,
        "channel_type": st.sampled_from(["im", "channel", None]) | JSONISH,
        "text": st.text(max_size=60) | JSONISH,
        "ts": st.sampled_from(["1.1", "", "x"]) | JSONISH,
        "thread_ts": st.sampled_from(["1.1", None]) | JSONISH,
        "subtype": st.sampled_from([None, "bot_message", "message_changed"]) | JSONISH,
        "assistant_thread": JSONISH,
        "bot_id": JSONISH,
    },
)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@PROPERTY
@given(event=FIELDS, extra=st.dictionaries(st.sampled_from(["team_id", "event"]), JSONISH))
async def test_any_signed_event_is_acknowledged_without_a_crash(
    slack: SlackDriver,
    caplog: pytest.LogCaptureFixture,
    event: dict[str, Any],
    extra: dict[str, Any],
) -> None:
    caplog.set_level(logging.ERROR)
    body = {
        "type": "event_callback",
        "team_id": "T1",
        "api_app_id": "A1",
        "event_id": f"EvP{uuid.uuid4().hex}",
        "event_time": int(time.time()),
        "event": event,
        **({"team_id": extra["team_id"]} if "team_id" in extra else {}),
    }
    if "event" in extra and not isinstance(extra["event"], dict):
        body["event"] = extra["event"]  # a malformed event itself
    status, text, _ = await slack.post(json.dumps(body), "application/json")
    assert status < 500, text
    assert "Traceback" not in text
    await slack.settle()
    assert crashes(caplog) == [], crashes(caplog)
