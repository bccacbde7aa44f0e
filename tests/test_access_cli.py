"""``app.py access``: grant, revoke, list, who-can and audit, each change audited once."""

from __future__ import annotations

import json
from datetime import timedelta

from sqlalchemy import select, update

from bot.store.db import Store
from bot.store.models import AuditEvent, Grant, utcnow


def audit_rows(db_url: str) -> list[AuditEvent]:
    store = Store.open(db_url)
    try:
        with store.session() as s:
            return list(s.scalars(select(AuditEvent).order_by(AuditEvent.id)))
    finally:
        store.close()


def test_grant_list_who_can_revoke_and_audit(cli, db_url: str) -> None:
    r = cli(
        "access",
        "grant",
        "Eve@Canary.test",
        "finance-notes",
        "--for",
        "30d",
        "--because",
        "quarter close",
        "--actor",
        "ada@canary.test",
    )
    assert r.code == 0, r.err
    assert "Granted finance-notes to eve@canary.test until" in r.out
    assert cli("access", "grant", "#ops", "runbooks").code == 0
    listed = cli("access", "list").out
    assert "user:eve@canary.test -> finance-notes" in listed and "channel:ops -> runbooks" in listed
    assert "channel:ops" not in cli("access", "list", "eve@canary.test").out
    assert "eve@canary.test" in cli("access", "list", "finance-notes").out
    who = cli("access", "who-can", "finance-notes").out
    assert "group:finance (config)" in who and "eve@canary.test (grant" in who
    hr = cli("access", "who-can", "hr-policies").out
    assert "role:hr (config)" in hr and "member: group:people-ops" in hr
    assert (
        cli("access", "revoke", "eve@canary.test", "finance-notes", "--because", "done").code == 0
    )
    assert "eve" not in cli("access", "list").out
    events = audit_rows(db_url)
    assert [(e.action, e.actor, e.target, e.subject, e.reason) for e in events] == [
        ("grant", "ada@canary.test", "user:eve@canary.test", "finance-notes", "quarter close"),
        ("grant", "cli", "channel:ops", "runbooks", None),
        ("revoke", "cli", "user:eve@canary.test", "finance-notes", "done"),
    ]
    assert all(e.at is not None for e in events)
    shown = cli("access", "audit", "2").out.strip().splitlines()
    assert len(shown) == 2 and "revoke" in shown[-1]


def test_an_expired_grant_stops_working_on_time(cli, db_url: str) -> None:
    q = "Who approves expenses above 1,000 EUR, directors or the CFO?"
    cli("access", "grant", "maya@canary.test", "finance-notes", "--for", "1h")
    assert "CANARY-FIN-5D1" in cli("ask", q, "--as", "maya@canary.test").out
    store = Store.open(db_url)
    try:
        with store.session() as s:
            s.execute(update(Grant).values(expires_at=utcnow() - timedelta(seconds=1)))
    finally:
        store.close()
    assert "CANARY-FIN-5D1" not in cli("ask", q, "--as", "maya@canary.test").out
    assert "No active grants" in cli("access", "list").out


def test_bad_access_input_changes_nothing(cli, db_url: str) -> None:
    cases = [
        (["grant", "eve@canary.test", "nope"], "no source 'nope'"),
        (["grant", "eve@canary.test", "role:ghost"], "no role 'ghost'"),
        (["grant", "someone", "handbook"], "WHO is an email"),
        (["grant", "eve@canary.test", "runbooks", "--for", "forever"], "not a duration"),
        (["grant", "eve@canary.test", "runbooks", "--for", "999d"], "366 days"),
        (["grant", "eve@canary.test", "runbooks", "--because", "x" * 5000], "under 500"),
        (["revoke", "eve@canary.test", "runbooks"], "config file's readers"),
        (["revoke", "maya@canary.test", "runbooks"], "no active grant"),
        (["who-can", "role:hr"], "who-can takes a source"),
    ]
    for argv, message in cases:
        r = cli("access", *argv)
        assert r.code == 2, argv
        assert message in r.err, (argv, r.err)
    assert audit_rows(db_url) == []
    assert "No active grants" in cli("access", "list").out


def test_regranting_replaces_the_old_grant(cli, db_url: str) -> None:
    cli("access", "grant", "eve@canary.test", "finance-notes", "--for", "1d")
    cli("access", "grant", "eve@canary.test", "finance-notes")
    listed = [line for line in cli("access", "list").out.splitlines() if line.startswith("#")]
    assert len(listed) == 1 and "until" not in listed[0]
    assert len(audit_rows(db_url)) == 2


