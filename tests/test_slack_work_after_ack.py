"""Work a listener does after its ack is waited for, by shutdown and by tests alike: with the
database slow (300 ms added to every message it is sent, through a real TCP proxy), a
feedback click's vote and modal are complete when ``settle()`` returns. Waiting for a quiet
period instead returned before the vote was written."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from bot.store.models import Exchange, Feedback
from support.standins.tcp_proxy import TcpProxy
from tests.slack_helpers import SlackDriver, dm


@pytest.fixture
def db_url(pg_url: str) -> str:
    """PostgreSQL, reached through the proxy below (``env`` points DATABASE_URL at it)."""
    return pg_url


def click(user: str, exchange_id: str, value: str) -> dict[str, Any]:
    return {
        "type": "block_actions",
        "user": {"id": user},
        "team": {"id": "T1"},
        "trigger_id": "trig-1",
        "actions": [
            {
                "action_id": "concierge_feedback",
                "block_id": f"feedback:{exchange_id}",
                "type": "feedback_buttons",
                "value": f"{value}:{exchange_id}",
            }
        ],
    }


async def test_a_vote_written_to_a_slow_database_is_waited_for(
    proxy: TcpProxy, slack: SlackDriver
) -> None:
    await slack.event(dm("UEVE", "Where do I submit expenses?", "20.1"))
    await slack.settle()
    with slack.deps.runtime.store.session() as s:
        (row,) = s.scalars(select(Exchange))
    proxy.latency_s = 0.3
    status, _, _ = await slack.interaction(click("UEVE", row.id, "down"))
    assert status == 200
    await slack.settle()
    proxy.latency_s = 0.0
    with slack.deps.runtime.store.session() as s:
        votes = [(v.voter, v.vote) for v in s.scalars(select(Feedback))]
    assert votes == [("eve@canary.test", -1)]
    assert len(slack.api.called("views.open")) == 1  # the reason modal, after the vote


async def test_healthz_counts_a_listener_still_working_after_its_ack(
    proxy: TcpProxy, slack: SlackDriver
) -> None:
    """Shutdown drains the same set: a click still being written is work in flight."""
    await slack.event(dm("UEVE", "Where do I submit expenses?", "21.1"))
    await slack.settle()
    with slack.deps.runtime.store.session() as s:
        (row,) = s.scalars(select(Exchange))
    proxy.latency_s = 0.3
    await slack.interaction(click("UEVE", row.id, "up"))
    async with slack.session.get(slack.url + "/healthz") as r:
        assert (await r.json())["answers_in_flight"] == 1
    await slack.settle()
    proxy.latency_s = 0.0
    async with slack.session.get(slack.url + "/healthz") as r:
        assert (await r.json())["answers_in_flight"] == 0
