"""An offer of a requestable source is no side channel (invariant 2: sources the asker may
not read are never searched, so no answer can hint at their content).

An offer used to be added to almost every unanswered reply; decided from the source's
documents it would tell whoever asks that the withheld source speaks of their question. It is
decided from the config only (name, title, description, topics), and never reaches a guest or
a channel. Driven through ``app.py ask``.
"""

from __future__ import annotations

import json
from typing import Any

from tests.test_access_requests import make_requestable

SECRET_TOPIC = "Which teams are affected by the reorganisation of the Lisbon office?"


def asked(cli: Any, question: str, who: str, *extra: str) -> dict[str, Any]:
    result = cli("ask", question, "--as", who, "--json", *extra)
    assert result.code == 0, result.err
    return json.loads(result.out)  # type: ignore[no-any-return]


def test_a_withheld_documents_subject_never_makes_an_offer_appear(cli, workspace) -> None:
    make_requestable(workspace)
    workspace.write(
        "finance",
        "reorg.md",
        "---\ntitle: Lisbon office reorganisation\n---\n\nThe reorganisation of the Lisbon "
        "office affects the platform and payments teams (CANARY-FIN-REORG).\n",
    )
    for who in ("eve@canary.test", "maya@canary.test", "sam@canary.test"):
        result = asked(cli, SECRET_TOPIC, who)
        assert result["requestable"] == [], who
        assert "finance" not in result["answer"].lower(), who
        assert "CANARY-FIN-REORG" not in json.dumps(result), who
        assert "finance-notes" not in result["sources_searched"], who
    # Whoever may read it is answered from it: the document is indexed, the offer just
    # never depends on it.
    assert "CANARY-FIN-REORG" in asked(cli, SECRET_TOPIC, "fin@canary.test")["answer"]


def test_offers_never_reach_guests_or_a_channel(cli, workspace) -> None:
    make_requestable(workspace)
    named = "What do the finance notes say about approvals?"
    assert asked(cli, named, "eve@canary.test")["requestable"] == ["finance-notes"]
    for result in (
        asked(cli, named, "gus@partner.test"),
        asked(cli, named, "eve@canary.test", "--channel", "general"),
        asked(cli, named, "gus@partner.test", "--channel", "general"),
    ):
        assert result["requestable"] == []
        assert "finance-notes" not in result["answer"]
