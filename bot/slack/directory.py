"""Whether an email belongs to someone in this Slack workspace (users.lookupByEmail).

Used before a grant to an email address, from ``/concierge access grant`` and from
``app.py access grant`` when the bot token is set: a grant to an address nobody has gives
nobody access, and anyone who later holds the address gets it.
"""

from __future__ import annotations

import asyncio
import logging

from slack_sdk.web.async_client import AsyncWebClient

from bot.settings import Settings

log = logging.getLogger("concierge.slack.directory")


async def in_workspace(client: AsyncWebClient, email: str) -> bool:
    """True when an active Slack user has ``email``. When Slack cannot say (the address is
    unknown, the users:read.email scope is missing, Slack is unreachable), False: the admin
    is asked to confirm rather than the grant going ahead unchecked."""
    try:
        found = await client.users_lookupByEmail(email=email)
    except Exception as exc:
        log.info("users.lookupByEmail found nobody (%s)", exc.__class__.__name__)
        return False
    user = found.get("user") or {}
    return bool(user.get("id")) and not user.get("deleted")


def in_workspace_now(settings: Settings, email: str) -> bool:
    """``in_workspace`` for the command line (its own event loop and client)."""
    from bot.slack.app import make_client

    # The client opens and closes an HTTP session per call (it is given none).
    return asyncio.run(in_workspace(make_client(settings), email))
