"""Messages to people by email (owners, approvers, reviewers), by direct message."""

from __future__ import annotations

import logging
from typing import Any

from bot.slack.deps import SlackDeps

log = logging.getLogger("concierge.slack")


async def dm(deps: SlackDeps, email: str, **message: Any) -> dict[str, Any] | None:
    """Post to a person by email; None when Slack does not know them."""
    try:
        user = await deps.client.users_lookupByEmail(email=email)
        opened = await deps.client.conversations_open(users=user["user"]["id"])
        channel = opened["channel"]["id"]
        posted = await deps.client.chat_postMessage(channel=channel, unfurl_links=False, **message)
        return {"channel": channel, "ts": posted["ts"], "email": email}
    except Exception as exc:
        log.warning("could not message %s (%s)", email, exc.__class__.__name__)
        return None
