"""Access requests from the command line: requestable sources only, decided by the owner."""

from __future__ import annotations

from sqlalchemy import select

from bot.store.db import Store
from bot.store.models import AuditEvent


def make_requestable(workspace) -> None:  # type: ignore[no-untyped-def]
    text = workspace.config.read_text().replace(
        "    readers: [group:finance]\n",
        "    readers: [group:finance]\n    requestable: true\n    owner: fin@canary.test\n",
    )
    workspace.config.write_text(text)


def actions(db_url: str) -> list[tuple[str, str, str | None]]:
    store = Store.open(db_url)
    try:
        with store.session() as s:
            return [
                (a.actor, a.action, a.subject)
                for a in s.scalars(select(AuditEvent).order_by(AuditEvent.id))
            ]
    finally:
        store.close()


def test_request_approve_and_read(cli, workspace, db_url: str) -> None:
    make_requestable(workspace)
    q = "Who approves expenses above 1,000 EUR, directors or the CFO?"
    r = cli(
        "access",
        "request",
        "finance-notes",
        "--because",
        "quarter close",
        "--as",
        "eve@canary.test",
    )
    assert r.code == 0, r.err
    assert "Request #1 for finance-notes is waiting for fin@canary.test" in r.out
    again = cli(
        "access", "request", "finance-notes", "--because", "still", "--as", "eve@canary.test"
    )
    assert "Request #1" in again.out  # one pending request, not two
    assert "#1 eve@canary.test -> finance-notes" in cli("access", "requests").out
    refused = cli("access", "approve", "1", "--actor", "maya@canary.test")
    assert refused.code == 2 and "Only fin@canary.test" in refused.err
    assert "CANARY-FIN-5D1" not in cli("ask", q, "--as", "eve@canary.test").out
    ok = cli("access", "approve", "1", "--actor", "fin@canary.test")
    assert ok.code == 0 and "approved" in ok.out and "until" in ok.out
    assert "CANARY-FIN-5D1" in cli("ask", q, "--as", "eve@canary.test").out
    twice = cli("access", "deny", "1", "--actor", "fin@canary.test")
    assert twice.code == 2 and "already approved" in twice.err
    assert actions(db_url) == [
        ("eve@canary.test", "request", "finance-notes"),
        ("maya@canary.test", "refused", "finance-notes"),
        ("fin@canary.test", "grant", "finance-notes"),
        ("fin@canary.test", "approve", "finance-notes"),
    ]


def test_a_source_that_is_not_requestable_looks_like_none_at_all(
    cli, workspace, db_url: str
) -> None:
    hidden = cli(
        "access", "request", "hr-policies", "--because", "curious", "--as", "eve@canary.test"
    )
    missing = cli(
        "access", "request", "no-such-thing", "--because", "curious", "--as", "eve@canary.test"
    )
    assert hidden.code == missing.code == 2
    assert hidden.err.replace("hr-policies", "X") == missing.err.replace("no-such-thing", "X")
    assert actions(db_url) == []


def test_deny_is_audited_and_grants_nothing(cli, workspace, db_url: str) -> None:
    make_requestable(workspace)
    cli("access", "request", "finance-notes", "--because", "curious", "--as", "maya@canary.test")
    r = cli("access", "deny", "1", "--actor", "fin@canary.test", "--because", "not needed")
    assert r.code == 0 and "denied" in r.out
    assert "No active grants" in cli("access", "list").out
    assert actions(db_url)[-1] == ("fin@canary.test", "deny", "finance-notes")


def ask_json(cli, question: str, who: str, *extra: str) -> dict:  # type: ignore[no-untyped-def,type-arg]
    import json

    result = cli("ask", question, "--as", who, "--json", *extra)
    assert result.code == 0, result.err
    return json.loads(result.out)  # type: ignore[no-any-return]


