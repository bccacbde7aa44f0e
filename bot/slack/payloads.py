"""Slack event fields checked at the boundary, into our own types.

Slack's payloads are untrusted input: a field of the wrong type (``text: 42``), a null or a
missing one must never raise inside the work that runs after the ack. ``parse_message``
turns a message or app_mention event into a ``MessageEvent`` and names the fields it had to
drop, so the listener can decide: not a question, a question it cannot read (a clear
reply), or a question with no place to answer (recorded as such).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError


class MessageEvent(BaseModel):
    """The fields of a ``message`` / ``app_mention`` event that Concierge uses."""

    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)

    type: str = ""
    subtype: str | None = None
    user: str | None = None
    bot_id: str | None = None
    app_id: str | None = None
    team: str | None = None
    channel: str | None = None
    channel_type: str | None = None
    text: str | None = None
    ts: str | None = None
    thread_ts: str | None = None

    def is_question(self, bot_user_id: str | None) -> bool:
        """A new message from a person (edits, deletions, joins, bots and our own messages
        are not; any subtype Slack adds later is not either)."""
        if self.subtype or self.bot_id or (self.app_id and not self.user):
            return False
        return bool(self.user) and self.user != bot_user_id

    def nowhere_to_answer(self) -> str | None:
        """Why an answer could not be placed (no channel, no message to thread under)."""
        if not self.channel:
            return "the event has no channel to answer in"
        if not self.ts:
            return "the event has no message timestamp to answer under"
        return None


def parse_message(raw: Any) -> tuple[MessageEvent, frozenset[str]]:
    """The event, with each field of the wrong type dropped (and named in the second value)."""
    if not isinstance(raw, dict):
        return MessageEvent(), frozenset({"event"})
    try:
        return MessageEvent.model_validate(raw), frozenset()
    except ValidationError as exc:
        bad = frozenset(str(e["loc"][0]) for e in exc.errors() if e.get("loc"))
    cleaned = {k: v for k, v in raw.items() if k not in bad}
    try:
        return MessageEvent.model_validate(cleaned), bad
    except ValidationError:
        return MessageEvent(), bad | {"event"}