def test_a_question_denied_for_want_of_access_is_audited(cli, workspace, db_url: str) -> None:
    text = workspace.config.read_text().replace(
        "readers: everyone, data_class: public", "readers: [group:engineering], data_class: public"
    )
    workspace.config.write_text(text)
    result = cli("ask", "Where do I submit expenses?", "--as", "maya@canary.test", "--json")
    assert result.code == 0 and json.loads(result.out)["outcome"] == "refused"
    assert "Ask an admin for access (ada@canary.test)." in json.loads(result.out)["answer"]
    audit = cli("access", "audit", "5").out
    assert "denied" in audit and "maya@canary.test" in audit
    cli("ask", "Where do I submit expenses?", "--as", "eve@canary.test")  # eve may read: no row
    assert cli("access", "audit", "5").out.count("denied") == 1


def test_a_grant_that_draws_warnings_needs_yes_and_changes_nothing_without(
    cli, db_url: str
) -> None:
    cases = [
        (["evee@canary.test", "finance-notes"], "evee@canary.test is not in the config's people"),
        (["channel:general", "finance-notes"], "finance-notes is confidential"),
        (["#general", "role:hr"], "hr-policies is confidential"),  # what the role reads
        (["group:financ", "runbooks"], "nobody is in group:financ"),
    ]
    for argv, warning in cases:
        r = cli("access", "grant", *argv)
        assert r.code == 2, argv
        assert f"warning: {warning}" in r.err, (argv, r.err)
        assert "nothing was granted: repeat with --yes" in r.err
    assert "No active grants" in cli("access", "list").out
    assert audit_rows(db_url) == []
    # Nothing to warn about: no --yes needed (an internal source for a channel, a known person).
    assert cli("access", "grant", "#ops", "runbooks").code == 0
    assert cli("access", "grant", "maya@canary.test", "finance-notes").code == 0
    confirmed = cli("access", "grant", "channel:general", "finance-notes", "--yes")
    assert confirmed.code == 0 and "Granted finance-notes to channel:general" in confirmed.out
    last = audit_rows(db_url)[-1]
    assert last.target == "channel:general"
    assert "confidential" in last.details["confirmed_warnings"][0]


def test_who_can_lists_people_and_the_documents_front_matter_narrows(cli, workspace) -> None:
    workspace.write("runbooks", "broken.md", "---\nreaders: []\n---\n\nNobody can read this.\n")
    cli("access", "grant", "maya@canary.test", "runbooks")
    lines = cli("access", "who-can", "runbooks").out.splitlines()
    assert "group:engineering (config)" in lines
    people = lines[lines.index(next(x for x in lines if x.startswith("people who may"))) :]
    assert "  eve@canary.test (group:engineering)" in people
    assert "  sam@canary.test (group:engineering)" in people
    assert "  maya@canary.test (a grant)" in people
    # A guest does not inherit a group's access, so gus (engineering, guest) is not listed.
    assert not any("gus@partner.test" in x for x in people)
    assert not any(x.startswith("  fin@") or x.startswith("  hana@") for x in people)
    assert "documents narrowed by front matter:" in lines
    assert "  prod-access.md (Production access): group:sre; people: sam@canary.test" in lines
    closed = next(x for x in lines if x.startswith("  broken.md"))
    assert "closed, nobody may read it: readers is empty" in closed
    # Slack members the config's people do not list are named by the user group bound.
    workspace.config.write_text(workspace.config.read_text() + "slack_groups: {finance: [S1]}\n")
    finance = cli("access", "who-can", "finance-notes").out.splitlines()
    assert "  fin@canary.test (group:finance)" in finance
    assert "  and in Slack, the members of S1 (bound to group:finance)" in finance
    handbook = cli("access", "who-can", "handbook").out.splitlines()
    assert handbook == [
        "everyone (config), guests included",
        "documents: none narrowed by front matter",
    ]


async def test_with_a_bot_token_a_grant_checks_the_email_in_slack(cli, monkeypatch) -> None:
    """A Slack-only workspace lists no people in its config: the command line asks Slack
    (users.lookupByEmail, through the local stand-in) whether the address is someone's."""
    import asyncio

    from tests.standins import slack_api

    api = slack_api.SlackStandIn()
    api.add_user("UNEW", "new@canary.test")  # in Slack, not in the config's people
    runner = await slack_api.start(api)
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-test-token")
    monkeypatch.setenv("SLACK_API_URL", api.url)
    try:
        # The command line runs its own event loop: in a thread, beside the stand-in's.
        known = await asyncio.to_thread(cli, "access", "grant", "new@canary.test", "runbooks")
        unknown = await asyncio.to_thread(cli, "access", "grant", "nobody@canary.test", "runbooks")
    finally:
        await runner.cleanup()
    assert known.code == 0, known.err
    assert unknown.code == 2
    assert "nobody@canary.test is not in the config's people" in unknown.err
    assert "or this Slack workspace" in unknown.err
    looked_up = [p["email"] for p in api.called("users.lookupByEmail")]
    assert looked_up == ["new@canary.test", "nobody@canary.test"]
