"""``app.py review``: held drafts decided from the command line with Slack's rules and audit."""

from __future__ import annotations

import json
from typing import Any

import pytest

HR_QUESTION = "What is the L3 salary band in Lisbon?"


@pytest.fixture
def eve_reads_hr(workspace: Any) -> None:
    text = workspace.config.read_text().replace(
        'hr: {members: ["group:people-ops"]}',
        'hr: {members: ["group:people-ops", eve@canary.test]}',
    )
    workspace.config.write_text(text)


@pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
def test_a_draft_is_listed_shown_refused_to_others_and_approved_by_its_reviewer(
    eve_reads_hr: None, cli: Any
) -> None:
    held = json.loads(cli("ask", HR_QUESTION, "--as", "eve@canary.test", "--json").out)
    assert held["outcome"] == "pending_review"
    rid = str(held["review_id"])
    listed = cli("review", "list")
    assert listed.code == 0 and f"#{rid} draft from eve@canary.test" in listed.out
    shown = cli("review", "show", rid)
    assert shown.code == 0 and "CANARY-HR-BANDS" in shown.out  # the operator is trusted
    stranger = cli("review", "approve", rid, "--actor", "maya@canary.test")
    assert stranger.code == 2 and "Only the reviewers" in stranger.err
    # Everyone who may decide is named: the source's reviewer and the bot's owners.
    assert "(hana@canary.test; or a bot owner: olu@canary.test)" in stranger.err
    owner = cli("review", "approve", rid, "--actor", "olu@canary.test")  # bot owner, no hr
    assert owner.code == 2 and "may not read hr-policies" in owner.err
    done = cli("review", "edit", rid, "--actor", "hana@canary.test", "--text", "Ask HR.")
    assert done.code == 0 and f"review #{rid}: edited by hana@canary.test" in done.out
    record = json.loads(cli("exchange", "show", held["exchange_id"], "--json").out)
    assert record["outcome"] == "answered" and record["answer"] == "Ask HR."
    assert record["reviews"][0]["status"] == "edited"
    again = cli("review", "reject", rid, "--actor", "hana@canary.test")
    assert again.code == 2 and "already edited" in again.err
    audit = cli("access", "audit", "50").out
    assert "review.edit" in audit and audit.count("refused") >= 2
    assert cli("review", "list").out.strip() == "no review is waiting"


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_an_unknown_review_is_a_clear_usage_error(cli: Any) -> None:
    result = cli("review", "show", "999")
    assert result.code == 2 and "there is no review #999" in result.err
