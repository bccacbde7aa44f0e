"""manifest.yml and the code agree: command, events, scopes (least privilege), ids, URLs."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from bot.slack import ids

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = yaml.safe_load((ROOT / "manifest.yml").read_text())

# Every Web API method the adapter calls, and the bot scope it needs.
METHOD_SCOPES = {
    "chat_postMessage": "chat:write",
    "chat_update": "chat:write",
    "chat_postEphemeral": "chat:write",
    "chat_startStream": "chat:write",
    "chat_appendStream": "chat:write",
    "chat_stopStream": "chat:write",
    "conversations_open": "im:write",
    "conversations_info": "channels:read",
    "conversations_members": "channels:read",
    "users_list": "users:read",
    "users_info": "users:read",
    "users_lookupByEmail": "users:read.email",
    "usergroups_list": "usergroups:read",
    "views_open": None,
    "auth_test": None,
    "files_upload_v2": "files:write",
    "assistant_threads_setStatus": "assistant:write",
    "assistant_threads_setTitle": "assistant:write",
    "assistant_threads_setSuggestedPrompts": "assistant:write",
}
# Scopes needed for what Slack sends us rather than for calls we make.
EVENT_SCOPES = {
    "app_mention": "app_mentions:read",
    "message.im": "im:history",
    "user_change": "users:read",
    "subteam_members_changed": "usergroups:read",
    "member_joined_channel": "channels:read",
    "member_left_channel": "channels:read",
    "team_join": "users:read",
}
EXTRA = {"commands", "users:read.email", "groups:read"}  # /concierge; emails; private channels


def called_methods() -> set[str]:
    code = "\n".join(p.read_text() for p in (ROOT / "bot" / "slack").rglob("*.py"))
    return set(re.findall(r"client\.(\w+)\(", code)) | set(re.findall(r'_call\(\s*"(\w+)"', code))


def test_command_and_urls() -> None:
    (command,) = MANIFEST["features"]["slash_commands"]
    assert command["command"] == ids.COMMAND
    settings = MANIFEST["settings"]
    urls = [
        command["url"],
        settings["event_subscriptions"]["request_url"],
        settings["interactivity"]["request_url"],
    ]
    assert all(u.endswith("/slack/events") for u in urls)
    assert settings["interactivity"]["is_enabled"] is True
    assert "assistant_view" in MANIFEST["features"]


def test_events_match_the_listeners() -> None:
    assert set(MANIFEST["settings"]["event_subscriptions"]["bot_events"]) == set(ids.BOT_EVENTS)
    code = (ROOT / "bot" / "slack" / "listeners" / "events.py").read_text()
    for event in ids.BOT_EVENTS:
        name = event.split(".")[0]
        assert f'@app.event("{name}")' in code, event


def test_scopes_are_exactly_what_the_code_needs() -> None:
    methods = called_methods()
    unknown = methods - set(METHOD_SCOPES)
    assert not unknown, f"add the scope for {unknown} to this test and the manifest"
    needed = {METHOD_SCOPES[m] for m in methods if METHOD_SCOPES[m]}
    needed |= {EVENT_SCOPES[e] for e in ids.BOT_EVENTS if e in EVENT_SCOPES} | EXTRA
    assert set(MANIFEST["oauth_config"]["scopes"]["bot"]) == needed


def test_action_and_callback_ids_are_the_ones_the_listeners_use() -> None:
    listeners = (ROOT / "bot" / "slack" / "listeners" / "actions.py").read_text()
    rendered = "\n".join(
        (ROOT / "bot" / "slack" / f).read_text()
        for f in ("blocks.py", "access_command.py", "access_requests.py", "review.py")
    )
    names = {value: name for name, value in vars(ids).items() if isinstance(value, str)}
    for action in ids.ACTION_IDS:
        assert f"@app.action(ids.{names[action]})" in listeners, action
        assert f"ids.{names[action]}" in rendered, action
    for callback in ids.CALLBACK_IDS:
        assert f"@app.view(ids.{names[callback]})" in listeners, callback
        assert f"ids.{names[callback]}" in rendered, callback
