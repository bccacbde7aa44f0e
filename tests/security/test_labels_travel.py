"""Labels travel with text: history turns, verified answers and per-person rows are decided on
the labels of everything they carry (issue 10, items 1 and 7; DESIGN.md invariant 8).

Each test drives the public surface — signed Slack events into the served app, the
OpenAI-compatible stand-in's request log for what a hosted model received — and names the
leak it stops.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bot.core.admin import AccessAdmin
from tests.slack_helpers import button_click, dm, mention
from tests.standins import openai_api
from tests.standins.openai_api import OpenAIStandIn

HR_QUESTION = "How does parental leave top-up pay work with payroll?"
HR_CANARY = "CANARY-HR-22C"


@pytest.fixture
async def hosted(workspace: Any, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[OpenAIStandIn]:
    """A hosted model (the OpenAI-compatible stand-in) first in the chain; it accepts the
    default classes (public, internal), so it must never receive confidential text."""
    api = OpenAIStandIn(reply="Submit expenses in Pleo within thirty days. [1]")
    runner = await openai_api.start(api)
    text = workspace.config.read_text().replace(
        "limits:",
        openai_api.primary_config(api.url, "first_token_timeout_s: 2, hedge_after_s: 1")
        + "limits:",
    )
    workspace.config.write_text(text)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-stand-in")
    yield api
    await runner.cleanup()


def sent_to_model(api: OpenAIStandIn) -> str:
    return json.dumps([r["body"]["messages"] for r in api.requests])


async def test_confidential_turn_in_a_dm_thread_never_reaches_a_hosted_model(
    hosted: OpenAIStandIn, slack: Any
) -> None:
    # Hana (role hr) asks about a confidential source: the hosted model may not receive it,
    # so the offline model answers, from the HR document.
    await slack.event(dm("UHANA", HR_QUESTION, "500.1"))
    await slack.settle()
    assert HR_CANARY in slack.api.everything_posted()
    # Two follow-ups about a public source. The last one retrieves public passages only,
    # but the thread's history still holds the confidential answer: the prompt as a whole
    # is confidential, and a hosted model that may not receive it is not asked.
    await slack.event(dm("UHANA", "Where do I submit expenses?", "500.2", "500.1"))
    await slack.settle()
    await slack.event(dm("UHANA", "and within how many days?", "500.3", "500.1"))
    await slack.settle()
    assert len(slack.api.in_channel("DHANA")) >= 3
    assert HR_CANARY not in sent_to_model(hosted)


async def test_public_follow_up_still_uses_the_hosted_model_when_history_is_public(
    hosted: OpenAIStandIn, slack: Any
) -> None:
    """The rule is decided on labels, not by refusing hosted models after any history."""
    await slack.event(dm("UEVE", "Where do I submit expenses?", "510.1"))
    await slack.settle()
    await slack.event(dm("UEVE", "and within how many days?", "510.2", "510.1"))
    await slack.settle()
    assert len(hosted.requests) == 2
    assert "Pleo" in json.dumps(hosted.requests[1]["body"]["messages"])  # the earlier turn


async def test_turn_the_channel_may_no_longer_read_is_left_out_of_the_thread(
    hosted: OpenAIStandIn, slack: Any
) -> None:
    """A thread turn answered under a channel grant stops being context once the grant is
    revoked: the later prompt is built only from what the channel may still read."""
    runtime = slack.deps.runtime
    await admin_grant(runtime, "channel:general", "runbooks")
    hosted.reply = "The deploy freeze codeword is CANARY-RUNBOOK-7F3. [1]"
    q = "What is the deploy freeze codeword for deploying a service?"
    await slack.event(mention("UEVE", q, "520.1"))
    await slack.settle()
    assert "CANARY-RUNBOOK-7F3" in "\n".join(m.full_text() for m in slack.api.in_channel("C1"))
    await admin_revoke(runtime, "channel:general", "runbooks")
    seen = len(hosted.requests)
    hosted.reply = "Submit expenses in Pleo within thirty days. [1]"
    await slack.event(mention("UMAYA", "Where do I submit expenses?", "520.2", thread_ts="520.1"))
    await slack.settle()
    assert len(hosted.requests) > seen
    later = json.dumps([r["body"]["messages"] for r in hosted.requests[seen:]])
    assert "CANARY-RUNBOOK-7F3" not in later


async def admin_grant(runtime: Any, who: str, what: str) -> None:
    """What ``app.py access grant`` does (the shell operator is trusted)."""
    admin = AccessAdmin(runtime.store, runtime.config)
    await asyncio.to_thread(admin.grant, actor="cli", who=who, what=what, reason="test")


async def admin_revoke(runtime: Any, who: str, what: str) -> None:
    admin = AccessAdmin(runtime.store, runtime.config)
    await asyncio.to_thread(admin.revoke, actor="cli", who=who, what=what)


async def test_a_confidential_passage_never_reaches_a_hosted_model(
    hosted: OpenAIStandIn, slack: Any
) -> None:
    await slack.event(dm("UHANA", HR_QUESTION, "530.1"))
    await slack.settle()
    assert HR_CANARY in slack.api.everything_posted()
    assert hosted.requests == []  # skipped on data class, not merely answered elsewhere


@pytest.fixture
def one_passage(workspace: Any) -> None:
    text = workspace.config.read_text() + "retrieval: {top_k: 1}\n"
    workspace.config.write_text(text)


def review_rows(slack: Any) -> list[Any]:
    from sqlalchemy import select

    from bot.store.models import Review

    with slack.deps.runtime.store.session() as s:
        return list(s.scalars(select(Review).order_by(Review.id)))


async def test_an_approved_confidential_draft_in_a_thread_never_reaches_a_hosted_model(
    eve_in_hr: None, one_passage: None, hosted: OpenAIStandIn, slack: Any
) -> None:
    await slack.event(dm("UEVE", "What is the L3 salary band in Lisbon?", "540.1"))
    await slack.until(lambda: any(r.notices for r in review_rows(slack)))
    (draft,) = review_rows(slack)
    (where,) = draft.notices
    await slack.interaction(
        button_click(
            "UHANA", "concierge_review_approve", str(draft.id), where["channel"], where["ts"]
        )
    )
    await slack.settle()
    assert "CANARY-HR-BANDS" in "\n".join(m.full_text() for m in slack.api.in_channel("DEVE"))
    # A follow-up about a public source (one passage per question here, so that the thread's
    # previous question does not pull the HR document back in): only the history is
    # confidential now.
    await slack.event(
        dm("UEVE", "Expenses: where do I submit expenses, expenses in Pleo?", "540.2", "540.1")
    )
    await slack.settle()
    assert "Pleo" in slack.api.in_channel("DEVE")[-1].full_text()
    assert "CANARY-HR-BANDS" not in sent_to_model(hosted)


@pytest.fixture
def my_tickets(workspace: Any, tmp_path: Any) -> None:
    """A sql source everyone may read whose query returns the asker's own tickets."""
    import sqlite3

    db = tmp_path / "tickets.db"
    with sqlite3.connect(db) as c:
        c.execute("CREATE TABLE tickets (assignee TEXT, title TEXT, body TEXT, url TEXT)")
        c.execute(
            "INSERT INTO tickets VALUES ('eve@canary.test', 'VPN ticket', "
            "'Your VPN ticket is waiting on CANARY-SQL-EVE', 'https://t/1')"
        )
    source = (
        "  - name: my-tickets\n    kind: sql\n    readers: everyone\n"
        f"    url: sqlite:///{db}\n"
        "    queries:\n      - name: mine\n        sql: >-\n"
        "          SELECT title, body, url FROM tickets WHERE assignee = :asker_email\n"
        "          AND (title LIKE :like OR body LIKE :like)\n"
        "        fields: {title: title, text: body, uri: url}\n"
    )
    text = workspace.config.read_text().replace("limits:", source + "limits:", 1)
    workspace.config.write_text(text.replace("sources:\n", "sources:\n", 1))


async def test_rows_fetched_as_the_asker_never_reach_a_channel(
    my_tickets: None, slack: Any
) -> None:
    await slack.event(mention("UEVE", "Is my VPN ticket still waiting?", "550.1"))
    await slack.settle()
    channel = "\n".join(m.full_text() for m in slack.api.in_channel("C1"))
    assert "CANARY-SQL-EVE" not in channel
    assert "sent to you privately" in channel
    assert "CANARY-SQL-EVE" in "\n".join(m.full_text() for m in slack.api.in_channel("DEVE"))
