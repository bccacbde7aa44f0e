"""Buttons and modals: feedback thumbs and reasons, access request decisions, and human
review (approve / edit / reject drafts; verified answers after a thumbs-down)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_bolt.context.async_context import AsyncBoltContext

from bot.errors import UsageError
from bot.slack import ids
from bot.slack.access_requests import decide
from bot.slack.blocks import feedback_modal
from bot.slack.deps import SlackDeps
from bot.slack.listeners.commands import access
from bot.slack.replay import once
from bot.slack.review import _tell as tell
from bot.slack.review import decide as decide_review
from bot.slack.review import open_modal, submitted_text
from bot.store import repo
from bot.store.db import StoreUnavailable

log = logging.getLogger("concierge.slack.actions")
STALE = (
    "That button doesn't point at a review I know (it may be out of date). "
    "Use the buttons on the latest review message."
)
BROKEN = (
    "Sorry, that didn't work because of an error on my side. It has been logged; please try again."
)


def review_id_of(value: object) -> int | None:
    """A review id from a button's value or a modal's metadata; None when it is not one
    (an old or forged payload): the clicker is told, nothing raises after the ack."""
    text = str(value or "").strip()
    return int(text) if text.isdigit() and len(text) < 12 else None


async def guarded(deps: SlackDeps, body: dict[str, Any], work: Awaitable[None], what: str) -> None:
    """Work after an ack handles its own errors: the person gets a message they can act on,
    the log gets the details, and nothing reaches Bolt after the ack."""
    user = body.get("user")
    user_id = str(user.get("id") or "") if isinstance(user, dict) else ""
    try:
        await work
    except UsageError as exc:
        if user_id:
            await tell(deps, body, user_id, str(exc))
    except Exception:
        log.exception("%s failed", what)
        if user_id:
            await tell(deps, body, user_id, BROKEN)


async def _voter(deps: SlackDeps, user_id: str) -> str:
    try:
        return (await deps.identity.resolve(user_id)).email
    except Exception:
        return f"slack:{user_id}"


async def save_vote(
    deps: SlackDeps,
    exchange_id: str,
    voter: str,
    vote: int,
    reason: str | None = None,
    category: str | None = None,
) -> bool:
    """Store the vote, or spool it while the database is away (a vote is never lost).
    False when the exchange is known not to exist."""

    def known() -> bool:
        with deps.runtime.store.session() as s:
            return repo.get_exchange(s, exchange_id) is not None

    try:
        exists = await deps.runtime.store.call(known)
    except StoreUnavailable:
        exists = True  # cannot tell now: spooled, and checked again when it is replayed
    if not exists:
        return False
    await deps.runtime.vote(
        exchange_id=exchange_id, voter=voter, vote=vote, reason=reason, category=category
    )
    return True


def register(app: AsyncApp, deps: SlackDeps) -> None:
    @app.action(ids.FEEDBACK_ACTION)
    async def on_feedback(
        ack: AsyncAck, body: dict[str, Any], action: dict[str, Any], context: AsyncBoltContext
    ) -> None:
        await ack()
        await guarded(deps, body, feedback(body, action), "feedback")

    async def feedback(body: dict[str, Any], action: dict[str, Any]) -> None:
        direction, _, exchange_id = str(action.get("value", "")).partition(":")
        if direction not in ("up", "down") or not exchange_id:
            log.warning("feedback with an unexpected value")
            return
        user = body["user"]["id"]
        vote = 1 if direction == "up" else -1
        if not await save_vote(deps, exchange_id, await _voter(deps, user), vote):
            log.warning("feedback for unknown exchange %s", exchange_id)
            return
        if vote < 0 and body.get("trigger_id"):
            await deps.client.views_open(
                trigger_id=body["trigger_id"], view=feedback_modal(exchange_id)
            )

    @app.action(ids.ACCESS_APPROVE)
    async def on_approve(
        ack: AsyncAck, body: dict[str, Any], action: dict[str, Any], context: AsyncBoltContext
    ) -> None:
        await ack()
        deps.spawn(
            guarded(deps, body, once(context, decide(deps, body, action, approve=True)), "approval")
        )

    @app.action(ids.ACCESS_GRANT_CONFIRM)
    async def on_grant_anyway(
        ack: AsyncAck, body: dict[str, Any], action: dict[str, Any], context: AsyncBoltContext
    ) -> None:
        """The command is run again as the clicker (the admin check is made again)."""
        await ack()
        channel = (body.get("container") or {}).get("channel_id") or (
            body.get("channel") or {}
        ).get("id")
        command = {"user_id": body["user"]["id"], "channel_id": channel or ""}
        text = str(action.get("value") or "")
        if [w.lower() for w in text.split()[:1]] != ["grant"] or "--yes" not in text.split():
            log.warning("a grant confirmation with an unexpected value")
            return
        deps.spawn(guarded(deps, body, once(context, access(deps, command, text)), "grant"))

    @app.action(ids.ACCESS_DENY)
    async def on_deny(
        ack: AsyncAck, body: dict[str, Any], action: dict[str, Any], context: AsyncBoltContext
    ) -> None:
        await ack()
        deps.spawn(
            guarded(deps, body, once(context, decide(deps, body, action, approve=False)), "denial")
        )

    @app.view(ids.FEEDBACK_MODAL)
    async def on_reason(
        ack: AsyncAck, body: dict[str, Any], view: dict[str, Any], context: AsyncBoltContext
    ) -> None:
        await ack()
        await guarded(deps, body, reason(body, view, context), "feedback reason")

    async def reason(body: dict[str, Any], view: dict[str, Any], context: AsyncBoltContext) -> None:
        values = (view.get("state") or {}).get("values") or {}
        category = (
            (
                (values.get(ids.FEEDBACK_CATEGORY_BLOCK) or {}).get(ids.FEEDBACK_CATEGORY_ACTION)
                or {}
            ).get("selected_option")
            or {}
        ).get("value")
        details = (
            (values.get(ids.FEEDBACK_TEXT_BLOCK) or {}).get(ids.FEEDBACK_TEXT_ACTION) or {}
        ).get("value")
        exchange_id = str(view.get("private_metadata") or "")
        voter = await _voter(deps, body["user"]["id"])
        if await save_vote(
            deps, exchange_id, voter, -1, reason=(details or None), category=category
        ):
            why = ": ".join(x for x in (category, details) if x) or None
            deps.spawn(once(context, deps.runtime.reviews.feedback(exchange_id, voter, why)))

    clicked = {ids.REVIEW_APPROVE: "approve", ids.REVIEW_DISMISS: "dismiss"}

    @app.action(ids.REVIEW_APPROVE)
    @app.action(ids.REVIEW_DISMISS)
    async def on_review_click(
        ack: AsyncAck, body: dict[str, Any], action: dict[str, Any], context: AsyncBoltContext
    ) -> None:
        await ack()
        verb = clicked.get(str(action.get("action_id")), "dismiss")
        review_id = review_id_of(action.get("value"))
        if review_id is None:
            deps.spawn(guarded(deps, body, refuse_stale(), "review click"))
            return
        deps.spawn(
            guarded(deps, body, once(context, decide_review(deps, body, review_id, verb)), "review")
        )

    async def refuse_stale() -> None:
        raise UsageError(STALE)

    @app.action(ids.REVIEW_EDIT)
    @app.action(ids.REVIEW_REJECT)
    @app.action(ids.REVIEW_VERIFY)
    async def on_review_modal(
        ack: AsyncAck, body: dict[str, Any], action: dict[str, Any], context: AsyncBoltContext
    ) -> None:
        await ack()
        if review_id_of(action.get("value")) is None:
            await guarded(deps, body, refuse_stale(), "review click")
            return
        # trigger_id expires in 3 s: not spawned
        await guarded(deps, body, open_modal(deps, body, action), "review modal")

    # The reviewer wrote an answer: an edited draft, or a verified answer after a 👎.
    written = {ids.REVIEW_EDIT_MODAL: "edit", ids.REVIEW_VERIFY_MODAL: "verify"}

    @app.view(ids.REVIEW_EDIT_MODAL)
    @app.view(ids.REVIEW_VERIFY_MODAL)
    async def on_answer_written(
        ack: AsyncAck, body: dict[str, Any], view: dict[str, Any], context: AsyncBoltContext
    ) -> None:
        text = submitted_text(view)
        if not (text or "").strip():
            await ack(response_action="errors", errors={ids.REVIEW_TEXT_BLOCK: "Write the answer."})
            return
        await ack()
        review_id = review_id_of(view.get("private_metadata"))
        action = written.get(str(view.get("callback_id")), "edit")
        if review_id is None:
            deps.spawn(guarded(deps, body, refuse_stale(), "review answer"))
            return
        work = once(context, decide_review(deps, body, review_id, action, text=text))
        deps.spawn(guarded(deps, body, work, "review answer"))

    @app.view(ids.REVIEW_REJECT_MODAL)
    async def on_review_rejected(
        ack: AsyncAck, body: dict[str, Any], view: dict[str, Any], context: AsyncBoltContext
    ) -> None:
        await ack()
        review_id = review_id_of(view.get("private_metadata"))
        if review_id is None:
            deps.spawn(guarded(deps, body, refuse_stale(), "review reject"))
            return
        work = once(
            context, decide_review(deps, body, review_id, "reject", text=submitted_text(view))
        )
        deps.spawn(guarded(deps, body, work, "review reject"))
