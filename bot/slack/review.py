"""Human review in Slack: held drafts go to the source's review channel (or its reviewers'
DMs) with Approve / Edit / Reject; voted-down answers go to the cited sources' owners with
"Write a verified answer" / Dismiss. The asker gets the approved answer in their thread, or the
reviewer's reason."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from slack_sdk.models.blocks import (
    ActionsBlock,
    ButtonElement,
    ContextBlock,
    HeaderBlock,
    InputBlock,
    MarkdownTextObject,
    PlainTextInputElement,
    PlainTextObject,
    SectionBlock,
)
from slack_sdk.models.views import View

from bot.core.review import MAX_TEXT
from bot.errors import UsageError
from bot.slack import ids
from bot.slack.actors import member_or_tell
from bot.slack.deps import SlackDeps
from bot.slack.notify import dm
from bot.slack.report import thread_link
from bot.slack.text import escape
from bot.store import repo
from bot.store.models import Review

log = logging.getLogger("concierge.slack.review")
SECTION_LIMIT = 2900  # Slack's section text limit is 3000 characters


def _clip(text: str | None, limit: int = SECTION_LIMIT) -> str:
    text = text or ""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def review_blocks(
    review: Review, *, reminder: bool = False, show_text: bool = True
) -> list[dict[str, Any]]:
    """The item as its reviewers see it. Without ``show_text`` (the recipient may not read
    everything it carries) it holds no question, draft or answer: only the sources, the
    reason given and a link to the thread, where Slack itself decides who may look."""
    rid = str(review.id)
    sources = ", ".join(review.sources) or "no source"
    if review.kind == "draft":
        title = "Reminder: an answer is waiting for review" if reminder else "Answer to review"
        buttons = [
            ButtonElement(text="Approve", action_id=ids.REVIEW_APPROVE, value=rid, style="primary"),
            ButtonElement(text="Edit", action_id=ids.REVIEW_EDIT, value=rid),
            ButtonElement(text="Reject", action_id=ids.REVIEW_REJECT, value=rid, style="danger"),
        ]
        body = f"*Draft answer*\n{_clip(escape(review.draft or ''))}"
        context = f"Asked by {escape(review.asker)} · uses {escape(sources)} · review #{rid}"
    else:
        title = "Reminder: a voted-down answer" if reminder else "An answer was voted down"
        buttons = [
            ButtonElement(
                text="Write a verified answer",
                action_id=ids.REVIEW_VERIFY,
                value=rid,
                style="primary",
            ),
            ButtonElement(text="Dismiss", action_id=ids.REVIEW_DISMISS, value=rid),
        ]
        body = (
            f"*Answer given*\n{_clip(escape(review.draft or ''), 2000)}\n\n"
            f"*Reason given*\n{escape(review.reason or 'none')}"
        )
        context = f"Cited {escape(sources)} · queue item #{rid}"
    question = f"*Question*\n{_clip(escape(review.question or ''), 500)}"
    if not show_text:
        question = (
            f"*Not shown here:* the question and answer use {escape(sources)}, which you may not "
            "read. Ask an admin for access to review it."
            + thread_link(review.channel, review.thread)
        )
        body = (
            f"*Reason given*\n{escape(review.reason or 'none')}"
            if review.kind == "feedback"
            else "*Draft answer*\n_(hidden: you may not read its sources)_"
        )
        buttons = [b for b in buttons if b.action_id in (ids.REVIEW_REJECT, ids.REVIEW_DISMISS)]
    blocks = [
        HeaderBlock(text=title),
        SectionBlock(text=MarkdownTextObject(text=question)),
        SectionBlock(text=MarkdownTextObject(text=body)),
        ContextBlock(elements=[MarkdownTextObject(text=context)]),
        ActionsBlock(block_id=f"review_{rid}", elements=buttons),
    ]
    return [b.to_dict() for b in blocks]


def text_modal(
    callback_id: str,
    review_id: int,
    title: str,
    label: str,
    initial: str | None,
    *,
    optional: bool = False,
) -> dict[str, Any]:
    view = View(
        type="modal",
        callback_id=callback_id,
        private_metadata=str(review_id),
        title=PlainTextObject(text=title),
        submit=PlainTextObject(text="Save"),
        close=PlainTextObject(text="Cancel"),
        blocks=[
            InputBlock(
                block_id=ids.REVIEW_TEXT_BLOCK,
                label=PlainTextObject(text=label),
                optional=optional,
                element=PlainTextInputElement(
                    action_id=ids.REVIEW_TEXT_ACTION,
                    multiline=True,
                    max_length=min(MAX_TEXT, 3000),
                    initial_value=_clip(initial, 3000) if initial else None,
                ),
            )
        ],
    )
    return view.to_dict()


def edit_modal(review: Review) -> dict[str, Any]:
    return text_modal(ids.REVIEW_EDIT_MODAL, review.id, "Edit the answer", "Answer", review.draft)


def reject_modal(review: Review) -> dict[str, Any]:
    return text_modal(
        ids.REVIEW_REJECT_MODAL,
        review.id,
        "Reject the answer",
        "Why? (the asker will read this)",
        None,
        optional=True,
    )


def verify_modal(review: Review) -> dict[str, Any]:
    return text_modal(
        ids.REVIEW_VERIFY_MODAL, review.id, "Verified answer", "The correct answer", review.draft
    )


async def post_review(deps: SlackDeps, review: Review, *, reminder: bool = False) -> bool:
    """Put a review item in front of its reviewers; True when someone was reached.

    The source's ``review_channel`` is the operator's statement that its members review that
    source, so drafts go there whole. A reviewer reached by DM is shown the text only if they
    may read everything it carries; otherwise they get the reason and a link."""
    blocks = review_blocks(review, reminder=reminder)
    text = f"Review #{review.id}: " + ("answer to review" if review.kind == "draft" else "👎")
    notices: list[dict[str, Any]] = []
    if review.review_channel:
        try:
            posted = await deps.client.chat_postMessage(
                channel=review.review_channel.lstrip("#"), text=text, blocks=blocks
            )
            notices.append({"channel": posted["channel"], "ts": posted["ts"]})
        except Exception as exc:
            log.warning("could not post review #%s to its channel (%s)", review.id, exc)
    if not notices:
        desk = deps.runtime.reviews
        for email in review.reviewers:
            shown = review_blocks(
                review, reminder=reminder, show_text=await desk.may_see(review, email)
            )
            notice = await dm(deps, email, text=text, blocks=shown)
            if notice is not None:
                notices.append(notice)
    if notices:

        def save() -> None:
            with deps.runtime.store.session() as s:
                row = repo.get_review(s, review.id)
                if row is not None:
                    row.notices = [*(row.notices or []), *notices]

        await asyncio.to_thread(save)
    return bool(notices)


def _load(deps: SlackDeps, review_id: int) -> Review:
    with deps.runtime.store.session() as s:
        review = repo.get_review(s, review_id)
    if review is None:
        raise UsageError(f"There is no review #{review_id}.")
    return review


async def open_modal(deps: SlackDeps, body: dict[str, Any], action: dict[str, Any]) -> None:
    """Edit / Reject / Write a verified answer: the reviewer's text comes from a modal."""
    review = await asyncio.to_thread(_load, deps, int(action["value"]))
    user_id = body["user"]["id"]
    actor = await member_or_tell(deps, body, "review.open", target=review.asker)
    if actor is None:
        return
    desk = deps.runtime.reviews
    # Reject's modal asks only for a reason; Edit and Verify show the text.
    verb = "open_reject" if action["action_id"] == ids.REVIEW_REJECT else "open"
    refused = await desk.refusal(review, actor, verb)
    if refused is not None:
        await asyncio.to_thread(desk.record_refusal, review.id, actor, verb)
        await _tell(deps, body, user_id, refused)
        return
    if review.status != "pending":
        await _tell(deps, body, user_id, f"Review #{review.id} was already {review.status}.")
        return
    builders = {
        ids.REVIEW_EDIT: edit_modal,
        ids.REVIEW_REJECT: reject_modal,
        ids.REVIEW_VERIFY: verify_modal,
    }
    await deps.client.views_open(
        trigger_id=body["trigger_id"], view=builders[action["action_id"]](review)
    )


