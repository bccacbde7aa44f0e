"""``/concierge access …`` through signed slash-command requests."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from bot.store.models import AuditEvent, Grant
from tests.slack_helpers import SlackDriver


def replies(slack: SlackDriver) -> list[str]:
    return [p.get("text", "") for p in slack.api.called("chat.postEphemeral")]


def audit(slack: SlackDriver) -> list[AuditEvent]:
    with slack.deps.runtime.store.session() as s:
        return list(s.scalars(select(AuditEvent).order_by(AuditEvent.id)))


def grants(slack: SlackDriver) -> list[Grant]:
    with slack.deps.runtime.store.session() as s:
        return list(s.scalars(select(Grant).where(Grant.revoked_at.is_(None))))


@pytest.fixture
def bound_finance(workspace) -> None:  # type: ignore[no-untyped-def]
    """The config binds the Slack user group S1 to its finance group (before the app starts)."""
    workspace.config.write_text(workspace.config.read_text() + "slack_groups: {finance: [S1]}\n")


async def test_admin_grants_with_mentions_and_revokes(bound_finance: None, slack) -> None:
    slack.api.add_user("UADA", "ada@canary.test")
    status, _, _ = await slack.command(
        "UADA", "access grant <@UEVE|eve> finance-notes for 30d because month-end close"
    )
    assert status == 200
    # Each command's work runs after its ack, concurrently with the next one's: settle in
    # between so that the replies and the audit log come in the order asserted below.
    await slack.settle()
    await slack.command("UADA", "access grant <#C2|ops> runbooks")
    await slack.settle()
    await slack.command("UADA", "access grant <!subteam^S1|@finance> role:hr")
    await slack.settle()
    assert {(g.principal, g.target) for g in grants(slack)} == {
        ("user:eve@canary.test", "finance-notes"),
        ("channel:ops", "runbooks"),
        ("group:finance", "role:hr"),
    }
    assert "Granted finance-notes to eve@canary.test until" in replies(slack)[0]
    await slack.command("UADA", "access who-can finance-notes")
    await slack.settle()
    await slack.command("UADA", "access revoke <@UEVE> finance-notes because done")
    await slack.settle()
    await slack.command("UADA", "access audit 5")
    await slack.settle()
    texts = replies(slack)
    assert "eve@canary.test (grant" in texts[3]
    assert "Revoked finance-notes from eve@canary.test" in texts[4]
    assert "revoke" in texts[5]
    actions = [(a.actor, a.action, a.reason) for a in audit(slack)]
    assert actions == [
        ("ada@canary.test", "grant", "month-end close"),
        ("ada@canary.test", "grant", None),
        ("ada@canary.test", "grant", None),
        ("ada@canary.test", "revoke", "done"),
    ]


async def test_a_grant_takes_effect_on_the_next_question(slack) -> None:
    slack.api.add_user("UADA", "ada@canary.test")
    q = "Who approves expenses above 1,000 EUR, directors or the CFO?"
    from tests.slack_helpers import dm

    await slack.event(dm("UEVE", q, "1.1"))
    await slack.settle()
    assert "CANARY-FIN-5D1" not in slack.api.everything_posted()
    await slack.command("UADA", "access grant <@UEVE> finance-notes")
    await slack.settle()
    await slack.event(dm("UEVE", q, "1.2"))
    await slack.settle()
    assert "CANARY-FIN-5D1" in slack.api.everything_posted()


async def test_non_admins_are_refused_and_the_refusal_is_audited(slack) -> None:
    await slack.command("UEVE", "access grant <@UEVE> finance-notes because I want it")
    await slack.command("UEVE", "access who-can finance-notes")
    await slack.settle()
    texts = replies(slack)
    assert all("Only admins" in t for t in texts)
    assert grants(slack) == []
    refusals = audit(slack)
    assert [(a.actor, a.action) for a in refusals] == [
        ("eve@canary.test", "refused"),
        ("eve@canary.test", "refused"),
    ]


async def test_bad_access_input_gets_a_clear_ephemeral_reply(slack) -> None:
    slack.api.add_user("UADA", "ada@canary.test")
    for text, expected in [
        ("access grant <@UEVE>", "Usage"),
        ("access grant <@UEVE> nope", "no source 'nope'"),
        ("access grant <@UNKNOWN> handbook", "couldn't"),
        ("access grant <@UEVE> runbooks for ever", "not a duration"),
        ("access grant <@UEVE> runbooks because " + "x" * 3000, "under 500"),
        ("access frobnicate", "don't know"),
        ("access audit many", "Usage"),
    ]:
        await slack.command("UADA", text)
        await slack.settle()
        assert expected in replies(slack)[-1], (text, replies(slack)[-1])
    assert grants(slack) == []
    assert [a for a in audit(slack) if a.action != "refused"] == []


async def test_request_goes_to_the_owner_who_approves_with_a_button(slack, workspace) -> None:
    from bot.config import load_config
    from tests.slack_helpers import dm
    from tests.test_access_requests import make_requestable

    make_requestable(workspace)  # the config is read at start: give the running app the new one
    config = load_config(workspace.config)
    slack.deps.runtime.config = config
    slack.deps.runtime.policy.config = config
    slack.api.add_user("UFIN", "fin@canary.test")
    await slack.command("UEVE", "access request finance-notes because quarter close")
    await slack.settle()
    assert "sent to fin@canary.test" in replies(slack)[-1]
    assert "fin@canary.test (its owner) or an admin (ada@canary.test) decides" in replies(slack)[-1]
    (ask,) = [m for m in slack.api.in_channel("DFIN") if m.blocks]
    buttons = ask.blocks[1]["elements"]
    assert [b["action_id"] for b in buttons] == [
        "concierge_access_approve",
        "concierge_access_deny",
    ]

    def click(user: str) -> dict:  # type: ignore[type-arg]
        return {
            "type": "block_actions",
            "user": {"id": user},
            "team": {"id": "T1"},
            "container": {"type": "message", "channel_id": "DFIN", "message_ts": ask.ts},
            "actions": [{**buttons[0], "type": "button"}],
        }

    await slack.interaction(click("UEVE"))  # the requester cannot approve their own request
    await slack.settle()
    assert "Only fin@canary.test (its owner) or an admin (ada@canary.test)" in replies(slack)[-1]
    await slack.interaction(click("UFIN"))
    await slack.settle()
    assert "approved by fin@canary.test" in slack.api.messages[ask.ts].text
    assert any("was approved" in m.text for m in slack.api.in_channel("DEVE"))
    await slack.event(
        dm("UEVE", "Who approves expenses above 1,000 EUR, directors or the CFO?", "9.1")
    )
    await slack.settle()
    assert "CANARY-FIN-5D1" in slack.api.everything_posted()
    assert [a.action for a in audit(slack)] == ["request", "refused", "grant", "approve"]


async def test_report_for_owners_only_by_dm_with_chart_and_csv(slack) -> None:
    from tests.slack_helpers import dm

    slack.api.add_user("UOLU", "olu@canary.test")
    await slack.event(dm("UEVE", "Where do I submit expenses?", "3.1"))
    await slack.settle()
    await slack.command("UEVE", "report 7d")
    await slack.settle()
    assert "Only the bot's owners" in replies(slack)[-1]
    assert slack.api.uploads == {}
    await slack.command("UOLU", "report 30d")
    await slack.settle()
    assert "direct messages" in replies(slack)[-1]
    (summary,) = [m for m in slack.api.in_channel("DOLU") if m.blocks]
    text = json.dumps(summary.blocks)
    assert "last 30 days" in text and "*Questions:* 1 from 1 person\\n" in text
    files = {f["filename"]: f for f in slack.api.uploads.values()}
    assert (
        files["chart.png"]["data"].startswith(b"\x89PNG")
        and files["chart.png"]["channel"] == "DOLU"
    )
    assert files["report.csv"]["data"].decode().startswith("exchange_id,")
    await slack.command("UOLU", "report forever")
    await slack.settle()
    assert "Usage" in replies(slack)[-1]


async def test_the_slack_report_lists_content_gaps_the_owner_may_read(slack, db_url) -> None:
    from tests.test_report import seed_gaps

    seed_gaps(db_url)
    slack.api.add_user("UOLU", "olu@canary.test")
    await slack.command("UOLU", "report 7d")
    await slack.settle()
    (summary,) = [m for m in slack.api.in_channel("DOLU") if m.blocks]
    text = json.dumps(summary.blocks, ensure_ascii=False)
    assert "*Questions Concierge could not answer*" in text
    assert "6 questions went unanswered or were voted down (5 with no answer), in 2 topics" in text
    assert "*vpn password reset* — 3 questions from 3 people" in text
    assert "*office parking* — 2 questions from 2 people (1 no answer, 1 voted down)" in text
    assert "“How do I reset my VPN password?”" in text
    assert "VPN password reset &lt;b&gt;fails&lt;/b&gt;" in text  # escaped for Slack
    assert "*Votes:* 1 👍, 1 👎" in text
    # The owner may not read HR: the HR question is counted, its words never sent.
    assert "Salary" not in text and "1 more question is counted but not shown" in text
    assert "chat-1" not in text


async def test_a_long_gap_list_fits_slacks_limits(slack, db_url) -> None:
    from tests.test_report import seed_many_topics

    seed_many_topics(db_url)
    slack.api.add_user("UOLU", "olu@canary.test")
    await slack.command("UOLU", "report 7d")
    await slack.settle()
    (summary,) = [m for m in slack.api.in_channel("DOLU") if m.blocks]
    assert len(summary.blocks) <= 50
    sections = [b["text"]["text"] for b in summary.blocks if b["type"] == "section"]
    assert all(len(t) <= 3000 for t in sections)
    assert sum("_Nearest documents:_" in t for t in sections) == 5
    assert "25 more topics in `app.py report`" in json.dumps(summary.blocks)


async def test_the_weekly_report_job_dms_owners_with_links_to_voted_down_threads(slack) -> None:
    from sqlalchemy import select

    from bot.jobs.scheduler import JobHost, Scheduler
    from bot.slack.delivery import SlackDelivery
    from bot.store import repo
    from bot.store.models import Exchange, JobRun, utcnow
    from tests.slack_helpers import dm

    slack.api.add_user("UOLU", "olu@canary.test")
    await slack.event(dm("UEVE", "Where do I submit expenses?", "5.1"))
    await slack.settle()
    with slack.deps.runtime.store.session() as s:
        (exchange,) = s.scalars(select(Exchange)).all()
        repo.set_vote(s, exchange_id=exchange.id, voter="eve@canary.test", vote=-1, reason="stale")
    runtime = slack.deps.runtime
    scheduler = Scheduler(JobHost(runtime.store, runtime, delivery=SlackDelivery(slack.deps)), {})
    assert await scheduler.run("weekly_report", slot=utcnow())
    (summary,) = [m for m in slack.api.in_channel("DOLU") if m.blocks]
    text = json.dumps(summary.blocks)
    assert "last 7 days" in text and "stale" in text
    assert "https://slack.com/archives/DEVE/p51|thread" in text
    assert {f["filename"] for f in slack.api.uploads.values()} == {"chart.png", "report.csv"}
    with runtime.store.session() as s:
        (run,) = s.scalars(select(JobRun)).all()
    assert run.status == "ok" and run.detail == "sent to 1 of 1 owner(s)"


@pytest.fixture
def slack_admins(workspace, request) -> bool:  # type: ignore[no-untyped-def]
    if request.param:
        workspace.config.write_text(workspace.config.read_text() + "slack_admins: true\n")
    return bool(request.param)


@pytest.mark.parametrize("slack_admins", [False, True], indirect=True)
async def test_slack_workspace_admins_manage_access_only_when_configured(
    slack_admins: bool, slack
) -> None:
    slack.api.add_user("UBOSS", "boss@canary.test", is_admin=True)
    slack.api.add_user("UGUESTADMIN", "ga@partner.test", is_admin=True, is_restricted=True)
    await slack.command("UBOSS", "access grant <@UEVE> finance-notes")
    await slack.command("UGUESTADMIN", "access grant <@UEVE> runbooks")
    await slack.settle()
    targets = {g.target for g in grants(slack)}
    assert targets == ({"finance-notes"} if slack_admins else set())  # never a guest's grant
    refused = [a for a in audit(slack) if a.action == "refused"]
    assert len(refused) == (1 if slack_admins else 2)
    # A refusal names everyone who may decide: with slack_admins, Slack's admins too.
    await slack.command("UEVE", "access grant <@UEVE> finance-notes")
    await slack.settle()
    named = "Admins: ada@canary.test and the Slack workspace's admins and owners."
    assert (named in replies(slack)[-1]) == slack_admins
    assert "Admins: ada@canary.test" in replies(slack)[-1]


@pytest.fixture
def requestable(workspace) -> None:  # type: ignore[no-untyped-def]
    """finance-notes is requestable (before the app starts)."""
    from tests.test_access_requests import make_requestable

    make_requestable(workspace)


def posted_in(slack: SlackDriver, channel: str) -> str:
    return "\n".join(m.full_text() for m in slack.api.in_channel(channel))


async def test_an_offer_in_slack_is_the_slash_command_never_for_guests_or_channels(
    requestable: None, slack
) -> None:
    from tests.slack_helpers import dm, mention

    q = "Where are the finance notes on approvals?"
    await slack.event(dm("UEVE", q, "7.1"))
    await slack.settle()
    private = posted_in(slack, "DEVE")
    assert "`/concierge access request finance-notes because …`" in private
    assert "fin@canary.test (its owner) or an admin (ada@canary.test) decides" in private
    assert "app.py" not in private
    await slack.event(mention("UEVE", q, "7.2"))
    await slack.settle()
    public = posted_in(slack, "C1")
    assert public and "access request" not in public
    await slack.event(dm("UGUS", q, "7.3"))
    await slack.settle()
    guest = posted_in(slack, "DGUS")
    assert guest and "access request" not in guest


async def test_a_slack_grant_that_draws_warnings_is_confirmed_by_an_admin(slack) -> None:
    from tests.slack_helpers import button_click

    slack.api.add_user("UADA", "ada@canary.test")
    slack.api.add_user("UNEW", "new@canary.test")  # in Slack, not in the config's people

    def last() -> dict:  # type: ignore[type-arg]
        return slack.api.called("chat.postEphemeral")[-1]

    await slack.command("UADA", "access grant nobody@canary.test runbooks")
    await slack.settle()
    assert "nobody@canary.test is not in this Slack workspace" in last()["text"]
    await slack.command("UADA", "access grant new@canary.test runbooks")
    await slack.settle()
    assert "Granted runbooks to new@canary.test" in last()["text"]
    await slack.command("UADA", "access grant <#C2|ops> finance-notes because month-end")
    await slack.settle()
    warned = last()
    assert "finance-notes is confidential" in warned["text"]
    assert "--yes" in warned["text"]
    (button,) = warned["blocks"][-1]["elements"]
    assert button["action_id"] == "concierge_access_grant_confirm"
    assert button["value"] == "grant <#C2|ops> finance-notes because month-end --yes"
    assert {g.target for g in grants(slack)} == {"runbooks"}
    # The click runs the command again as the clicker: a non-admin is refused.
    click = button_click("UEVE", button["action_id"], button["value"], "C1", "8.1")
    await slack.interaction(click)
    await slack.settle()
    assert "Only admins" in last()["text"]
    assert {g.target for g in grants(slack)} == {"runbooks"}
    await slack.interaction(button_click("UADA", button["action_id"], button["value"], "C1", "8.1"))
    await slack.settle()
    assert "Granted finance-notes to channel:ops" in last()["text"]
    (row,) = [a for a in audit(slack) if a.target == "channel:ops"]
    assert row.actor == "ada@canary.test" and row.reason == "month-end"
    assert "confidential" in row.details["confirmed_warnings"][0]
    # Typed confirmation works too.
    await slack.command("UADA", "access grant <#C2|ops> role:hr --yes")
    await slack.settle()
    assert "Granted role:hr to channel:ops" in last()["text"]


async def test_slack_who_can_lists_people_and_narrowed_documents(slack) -> None:
    slack.api.add_user("UADA", "ada@canary.test")
    await slack.command("UADA", "access who-can runbooks")
    await slack.settle()
    text = replies(slack)[-1]
    assert "eve@canary.test (group:engineering)" in text
    assert "prod-access.md (Production access): group:sre; people: sam@canary.test" in text
