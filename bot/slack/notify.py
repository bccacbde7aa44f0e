"""Messages to people by email (owners, approvers, reviewers), by direct message.

These carry what only owners, approvers and reviewers may see (drafts held for review,
reports, access requests), so they go only to a full member of our own team with that email:
never to a guest or an external account that shows it."""

from __future__ import annotations

import logging
from typing import Any

from bot.slack.deps import SlackDeps

log = logging.getLogger("concierge.slack")


async def member_user_id(deps: SlackDeps, email: str) -> str | None:
    """The Slack user id of the full member of our team with this email, else None."""
    try:
        user = (await deps.client.users_lookupByEmail(email=email)).get("user")
    except Exception as exc:
        log.warning("could not look up %s (%s)", email, exc.__class__.__name__)
        return None
    found = await deps.identity.member_id(user) if isinstance(user, dict) else None
    if found is None:
        log.warning("not messaging %s: not a full member of our team in Slack", email)
    return found


async def dm(deps: SlackDeps, email: str, **message: Any) -> dict[str, Any] | None:
    """Post to a person by email; None when Slack does not know them as a full member."""
    user_id = await member_user_id(deps, email)
    if user_id is None:
        return None
    try:
        opened = await deps.client.conversations_open(users=user_id)
        channel = opened["channel"]["id"]
        posted = await deps.client.chat_postMessage(channel=channel, unfurl_links=False, **message)
        return {"channel": channel, "ts": posted["ts"], "email": email}
    except Exception as exc:
        log.warning("could not message %s (%s)", email, exc.__class__.__name__)
        return None