async def decide(
    deps: SlackDeps,
    body: dict[str, Any],
    review_id: int,
    action: str,
    *,
    text: str | None = None,
) -> None:
    """Record the decision, tell the asker, and mark the reviewers' messages as decided."""
    user_id = body["user"]["id"]
    actor = await member_or_tell(deps, body, f"review.{action}")
    if actor is None:
        return
    desk = deps.runtime.reviews
    try:
        if action == "verify":
            verified = await desk.verify(review_id, actor=actor, text=text or "")
            review = await asyncio.to_thread(_load, deps, review_id)
            outcome = f"saved as verified answer #{verified.id} by {actor}"
        else:
            review = await desk.decide(
                review_id,
                actor=actor,
                action=action,
                text=text if action == "edit" else None,
                reason=text if action in ("reject", "dismiss") else None,
            )
            outcome = f"{review.status} by {actor}"
    except UsageError as exc:
        await _tell(deps, body, user_id, str(exc))
        return
    if review.kind == "draft":
        await _answer_asker(deps, review)
    await _mark_decided(deps, review, outcome)


async def _tell(deps: SlackDeps, body: dict[str, Any], user_id: str, text: str) -> None:
    channel = (body.get("container") or {}).get("channel_id") or (body.get("channel") or {}).get(
        "id"
    )
    try:
        if channel:
            await deps.client.chat_postEphemeral(channel=channel, user=user_id, text=text)
        else:  # a modal submission has no channel: a DM
            opened = await deps.client.conversations_open(users=user_id)
            await deps.client.chat_postMessage(channel=opened["channel"]["id"], text=text)
    except Exception as exc:
        log.warning("could not tell %s (%s)", user_id, exc.__class__.__name__)


async def _answer_asker(deps: SlackDeps, review: Review) -> None:
    if review.status in ("approved", "edited"):
        note = "edited and approved" if review.status == "edited" else "approved"
        text = f"{escape(review.final or '')}\n\n_Reviewed and {note} by {review.decided_by}._"
    else:
        why = f" Their reason: {escape(review.reason)}" if review.reason else ""
        text = (
            f"The reviewer of {', '.join(review.sources)} ({review.decided_by}) decided not to "
            f"share the answer to your question.{why}"
        )
    try:
        if review.channel:
            await deps.client.chat_postMessage(
                channel=review.channel,
                thread_ts=review.thread,
                text=text,
                unfurl_links=False,
            )
        else:
            await dm(deps, review.asker, text=text)
    except Exception as exc:
        log.warning("could not deliver review #%s to the asker (%s)", review.id, exc)


async def _mark_decided(deps: SlackDeps, review: Review, outcome: str) -> None:
    for notice in review.notices or []:
        try:
            await deps.client.chat_update(
                channel=notice["channel"],
                ts=notice["ts"],
                text=f"Review #{review.id}: {outcome}.",
                blocks=[],
            )
        except Exception as exc:
            log.warning("could not update review message (%s)", exc.__class__.__name__)


def submitted_text(view: dict[str, Any]) -> str | None:
    values = (view.get("state") or {}).get("values") or {}
    return ((values.get(ids.REVIEW_TEXT_BLOCK) or {}).get(ids.REVIEW_TEXT_ACTION) or {}).get(
        "value"
    )
