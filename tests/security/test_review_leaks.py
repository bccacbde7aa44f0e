"""Feedback, review and verified-answer flows show text only to people who may read every
source it carries (issue 10, item 3). Driven with signed Slack requests against the stand-in.

finance-notes (readers: group:finance, confidential) has no owner, so a thumbs-down on an
answer from it goes to the bot's owner, olu, who may not read it. hr-policies (role:hr,
review: required) is owned by hana; olu, as a bot owner, may decide its reviews but may not
read it.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select

from bot.jobs.scheduler import JobHost, Scheduler
from bot.store.models import AuditEvent, Review, utcnow
from tests.slack_helpers import SlackDriver, button_click, dm

FIN_QUESTION = "Who approves expenses above 1,000 EUR, directors or the CFO?"
FIN_CANARY = "CANARY-FIN-5D1"
HR_QUESTION = "What is the L3 salary band in Lisbon?"
HR_CANARY = "CANARY-HR-BANDS"
REASON = "It should name the approval tool."


def reviews(slack: SlackDriver) -> list[Review]:
    with slack.deps.runtime.store.session() as s:
        return list(s.scalars(select(Review).order_by(Review.id)))


def dm_text(slack: SlackDriver, channel: str) -> str:
    return "\n".join(m.full_text() + str(m.blocks) for m in slack.api.in_channel(channel))


def reason_submission(user: str, exchange_id: str, text: str) -> dict[str, Any]:
    return {
        "type": "view_submission",
        "user": {"id": user},
        "team": {"id": "T1"},
        "view": {
            "id": "V1",
            "type": "modal",
            "callback_id": "concierge_feedback_reason",
            "private_metadata": exchange_id,
            "state": {
                "values": {
                    "details": {"details_input": {"type": "plain_text_input", "value": text}}
                }
            },
        },
    }


async def voted_down(slack: SlackDriver) -> Review:
    slack.api.add_user("UFIN", "fin@canary.test")
    slack.api.add_user("UOLU", "olu@canary.test")
    await slack.event(dm("UFIN", FIN_QUESTION, "900.1"))
    await slack.settle()
    assert FIN_CANARY in dm_text(slack, "DFIN")  # fin may read it
    with slack.deps.runtime.store.session() as s:
        from bot.store.models import Exchange

        (exchange,) = s.scalars(select(Exchange)).all()
    await slack.interaction(reason_submission("UFIN", exchange.id, REASON))
    await slack.until(lambda: any(r.notices for r in reviews(slack)))
    (item,) = reviews(slack)
    assert item.kind == "feedback" and item.reviewers == ["olu@canary.test"]
    return item


async def test_thumbs_down_does_not_send_a_private_answer_to_an_owner_who_may_not_read_it(
    slack: SlackDriver,
) -> None:
    await voted_down(slack)
    seen = dm_text(slack, "DOLU")
    assert FIN_CANARY not in seen and "directors" not in seen.lower()
    assert REASON in seen  # the reason and a pointer still reach the owner
    assert "may not read" in seen


async def test_review_reminders_do_not_resend_the_answer_either(slack: SlackDriver) -> None:
    from bot.slack.delivery import SlackDelivery

    item = await voted_down(slack)
    with slack.deps.runtime.store.session() as s:
        s.get(Review, item.id).created_at = utcnow() - timedelta(hours=25)  # type: ignore[union-attr]
    host = JobHost(slack.deps.runtime.store, slack.deps.runtime, delivery=SlackDelivery(slack.deps))
    assert await Scheduler(host, {}).run("review_reminders", slot=utcnow())
    assert reviews(slack)[0].reminders == 1
    seen = dm_text(slack, "DOLU")
    assert "Reminder" in seen and FIN_CANARY not in seen


async def test_an_owner_who_may_not_read_cannot_open_or_verify_the_answer(
    slack: SlackDriver,
) -> None:
    item = await voted_down(slack)
    (where,) = item.notices
    await slack.interaction(
        button_click("UOLU", "concierge_review_verify", str(item.id), "DOLU", where["ts"])
    )
    await slack.settle()
    assert slack.api.called("views.open") == []  # the verify modal holds the answer text
    told = [p for m, p in slack.api.calls if m == "chat.postEphemeral" and p["user"] == "UOLU"]
    assert "may not read finance-notes" in told[-1]["text"]
    with slack.deps.runtime.store.session() as s:
        refused = [a for a in s.scalars(select(AuditEvent)) if a.action == "refused"]
    assert refused and refused[-1].actor == "olu@canary.test"


async def test_a_bot_owner_cannot_open_the_edit_dialog_of_a_confidential_draft(
    eve_in_hr: None, slack: SlackDriver
) -> None:
    slack.api.add_user("UOLU", "olu@canary.test")
    await slack.event(dm("UEVE", HR_QUESTION, "910.1"))
    await slack.until(lambda: any(r.notices for r in reviews(slack)))
    (draft,) = reviews(slack)
    (where,) = draft.notices
    assert where["channel"] == "DHANA"  # the owner, who may read it, gets the draft
    for action in ("concierge_review_edit", "concierge_review_approve"):
        await slack.interaction(button_click("UOLU", action, str(draft.id), "DHANA", where["ts"]))
        await slack.settle()
    assert slack.api.called("views.open") == []
    assert HR_CANARY not in dm_text(slack, "DOLU")
    assert HR_CANARY not in dm_text(slack, "DEVE")
    assert reviews(slack)[0].status == "pending"