def test_requestable_sources_are_offered_without_being_searched(cli, workspace) -> None:
    make_requestable(workspace)
    named = ask_json(cli, "Where are the finance notes on approvals?", "eve@canary.test")
    assert named["requestable"] == ["finance-notes"]
    # In the terminal the offer is the terminal's command (Slack's syntax typed into a chat
    # would be taken as a question), and it names everyone who may decide.
    assert (
        'app.py access request finance-notes --because "…" --as eve@canary.test' in named["answer"]
    )
    assert "/concierge" not in named["answer"]
    assert "fin@canary.test (its owner) or an admin (ada@canary.test) decides" in named["answer"]
    assert "finance-notes" not in named["sources_searched"]
    assert "CANARY-FIN-5D1" not in named["answer"]
    # An unanswered question about something else gets no offer: not a hint on every dead end.
    unanswered = ask_json(cli, "What is the quarterly zebra migration?", "eve@canary.test")
    assert unanswered["outcome"] == "no_answer" and unanswered["requestable"] == []
    assert "access request" not in unanswered["answer"]
    answered = ask_json(cli, "Where do I submit expenses?", "eve@canary.test")
    assert answered["requestable"] == []
    # Not requestable: never offered, indistinguishable from a source that does not exist.
    hr = ask_json(cli, "What do the hr-policies say about salary bands?", "eve@canary.test")
    assert "hr-policies" not in hr["answer"]
    assert "hr-policies" not in hr["requestable"]
    # Those who can read it are not offered it.
    fin = ask_json(cli, "Where are the finance notes on approvals?", "fin@canary.test")
    assert fin["requestable"] == []


def test_an_offer_follows_what_the_config_says_of_a_source_never_its_documents(
    cli, workspace
) -> None:
    """The finance document speaks of directors and a ledger; until the config says the
    source is about ledgers, a question on them offers nothing (a withheld source's
    documents are never searched, so they cannot make an offer appear)."""
    make_requestable(workspace)
    q = "Which ledger do directors record approvals in?"
    plain = ask_json(cli, q, "eve@canary.test")
    assert plain["outcome"] == "no_answer" and plain["requestable"] == []
    text = workspace.config.read_text().replace(
        "    requestable: true\n",
        "    requestable: true\n"
        "    description: Budgets, forecasts and the quarter-close ledgers\n",
    )
    workspace.config.write_text(text)
    described = ask_json(cli, q, "eve@canary.test")
    assert described["outcome"] == "no_answer" and described["requestable"] == ["finance-notes"]
    assert "CANARY-FIN-5D1" not in described["answer"]
    # A topic word alone offers only on a dead end; naming the source offers with any answer.
    answered = ask_json(cli, "Where do I submit expenses for a budget?", "eve@canary.test")
    assert answered["outcome"] == "answered" and answered["requestable"] == []


def test_no_offer_to_guests_or_into_a_shared_audience(cli, workspace) -> None:
    make_requestable(workspace)
    q = "Where are the finance notes on approvals?"
    assert ask_json(cli, q, "eve@canary.test")["requestable"] == ["finance-notes"]
    guest = ask_json(cli, q, "gus@partner.test")
    assert guest["requestable"] == [] and "access request" not in guest["answer"]
    channel = ask_json(cli, q, "eve@canary.test", "--channel", "general")
    assert channel["requestable"] == [] and "access request" not in channel["answer"]


def test_a_refusal_names_everyone_who_may_decide_and_an_admin_may(
    cli, workspace, db_url: str
) -> None:
    make_requestable(workspace)
    r = cli("access", "request", "finance-notes", "--because", "audit", "--as", "eve@canary.test")
    assert "waiting for fin@canary.test (its owner) or an admin (ada@canary.test)" in r.out
    refused = cli("access", "approve", "1", "--actor", "maya@canary.test")
    assert refused.code == 2
    assert (
        "Only fin@canary.test (its owner) or an admin (ada@canary.test) can decide request #1"
        in refused.err
    )
    ok = cli("access", "approve", "1", "--actor", "ada@canary.test")
    assert ok.code == 0 and "approved" in ok.out


def test_a_short_source_name_is_named_only_as_a_word(cli, workspace) -> None:
    make_requestable(workspace)
    workspace.config.write_text(
        workspace.config.read_text().replace("name: finance-notes", "name: fin")
    )
    inside = ask_json(cli, "What are the financial rules for travel?", "eve@canary.test")
    assert inside["requestable"] == []
    named = ask_json(cli, "What does fin say about travel?", "eve@canary.test")
    assert named["requestable"] == ["fin"]
