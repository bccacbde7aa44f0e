"""The work between a Slack event and the model call: per question, not a queue; Slack asked
once per answer for a channel; times that start when the event reached us. All through
signed requests into the served app, against the Slack Web API stand-in."""

from __future__ import annotations

import asyncio
import re

from sqlalchemy import select

from bot.store.models import Exchange
from tests.slack_helpers import SlackDriver, dm, mention


def exchanges(slack: SlackDriver, channel: str | None = None) -> list[Exchange]:
    """The recorded exchanges (those answered in ``channel`` when given: a channel answer
    may have a private follow-up in a DM)."""
    with slack.deps.runtime.store.session() as s:
        rows = list(s.scalars(select(Exchange).order_by(Exchange.created_at)))
    return [r for r in rows if channel is None or r.channel == channel]


async def test_people_asking_at_once_are_looked_up_in_slack_at_once(slack) -> None:
    """Five people ask together while users.info takes half a second: their look-ups run
    side by side (a lock held across the call made them a queue of 2.5 s)."""
    people = [f"UP{i}" for i in range(5)]
    for uid in people:
        slack.api.add_user(uid, f"{uid.lower()}@canary.test")
    slack.api.delays["users.info"] = 0.5
    await asyncio.gather(
        *(
            slack.event(dm(uid, "Where do I submit expenses?", f"10.{i}"))
            for i, uid in enumerate(people)
        )
    )
    await slack.settle()
    assert len(exchanges(slack)) == 5
    assert {r.outcome for r in exchanges(slack)} == {"answered"}
    assert slack.api.peak["users.info"] >= 3


async def test_one_person_asking_twice_at_once_is_looked_up_once(slack) -> None:
    slack.api.delays["users.info"] = 0.3
    await asyncio.gather(
        slack.event(dm("UEVE", "Where do I submit expenses?", "11.1")),
        slack.event(dm("UEVE", "How many days of time off can I carry over?", "11.2")),
    )
    await slack.settle()
    assert len(exchanges(slack)) == 2
    assert len(slack.api.called("users.info")) == 1


async def test_a_channel_answer_asks_slack_about_the_channel_once(slack) -> None:
    await slack.event(mention("UEVE", "Where do I submit expenses?", "12.1"))
    await slack.settle()
    assert len(slack.api.called("conversations.info")) == 1
    (row,) = exchanges(slack, "C1")
    assert row.audience == "channel:general" and row.outcome == "answered"
    # The next question there uses what is known of the channel.
    await slack.event(mention("UHANA", "How many days of time off can I carry over?", "12.2"))
    await slack.settle()
    assert len(slack.api.called("conversations.info")) == 1


async def test_questions_at_once_in_one_channel_share_one_channel_look_up(slack) -> None:
    slack.api.delays["conversations.info"] = 0.3
    await asyncio.gather(
        slack.event(mention("UEVE", "Where do I submit expenses?", "13.1", channel="C2")),
        slack.event(mention("UHANA", "How do I book holidays?", "13.2", channel="C2")),
    )
    await slack.settle()
    assert len(exchanges(slack, "C2")) == 2
    assert len(slack.api.called("conversations.info")) == 1


async def test_times_run_from_the_events_arrival_even_when_slack_is_slow(slack) -> None:
    """Slack takes 0.8 s to describe the channel before the answer can start: the person
    waited for it, so the recorded times and the footer include it."""
    slack.api.delays["conversations.info"] = 0.8
    await slack.event(mention("UEVE", "Where do I submit expenses?", "14.1"))
    await slack.settle()
    (row,) = exchanges(slack, "C1")
    assert row.outcome == "answered"
    assert row.total_ms is not None and row.total_ms >= 800
    assert row.ttft_ms is not None and 800 <= row.ttft_ms <= row.total_ms
    (answer,) = [m for m in slack.api.in_channel("C1") if m.blocks]
    shown = re.findall(r"(\d+\.\d) s\b", answer.full_text())
    assert shown and float(shown[-1]) >= 0.8, answer.full_text()
