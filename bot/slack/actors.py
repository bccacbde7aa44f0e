"""Who may use admin, owner, approver and reviewer powers from Slack: a full member of our
own team whose email the config names (``Asker.is_full_member``; refusals are audited by
``bot.core.admin.require_full_member``). Every such listener asks here first."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from bot.core.admin import require_full_member
from bot.errors import UsageError
from bot.slack.deps import SlackDeps

log = logging.getLogger("concierge.slack.actors")


async def member_email(
    deps: SlackDeps, user_id: str, operation: str, target: str | None = None
) -> str:
    """The email of a Slack user who is a full member of our team; otherwise the attempt is
    audited and NotAllowed (a UsageError with a message for them) is raised."""
    asker = await deps.identity.resolve(user_id)
    return await asyncio.to_thread(
        require_full_member, deps.runtime.store, asker, operation, target
    )


async def member_or_tell(
    deps: SlackDeps, body: dict[str, Any], operation: str, target: str | None = None
) -> str | None:
    """For buttons and modals: the clicker's email, or None after telling them why not."""
    user_id = str((body.get("user") or {}).get("id") or "")
    try:
        return await member_email(deps, user_id, operation, target)
    except UsageError as exc:
        await tell(deps, body, user_id, str(exc))
        return None


async def tell(deps: SlackDeps, body: dict[str, Any], user_id: str, text: str) -> None:
    """An ephemeral note where the click happened, or a DM (a modal has no channel)."""
    channel = (body.get("container") or {}).get("channel_id") or (body.get("channel") or {}).get(
        "id"
    )
    try:
        if channel:
            await deps.client.chat_postEphemeral(channel=channel, user=user_id, text=text)
        else:
            opened = await deps.client.conversations_open(users=user_id)
            await deps.client.chat_postMessage(channel=opened["channel"]["id"], text=text)
    except Exception as exc:
        log.warning("could not tell %s (%s)", user_id, exc.__class__.__name__)
