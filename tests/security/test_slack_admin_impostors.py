"""Admin, owner, approver and reviewer powers need a full member of our own team (#4).

The powers are granted by email, and a Slack profile's email proves nothing on its own: a
guest, a Slack Connect account or an account of another organisation can show an admin's.
Each test drives the real app with signed requests against the Slack stand-in.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from bot.store.models import Exchange, Review
from tests.security.slack_app import audit, grants, replies
from tests.slack_helpers import SlackDriver, dm

IMPOSTORS: dict[str, dict[str, Any]] = {
    "guest": {"is_restricted": True},
    "single-channel-guest": {"is_ultra_restricted": True},
    "slack-connect": {"team_id": "T9"},
    "stranger": {"is_stranger": True},
    "another-organisation": {"enterprise_user": {"enterprise_id": "E9", "teams": ["T1"]}},
    "unconfirmed-email": {"is_email_confirmed": False},
}


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("kind", sorted(IMPOSTORS))
async def test_an_account_showing_an_admins_email_cannot_manage_access(
    kind: str, slack: SlackDriver
) -> None:
    slack.api.add_user("UFAKE", "ada@canary.test", **IMPOSTORS[kind])
    await slack.command("UFAKE", "access grant <@UEVE> finance-notes because admin says so")
    await slack.command("UFAKE", "access who-can finance-notes")
    await slack.settle()
    assert grants(slack) == []
    texts = replies(slack, "UFAKE")
    assert len(texts) == 2 and all("Only full members" in t for t in texts), texts
    # Audited as refusals of the account itself, never as the admin it claims to be.
    rows = audit(slack)
    assert [(a.actor, a.action) for a in rows] == [("slack:UFAKE", "refused")] * 2
    assert all("ada@canary.test" in (a.reason or "") for a in rows)
    # The real admin, a full member, still can.
    slack.api.add_user("UADA", "ada@canary.test")
    await slack.command("UADA", "access grant <@UEVE> finance-notes")
    await slack.settle()
    assert grants(slack) == [("user:eve@canary.test", "finance-notes")]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_a_workspace_admin_flag_on_an_external_account_gives_no_access_powers(
    slack_admins_on: None, slack: SlackDriver
) -> None:
    slack.api.add_user("UXADMIN", "boss@partner.test", team_id="T9", is_admin=True)
    await slack.command("UXADMIN", "access grant <@UEVE> runbooks")
    await slack.settle()
    assert grants(slack) == []
    assert "Only full members" in replies(slack, "UXADMIN")[-1]


@pytest.fixture
def slack_admins_on(workspace: Any) -> None:
    workspace.config.write_text(workspace.config.read_text() + "slack_admins: true\n")


@pytest.fixture
def requestable(workspace: Any) -> None:
    """finance-notes may be requested; fin@canary.test owns and approves it."""
    from tests.test_access_requests import make_requestable

    make_requestable(workspace)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_an_account_showing_the_approvers_email_cannot_approve_a_request(
    requestable: None, slack: SlackDriver
) -> None:
    slack.api.add_user("UFIN", "fin@canary.test")
    await slack.command("UEVE", "access request finance-notes because quarter close")
    await slack.settle()
    (ask,) = [m for m in slack.api.in_channel("DFIN") if m.blocks]
    approve = {**ask.blocks[1]["elements"][0], "type": "button"}
    slack.api.add_user("UFAKEFIN", "fin@canary.test", team_id="T9")
    await slack.interaction(
        {
            "type": "block_actions",
            "user": {"id": "UFAKEFIN"},
            "team": {"id": "T9"},
            "container": {"type": "message", "channel_id": "DFIN", "message_ts": ask.ts},
            "actions": [approve],
        }
    )
    await slack.settle()
    assert grants(slack) == []
    assert "Only full members" in replies(slack, "UFAKEFIN")[-1]
    assert [a.action for a in audit(slack)] == ["request", "refused"]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_a_request_is_never_sent_to_an_external_account_with_the_approvers_email(
    requestable: None, slack: SlackDriver
) -> None:
    slack.api.add_user("UFAKEFIN", "fin@canary.test", team_id="T9")  # the only "fin" in Slack
    await slack.command("UEVE", "access request finance-notes because quarter close")
    await slack.settle()
    assert slack.api.in_channel("DFAKEFIN") == []
    assert "couldn't reach fin@canary.test" in replies(slack, "UEVE")[-1]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_an_account_showing_an_owners_email_cannot_get_the_report(
    slack: SlackDriver,
) -> None:
    await slack.event(dm("UEVE", "Where do I submit expenses?", "3.1"))
    await slack.settle()
    slack.api.add_user("UFAKEOLU", "olu@canary.test", is_restricted=True)
    await slack.command("UFAKEOLU", "report 7d")
    await slack.settle()
    assert slack.api.uploads == {}
    assert slack.api.in_channel("DFAKEOLU") == []
    assert "Only full members" in replies(slack, "UFAKEOLU")[-1]


@pytest.fixture
def hana_reads_hr(workspace: Any) -> None:
    """hr-policies (owner hana, review required) also names hana by email, and its drafts go
    to the #hr-review channel."""
    text = workspace.config.read_text().replace(
        'hr: {members: ["group:people-ops"]}',
        'hr: {members: ["group:people-ops", eve@canary.test, hana@canary.test]}',
    )
    text = text.replace(
        "    review: required\n", "    review: required\n    review_channel: '#hr-review'\n"
    )
    workspace.config.write_text(text)


