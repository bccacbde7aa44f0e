"""Invariants 1 and 2: who may read what, proven with a canary in every restricted document.

For every person and every probe question, the canary appears in the answer if and only if
the person may read the document, and never in a prompt sent to a model, a log line or the
record of someone who may not.
"""

from __future__ import annotations

import json
import logging

import pytest

from tests.conftest import CANARIES, PROBES

# person -> sources readable (from the config in conftest), plus the sre-only document
MAY_READ = {
    "eve@canary.test": {"handbook", "runbooks"},
    "sam@canary.test": {"handbook", "runbooks", "sre"},
    "hana@canary.test": {"handbook", "hr-policies"},
    "fin@canary.test": {"handbook", "finance-notes"},
    "maya@canary.test": {"handbook"},
    "gus@partner.test": {"handbook"},  # a guest: groups do not count
    "ada@canary.test": {"handbook"},  # admins get no read access by being admins
    "olu@canary.test": {"handbook"},  # nor owners
}


def ask_json(cli, question: str, person: str, *extra: str) -> dict:  # type: ignore[no-untyped-def]
    r = cli("ask", question, "--as", person, "--json", *extra)
    assert r.code == 0, r.err
    return json.loads(r.out)


def allowed(person: str, canary: str) -> bool:
    if canary == "CANARY-SRE-91B":
        return "sre" in MAY_READ[person]
    return CANARIES[canary] in MAY_READ[person]


@pytest.mark.parametrize("person", sorted(MAY_READ))
def test_canaries_follow_permissions(cli, caplog, person: str) -> None:
    caplog.set_level(logging.DEBUG)
    for question, (_source, canary) in PROBES.items():
        r = cli("ask", question, "--as", person, "--json")
        assert r.code == 0, r.err
        record = json.loads(r.out)
        shown = canary in record["answer"]
        assert shown == allowed(person, canary), (person, question, record["answer"])
        if not allowed(person, canary):
            assert canary not in r.out + r.err
            assert canary not in caplog.text
            assert CANARIES[canary] not in [s["source"] for s in record["sources"]] or (
                canary == "CANARY-SRE-91B"
            )
        searched = set(record["sources_searched"])
        assert searched == {s for s in MAY_READ[person] if s != "sre"}


def test_same_question_different_people_different_sources(cli) -> None:
    q = "How does parental leave top-up pay work?"
    hana = ask_json(cli, q, "hana@canary.test")
    maya = ask_json(cli, q, "maya@canary.test")
    assert {s["source"] for s in hana["sources"]} >= {"hr-policies"}
    assert {s["source"] for s in maya["sources"]} == {"handbook"}
    assert "CANARY-HR-22C" in hana["answer"]
    assert "CANARY-HR-22C" not in maya["answer"]


def test_audience_rule_in_a_channel(cli, caplog) -> None:
    """In a public channel only sources every reader may see are used; the reply says a
    fuller answer is available privately, and the private sources are recorded, not shown."""
    caplog.set_level(logging.DEBUG)
    q = "How does parental leave top-up pay work with payroll?"
    r = cli("ask", q, "--as", "hana@canary.test", "--channel", "#general", "--json")
    assert r.code == 0, r.err
    rec = json.loads(r.out)
    assert "CANARY-HR-22C" not in rec["answer"]
    assert {s["source"] for s in rec["sources"]} <= {"handbook"}
    assert rec["private_answer_available"] is True
    assert rec["sources_withheld"] == ["hr-policies"]
    assert "fuller answer is available privately" in rec["answer"]
    assert rec["channel"] == "general"
    # Privately, the same person gets the fuller answer.
    private = ask_json(cli, q, "hana@canary.test")
    assert "CANARY-HR-22C" in private["answer"]
    assert private["private_answer_available"] is False


def test_front_matter_narrows_within_a_shared_source_in_a_channel(cli) -> None:
    """A channel granted the runbooks still never sees the sre-only document."""
    assert cli("access", "grant", "channel:ops", "runbooks").code == 0
    q = "How do I get break-glass production database access?"
    rec = json.loads(cli("ask", q, "--as", "sam@canary.test", "--channel", "ops", "--json").out)
    assert "CANARY-SRE-91B" not in rec["answer"]
    assert rec["private_answer_available"] is True
    q2 = "What is the deploy freeze codeword for deploying a service?"
    rec2 = json.loads(cli("ask", q2, "--as", "eve@canary.test", "--channel", "ops", "--json").out)
    assert "CANARY-RUNBOOK-7F3" in rec2["answer"]


def test_grants_widen_and_revocation_takes_effect_on_the_next_question(cli) -> None:
    q = "Who approves expenses above 1,000 EUR, directors or the CFO?"
    assert "CANARY-FIN-5D1" not in ask_json(cli, q, "eve@canary.test")["answer"]
    assert (
        cli("access", "grant", "eve@canary.test", "finance-notes", "--because", "audit").code == 0
    )
    assert "CANARY-FIN-5D1" in ask_json(cli, q, "eve@canary.test")["answer"]
    assert cli("access", "revoke", "eve@canary.test", "finance-notes").code == 0
    assert "CANARY-FIN-5D1" not in ask_json(cli, q, "eve@canary.test")["answer"]


def test_role_grant_and_guest_rules(cli) -> None:
    q = "What is the L3 salary band in Lisbon?"
    assert cli("access", "grant", "maya@canary.test", "role:hr", "--for", "1d").code == 0
    held = ask_json(cli, q, "maya@canary.test")
    # hr-policies is reviewed: maya now reads it, so her answer is drafted and held for hana.
    assert held["outcome"] == "pending_review" and held["review_sources"] == ["hr-policies"]
    assert "CANARY-HR-BANDS" not in held["answer"]
    # A guest in the engineering group still reads public sources only...
    q2 = "What is the deploy freeze codeword for deploying a service?"
    assert "CANARY-RUNBOOK-7F3" not in ask_json(cli, q2, "gus@partner.test")["answer"]
    # ...until granted by name; a grant to their group does not count for a guest.
    cli("access", "grant", "group:engineering", "runbooks")
    assert "CANARY-RUNBOOK-7F3" not in ask_json(cli, q2, "gus@partner.test")["answer"]
    cli("access", "grant", "gus@partner.test", "runbooks")
    assert "CANARY-RUNBOOK-7F3" in ask_json(cli, q2, "gus@partner.test")["answer"]


def test_front_matter_can_never_widen(cli, workspace) -> None:
    workspace.write(
        "finance",
        "open.md",
        "---\ntitle: Open notes\nreaders: everyone\n---\n"
        "The quarterly bonus pool code is CANARY-WIDEN-1.\n",
    )
    rec = json.loads(
        cli(
            "ask", "What is the quarterly bonus pool code?", "--as", "maya@canary.test", "--json"
        ).out
    )
    assert "CANARY-WIDEN-1" not in rec["answer"]
    assert "finance-notes" not in rec["sources_searched"]
