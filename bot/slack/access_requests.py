"""``/concierge access request SOURCE because …`` and the owner's Approve / Deny buttons."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from slack_sdk.models.blocks import ActionsBlock, ButtonElement, SectionBlock

from bot.core.admin import AccessAdmin, Requests
from bot.core.offers import who_decides
from bot.core.types import Audience
from bot.errors import UsageError
from bot.slack import ids
from bot.slack.access_command import split_options
from bot.slack.actors import member_or_tell
from bot.slack.deps import SlackDeps
from bot.slack.notify import dm
from bot.slack.text import escape
from bot.store import repo
from bot.store.models import AccessRequest

log = logging.getLogger("concierge.slack.requests")
USAGE = "Usage: `/concierge access request SOURCE because …`"


def request_blocks(req: AccessRequest) -> list[dict[str, Any]]:
    text = (
        f"*{escape(req.requester)}* asks to read *{escape(req.source)}*"
        f" (request #{req.id}).\n>{escape(req.reason or '')}"
    )
    return [
        SectionBlock(text=text).to_dict(),
        ActionsBlock(
            block_id=f"access_request:{req.id}",
            elements=[
                ButtonElement(
                    text="Approve", action_id=ids.ACCESS_APPROVE, value=str(req.id), style="primary"
                ),
                ButtonElement(
                    text="Deny", action_id=ids.ACCESS_DENY, value=str(req.id), style="danger"
                ),
            ],
        ).to_dict(),
    ]


async def request_access(deps: SlackDeps, *, user_id: str, text: str) -> str:
    positional, _, reason = split_options(text.split())
    if len(positional) != 1:
        raise UsageError(USAGE)
    asker = await deps.identity.resolve(user_id)
    grants = await deps.runtime.grants()
    readable = {s.name for s in deps.runtime.policy.decide(asker, Audience(), grants).readable}
    requests = Requests(AccessAdmin(deps.runtime.store, deps.runtime.config))
    req = await asyncio.to_thread(
        lambda: requests.create(
            requester=asker.email,
            source_name=positional[0],
            reason=reason,
            already_readable=positional[0].lower() in readable,
        )
    )
    reached = []
    for email in req.approvers:
        notice = await dm(deps, email, text=f"Access request #{req.id}", blocks=request_blocks(req))
        if notice is not None:
            reached.append(email)

            def save(n: dict[str, Any] = notice) -> None:
                with deps.runtime.store.session() as s:
                    repo.add_request_notice(s, req.id, n)

            await asyncio.to_thread(save)
    if not reached:
        return (
            f"Your request #{req.id} for {escape(req.source)} is recorded, but I couldn't "
            f"reach {', '.join(req.approvers)} in Slack; please tell them."
        )
    who = who_decides(deps.runtime.config, deps.runtime.config.source(req.source))
    return (
        f"Your request #{req.id} for {escape(req.source)} was sent to "
        f"{', '.join(reached)}; {escape(who)} decides. I'll tell you when they do."
    )


async def decide(
    deps: SlackDeps, body: dict[str, Any], action: dict[str, Any], approve: bool
) -> None:
    actor = await member_or_tell(deps, body, "decide an access request")
    if actor is None:
        return
    requests = Requests(AccessAdmin(deps.runtime.store, deps.runtime.config))
    channel = (body.get("container") or {}).get("channel_id") or (body.get("channel") or {}).get(
        "id"
    )
    message_ts = (body.get("container") or {}).get("message_ts")
    try:
        req, grant = await asyncio.to_thread(
            lambda: requests.decide(request_id=int(action["value"]), actor=actor, approve=approve)
        )
    except (UsageError, ValueError) as exc:
        if channel:
            await deps.client.chat_postEphemeral(
                channel=channel, user=body["user"]["id"], text=str(exc)
            )
        return
    outcome = "approved" if approve else "denied"
    until = f" until {grant.expires_at:%Y-%m-%d}" if grant and grant.expires_at else ""
    if channel and message_ts:
        await deps.client.chat_update(
            channel=channel,
            ts=message_ts,
            text=f"Request #{req.id}: {escape(req.requester)} → {escape(req.source)} "
            f"{outcome} by {escape(actor)}{until}.",
            blocks=[],
        )
    await dm(
        deps,
        req.requester,
        text=f"Your request #{req.id} for {escape(req.source)} was {outcome} by "
        f"{escape(actor)}{until}." + (" You can ask about it now." if approve else ""),
    )
