"""Human review and verified answers, through signed Slack requests against the stand-in.

hr-policies (owner hana) has ``review: required``; eve is made an hr reader here so that her
answers from it are held for hana. A held draft never reaches the asker before a decision.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from bot.jobs.scheduler import JobHost, Scheduler
from bot.store.models import AuditEvent, Exchange, Review, VerifiedAnswer, utcnow
from tests.slack_helpers import SlackDriver, button_click, dm

HR_QUESTION = "What is the L3 salary band in Lisbon?"
CANARY = "CANARY-HR-BANDS"


@pytest.fixture
def desk(workspace: Any, request: pytest.FixtureRequest) -> str:
    """The config for these tests (set before the ``slack`` fixture starts the app)."""
    text = workspace.config.read_text().replace(
        'hr: {members: ["group:people-ops"]}',
        'hr: {members: ["group:people-ops", eve@canary.test]}',
    )
    assert "eve@canary.test]" in text
    if request.param == "channel":
        text = text.replace(
            "    review: required\n", "    review: required\n    review_channel: '#hr-review'\n"
        )
    workspace.config.write_text(text)
    return str(request.param)


def rows(slack: SlackDriver, model: Any) -> list[Any]:
    with slack.deps.runtime.store.session() as s:
        return list(
            s.scalars(select(model).order_by(model.created_at if model is Exchange else model.id))
        )


def submit(user: str, callback_id: str, review_id: int, text: str | None) -> dict[str, Any]:
    return {
        "type": "view_submission",
        "user": {"id": user},
        "team": {"id": "T1"},
        "view": {
            "id": "V9",
            "type": "modal",
            "callback_id": callback_id,
            "private_metadata": str(review_id),
            "state": {
                "values": {
                    "review_text": {
                        "review_text_input": {"type": "plain_text_input", "value": text}
                    }
                }
            },
        },
    }


async def held(slack: SlackDriver, ts: str = "700.1") -> tuple[Review, str, str]:
    """eve asks the HR question in a DM; returns the review and where it was posted."""
    await slack.event(dm("UEVE", HR_QUESTION, ts))
    await slack.until(lambda: any(r.notices for r in rows(slack, Review)))
    (review,) = rows(slack, Review)
    (where,) = review.notices
    return review, where["channel"], where["ts"]


def asker_sees(slack: SlackDriver) -> str:
    return "\n".join(m.full_text() for m in slack.api.in_channel("DEVE"))


@pytest.mark.parametrize("desk", ["channel"], indirect=True)
async def test_a_draft_is_held_then_approved_and_delivered(desk: str, slack: SlackDriver) -> None:
    slack.api.add_user("UOLU", "olu@canary.test")
    review, channel, ts = await held(slack)
    assert channel == "hr-review" and review.status == "pending" and review.kind == "draft"
    seen = asker_sees(slack)
    assert "reviews before answers are shared" in seen and CANARY not in seen
    (exchange,) = rows(slack, Exchange)
    assert exchange.outcome == "pending_review" and CANARY not in (exchange.answer or "")
    posted = [
        p for m, p in slack.api.calls if m == "chat.postMessage" and p["channel"] == "hr-review"
    ]
    assert CANARY in str(posted[0]["blocks"])  # the reviewer sees the draft
    # Someone who is not a reviewer cannot approve it; the attempt is audited.
    await slack.interaction(
        button_click("UMAYA", "concierge_review_approve", str(review.id), channel, ts)
    )
    await slack.settle()
    assert rows(slack, Review)[0].status == "pending" and CANARY not in asker_sees(slack)
    await slack.interaction(
        button_click("UMAYA", "concierge_review_edit", str(review.id), channel, ts)
    )
    await slack.settle()
    assert slack.api.called("views.open") == []  # no draft shown to a non-reviewer either
    refusal = [p for m, p in slack.api.calls if m == "chat.postEphemeral" and p["user"] == "UMAYA"]
    assert "Only the reviewers" in refusal[-1]["text"]
    # hana approves: eve gets the answer in her thread, labelled.
    await slack.interaction(
        button_click("UHANA", "concierge_review_approve", str(review.id), channel, ts)
    )
    await slack.settle()
    (done,) = rows(slack, Review)
    assert (done.status, done.decided_by) == ("approved", "hana@canary.test")
    delivered = [m for m in slack.api.in_channel("DEVE") if CANARY in m.full_text()]
    assert len(delivered) == 1 and delivered[0].thread_ts == "700.1"
    assert "Reviewed and approved by hana@canary.test" in delivered[0].full_text()
    assert rows(slack, Exchange)[0].outcome == "answered"
    assert "approved by hana" in slack.api.messages[ts].text  # the review message is closed
    # A second click changes nothing and says so.
    await slack.interaction(
        button_click("UHANA", "concierge_review_approve", str(review.id), channel, ts)
    )
    await slack.settle()
    assert len([m for m in slack.api.in_channel("DEVE") if CANARY in m.full_text()]) == 1
    actions = [a.action for a in rows(slack, AuditEvent)]
    assert actions.count("review.approve") == 1 and actions.count("review.draft") == 1
    assert actions.count("refused") == 2


@pytest.mark.parametrize("desk", ["dm"], indirect=True)
async def test_a_draft_edited_by_its_reviewer_reaches_the_asker_edited(
    desk: str, slack: SlackDriver
) -> None:
    slack.api.add_user("UOLU", "olu@canary.test")
    review, channel, ts = await held(slack)
    assert channel == "DHANA"  # no review channel: the owner's DMs
    await slack.interaction(
        button_click("UHANA", "concierge_review_edit", str(review.id), channel, ts)
    )
    await slack.settle()
    (opened,) = slack.api.called("views.open")
    view = opened["view"]
    assert view["callback_id"] == "concierge_review_edit_modal"
    assert CANARY in view["blocks"][0]["element"]["initial_value"]
    edited = "The L3 band in Lisbon is 42,000 to 54,000 EUR; ask HR for the 2027 update."
    await slack.interaction(submit("UHANA", "concierge_review_edit_modal", review.id, edited))
    await slack.settle()
    assert edited in asker_sees(slack) and "edited and approved by hana" in asker_sees(slack)
    assert CANARY not in asker_sees(slack)  # the unedited draft never went out
    (audit,) = [a for a in rows(slack, AuditEvent) if a.action == "review.edit"]
    (row,) = rows(slack, Review)
    assert (row.status, row.final) == ("edited", edited) and CANARY in (row.draft or "")
    assert audit.details["final_sha256"] == hashlib.sha256(edited.encode()).hexdigest()
    assert CANARY not in str(audit.details)  # the audit log keeps no answer text


@pytest.mark.parametrize("desk", ["dm"], indirect=True)
async def test_a_rejected_draft_gives_the_asker_the_reason_only(
    desk: str, slack: SlackDriver
) -> None:
    slack.api.add_user("UOLU", "olu@canary.test")
    review, channel, ts = await held(slack)
    await slack.interaction(
        button_click("UHANA", "concierge_review_reject", str(review.id), channel, ts)
    )
    await slack.settle()
    assert (
        slack.api.called("views.open")[0]["view"]["callback_id"] == "concierge_review_reject_modal"
    )
    await slack.interaction(
        submit(
            "UHANA", "concierge_review_reject_modal", review.id, "Bands are shared by HR in person."
        )
    )
    await slack.settle()
    seen = asker_sees(slack)
    assert "Bands are shared by HR in person." in seen and CANARY not in seen
    (exchange,) = rows(slack, Exchange)
    assert (exchange.outcome, exchange.error) == ("refused", "review_rejected")


@pytest.mark.parametrize("desk", ["dm"], indirect=True)
async def test_waiting_reviews_are_reminded_once_per_delay(desk: str, slack: SlackDriver) -> None:
    from bot.slack.delivery import SlackDelivery

    review, _, _ = await held(slack)
    scheduler = Scheduler(
        JobHost(slack.deps.runtime.store, slack.deps.runtime, delivery=SlackDelivery(slack.deps)),
        {},
    )
    assert await scheduler.run("review_reminders", slot=utcnow())
    assert rows(slack, Review)[0].reminders == 0  # not yet due (24 h by default)
    with slack.deps.runtime.store.session() as s:
        s.get(Review, review.id).created_at = utcnow() - timedelta(hours=25)
    assert await scheduler.run("review_reminders", slot=utcnow())
    assert rows(slack, Review)[0].reminders == 1
    reminders = [m for m in slack.api.in_channel("DHANA") if "Reminder" in str(m.blocks)]
    assert len(reminders) == 1
    assert await scheduler.run("review_reminders", slot=utcnow() + timedelta(seconds=1))
    assert rows(slack, Review)[0].reminders == 1  # reminded a moment ago: not again


@pytest.mark.parametrize("desk", ["dm"], indirect=True)
async def test_a_thumbs_down_becomes_a_verified_answer_until_the_document_changes(
    desk: str, slack: SlackDriver, workspace: Any
) -> None:
    slack.api.add_user("UOLU", "olu@canary.test")
    question = "Where do I submit expenses?"
    await slack.event(dm("UEVE", question, "800.1"))
    await slack.settle()
    (first,) = rows(slack, Exchange)
    await slack.interaction(
        {
            "type": "view_submission",
            "user": {"id": "UEVE"},
            "team": {"id": "T1"},
            "view": {
                "id": "V1",
                "type": "modal",
                "callback_id": "concierge_feedback_reason",
                "private_metadata": first.id,
                "state": {
                    "values": {
                        "details": {
                            "details_input": {
                                "type": "plain_text_input",
                                "value": "Missing the deadline.",
                            }
                        }
                    }
                },
            },
        }
    )
    await slack.settle()
    (item,) = rows(slack, Review)
    assert item.kind == "feedback" and item.reviewers == ["olu@canary.test"]  # no source owner
    (where,) = item.notices
    assert where["channel"] == "DOLU" and "Missing the deadline." in str(
        slack.api.messages[where["ts"]].blocks
    )
    await slack.interaction(
        button_click("UOLU", "concierge_review_verify", str(item.id), "DOLU", where["ts"])
    )
    await slack.settle()
    verified_text = "Submit expenses in Pleo within 30 days of purchase, with the receipt attached."
    await slack.interaction(submit("UOLU", "concierge_review_verify_modal", item.id, verified_text))
    await slack.settle()
    (saved,) = rows(slack, VerifiedAnswer)
    assert saved.status == "active" and saved.verified_by == "olu@canary.test"
    # The same question, asked again with other words around it, gets the verified answer.
    await slack.event(dm("UEVE", "where do I submit my expenses", "801.1"))
    await slack.settle()
    again = rows(slack, Exchange)[-1]
    assert (
        again.answer.startswith(verified_text) and "Verified by olu@canary.test on" in again.answer
    )
    assert again.model is None and again.cost_usd == 0
    # The cited document changes: the verified answer is dropped, the question answered afresh.
    for doc in (workspace.root / "handbook").glob("*.md"):
        doc.write_text(doc.read_text() + "\nThis page was updated.\n")
    await slack.event(dm("UEVE", question, "802.1"))
    await slack.settle()
    latest = rows(slack, Exchange)[-1]
    assert "Verified by" not in latest.answer and latest.outcome == "answered"
    (stale,) = rows(slack, VerifiedAnswer)
    assert stale.status == "stale" and "changed" in (stale.stale_reason or "")


@pytest.mark.parametrize("desk", ["dm"], indirect=True)
def test_ask_json_shows_a_pending_review_without_the_draft(desk: str, cli: Any) -> None:
    import json

    result = cli("ask", HR_QUESTION, "--as", "eve@canary.test", "--json")
    assert result.code == 0, result.err
    data = json.loads(result.out)
    assert data["outcome"] == "pending_review" and data["review_id"] is not None
    assert CANARY not in result.out and "draft" not in data
    assert data["review_sources"] == ["hr-policies"]
    # The source's owner asking privately is not asked to review their own answer.
    own = json.loads(cli("ask", HR_QUESTION, "--as", "hana@canary.test", "--json").out)
    assert own["outcome"] == "answered" and CANARY in own["answer"]
