"""Events: mentions, direct messages, the assistant panel, directory changes.

Bolt acknowledges events before these run. Edited, deleted, bot and our own messages are
dropped before any work (an edit is not a new question; a bot answering bots loops).
"""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.async_context import AsyncBoltContext

from bot.slack.arrival import arrived
from bot.slack.dedupe import CLAIM_TTL_S
from bot.slack.deps import SlackDeps
from bot.slack.payloads import parse_message
from bot.slack.questions import (
    answer_message,
    look_ahead,
    record_unanswerable,
    reply_unreadable,
)
from bot.slack.text import question_text

log = logging.getLogger("concierge.slack.events")

SUGGESTED_PROMPTS = (
    ("What can you help with?", "What can you help me with, and which sources can you use?"),
    ("Time off", "How many days of paid time off do I have, and how do I book them?"),
    ("Expenses", "How do I submit an expense, and who approves it?"),
)
IGNORED_SUBTYPES = {
    "message_changed",
    "message_deleted",
    "bot_message",
    "message_replied",
    "channel_join",
    "channel_leave",
    "thread_broadcast",
    "me_message",
    "file_share",
    "assistant_app_thread",
}


def register(app: AsyncApp, deps: SlackDeps) -> None:
    async def handle(
        event: dict[str, Any], body: dict[str, Any], context: AsyncBoltContext, *, assistant: bool
    ) -> None:
        parsed, bad = parse_message(event)
        if "user" in bad or not parsed.is_question(context.bot_user_id):
            return
        team = context.team_id or parsed.team or ""
        event_id = body.get("event_id") if isinstance(body.get("event_id"), str) else None
        nowhere = parsed.nowhere_to_answer()
        if nowhere is not None:
            # Fields of a shape Slack never sends: nothing can be shown, so the record says why.
            deps.spawn(record_unanswerable(deps, parsed, team, event_id, nowhere))
            return
        channel = parsed.channel or ""
        ts = parsed.ts or ""
        received_at = arrived(context)  # times run from here, before any Slack look-up

        async def claim_and_answer() -> None:
            # Runs after the ack. A retry keeps its event_id; one message can also arrive as
            # several event types (app_mention and message.im) with different ids but the same
            # channel and ts. Both keys outlive Slack's retries and our restarts. The claims
            # are inside the tracked task, so shutdown (and tests) wait for them too. Both
            # keys are claimed together: one database write per event.
            keys = [f"event:{event_id}"] if event_id else []
            if not await deps.deduper.claim_all([*keys, f"msg:{team}:{channel}:{ts}"], CLAIM_TTL_S):
                return
            if "text" in bad:
                await reply_unreadable(deps, channel, parsed.thread_ts or ts)
                return
            await answer_message(
                deps,
                team=team,
                channel=channel,
                channel_type=parsed.channel_type,
                user=parsed.user or "",
                text=question_text(parsed.text or "", context.bot_user_id),
                ts=ts,
                thread_ts=parsed.thread_ts,
                assistant=assistant,
                received_at=received_at,
            )

        if "text" not in bad:
            deps.spawn(look_ahead(deps, parsed.user or "", channel, parsed.channel_type))
        deps.spawn(claim_and_answer())

    @app.event("app_mention")
    async def on_mention(
        event: dict[str, Any], body: dict[str, Any], context: AsyncBoltContext
    ) -> None:
        await handle(event, body, context, assistant=False)

    @app.event("message")
    async def on_message(
        event: dict[str, Any], body: dict[str, Any], context: AsyncBoltContext
    ) -> None:
        if event.get("channel_type") != "im":
            return  # in channels Concierge answers only when mentioned
        in_thread = bool(event.get("thread_ts"))
        await handle(event, body, context, assistant=in_thread)

    @app.event("assistant_thread_started")
    async def on_thread_started(event: dict[str, Any], context: AsyncBoltContext) -> None:
        thread = event.get("assistant_thread") or {}
        try:
            await deps.client.assistant_threads_setSuggestedPrompts(
                channel_id=str(thread.get("channel_id") or ""),
                thread_ts=str(thread.get("thread_ts") or ""),
                title="Ask me about how things work here",
                prompts=[{"title": t, "message": m} for t, m in SUGGESTED_PROMPTS],
            )
        except Exception:
            log.warning("could not set suggested prompts", exc_info=True)

    @app.event("assistant_thread_context_changed")
    async def on_context_changed(event: dict[str, Any]) -> None:
        return None

    @app.event("user_change")
    async def on_user_change(event: dict[str, Any]) -> None:
        await deps.identity.invalidate(_user_id(event))

    @app.event("team_join")
    async def on_team_join(event: dict[str, Any]) -> None:
        # A new person, perhaps a guest: the list of guests is stale in every instance, and
        # so is every channel's "no guests here" answer.
        await deps.identity.invalidate(_user_id(event))
        await deps.channel_guests.forget_all()

    @app.event("member_joined_channel")
    async def on_member_joined(event: dict[str, Any]) -> None:
        channel = str(event.get("channel") or "")
        deps.channel_guests.drop(channel)  # at once, before anything is awaited
        deps.channels.forget(channel)
        guest = await _is_guest(deps, str(event.get("user") or ""))
        await deps.channel_guests.changed(channel, guest_joined=guest)

    @app.event("member_left_channel")
    async def on_member_left(event: dict[str, Any]) -> None:
        deps.channels.forget(str(event.get("channel") or ""))
        await deps.channel_guests.changed(str(event.get("channel") or ""))

    @app.event("subteam_members_changed")
    async def on_subteam_change(event: dict[str, Any]) -> None:
        await deps.identity.invalidate()


def _user_id(event: dict[str, Any]) -> str | None:
    """The user id of user_change / team_join (an object), tolerating a bare id."""
    user = event.get("user")
    if isinstance(user, dict):
        return str(user.get("id") or "") or None
    return str(user) if isinstance(user, str) and user else None


async def _is_guest(deps: SlackDeps, user_id: str) -> bool:
    """Whether the account that joined a channel is known to be a guest or external. When it
    cannot be told here (a bot without an email, Slack unreachable), the channel's cached
    answer is dropped anyway and the next question asks Slack for its members again."""
    if not user_id:
        return False
    try:
        asker = await deps.identity.resolve(user_id)
    except Exception as exc:
        log.info("cannot tell who joined a channel (%s)", exc.__class__.__name__)
        return False
    return asker.guest or asker.external