def reviews(slack: SlackDriver) -> list[Review]:
    with slack.deps.runtime.store.session() as s:
        return list(s.scalars(select(Review).order_by(Review.id)))


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_an_account_showing_the_reviewers_email_cannot_approve_a_held_draft(
    hana_reads_hr: None, slack: SlackDriver
) -> None:
    await slack.event(dm("UEVE", "What is the L3 salary band in Lisbon?", "700.1"))
    await slack.until(lambda: any(r.notices for r in reviews(slack)))
    (review,) = reviews(slack)
    (where,) = review.notices
    slack.api.add_user("UFAKEHANA", "hana@canary.test", team_id="T9")
    for action in ("concierge_review_approve", "concierge_review_edit"):
        await slack.interaction(
            {
                "type": "block_actions",
                "user": {"id": "UFAKEHANA"},
                "team": {"id": "T9"},
                "trigger_id": "trig",
                "container": {
                    "type": "message",
                    "channel_id": where["channel"],
                    "message_ts": where["ts"],
                },
                "actions": [
                    {"action_id": action, "type": "button", "value": str(review.id)},
                ],
            }
        )
        await slack.settle()
    assert reviews(slack)[0].status == "pending"
    assert slack.api.called("views.open") == []  # the draft is not shown in a modal either
    assert "CANARY-HR-BANDS" not in "\n".join(m.full_text() for m in slack.api.in_channel("DEVE"))
    assert all("Only full members" in t for t in replies(slack, "UFAKEHANA"))


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_an_account_showing_the_owners_email_does_not_skip_the_owners_review(
    hana_reads_hr: None, slack: SlackDriver
) -> None:
    """An owner asking privately about their own source is not asked to review themselves;
    an external account showing the owner's email is not the owner."""
    slack.api.add_user("UFAKEHANA", "hana@canary.test", team_id="T9")
    await slack.event(dm("UFAKEHANA", "What is the L3 salary band in Lisbon?", "701.1"))
    await slack.settle()
    assert "CANARY-HR-BANDS" not in "\n".join(
        m.full_text() for m in slack.api.in_channel("DFAKEHANA")
    )
    with slack.deps.runtime.store.session() as s:
        (exchange,) = s.scalars(select(Exchange)).all()
    # Held for the real owner's review, or (since the email is one of our members', not
    # theirs) not even readable: never answered from the owner's source.
    assert exchange.outcome in ("pending_review", "no_answer")
    assert exchange.outcome == "pending_review" or not exchange.sources


async def test_an_external_account_showing_a_members_email_gets_none_of_their_grants(
    slack: SlackDriver,
) -> None:
    """Slack Connect: another organisation's account shows eve's email. eve's own grant of
    the runbooks must not become theirs (guests read what names them directly, and this
    email is one of our members', not theirs)."""
    from bot.core.admin import AccessAdmin

    runtime = slack.deps.runtime
    admin = AccessAdmin(runtime.store, runtime.config)
    admin.grant(actor="cli", who="eve@canary.test", what="runbooks", reason="test")
    question = "What is the deploy freeze codeword for deploying a service?"
    await slack.event(dm("UEXT", question, "990.1"))
    await slack.settle()
    assert "CANARY-RUNBOOK-7F3" not in slack.api.everything_posted()
    await slack.event(dm("UEVE", question, "990.2"))
    await slack.settle()
    assert "CANARY-RUNBOOK-7F3" in slack.api.everything_posted()  # eve herself still may
