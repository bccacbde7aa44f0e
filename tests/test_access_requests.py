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


def test_requestable_sources_are_offered_without_being_searched(cli, workspace) -> None:
    import json

    make_requestable(workspace)
    named = json.loads(
        cli(
            "ask", "Where are the finance notes on approvals?", "--as", "eve@canary.test", "--json"
        ).out
    )
    assert named["requestable"] == ["finance-notes"]
    assert "request finance-notes because" in named["answer"]
    assert "finance-notes" not in named["sources_searched"]
    assert "CANARY-FIN-5D1" not in named["answer"]
    unanswered = json.loads(
        cli(
            "ask", "What is the quarterly zebra migration?", "--as", "eve@canary.test", "--json"
        ).out
    )
    assert unanswered["outcome"] == "no_answer" and unanswered["requestable"] == ["finance-notes"]
    answered = json.loads(
        cli("ask", "Where do I submit expenses?", "--as", "eve@canary.test", "--json").out
    )
    assert answered["requestable"] == []
    # Not requestable: never offered, indistinguishable from a source that does not exist.
    hr = json.loads(
        cli(
            "ask",
            "What do the hr-policies say about salary bands?",
            "--as",
            "eve@canary.test",
            "--json",
        ).out
    )
    assert "hr-policies" not in hr["answer"]
    assert "hr-policies" not in hr["requestable"]
    # Those who can read it are not offered it.
    fin = json.loads(
        cli(
            "ask", "Where are the finance notes on approvals?", "--as", "fin@canary.test", "--json"
        ).out
    )
    assert fin["requestable"] == []
