"""Slack faults lose nothing (issue 14, part B): failed writes, rate-limit bursts after an ack,
clicks that cannot be read, a slow auth.test and malformed payloads. Each test asserts what
the person saw and what was recorded, driving the app through signed requests and the Slack
stand-in's fault injection."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import pytest
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy import select

from bot.core.types import ExchangeResult
from bot.slack.app import build_app
from bot.slack.pacing import Budget, Pacer
from bot.slack.server import start_http
from bot.slack.streaming import SlackStreamer, Target
from bot.store.db import make_engine
from bot.store.models import Exchange
from tests.slack_helpers import SlackDriver, dm, sign

QUESTION = "How many days of time off can I carry over?"


def exchanges(slack: SlackDriver) -> list[Exchange]:
    with slack.deps.runtime.store.session() as s:
        return list(s.scalars(select(Exchange).order_by(Exchange.created_at)))


def shown(slack: SlackDriver, channel: str) -> list[str]:
    """What the person sees in each message of ``channel``, Slack's escaping undone."""
    return [
        m.full_text().replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
        for m in slack.api.in_channel(channel)
    ]


async def done(slack: SlackDriver, check: Callable[[], bool], limit_s: float = 10) -> None:
    """Wait for the work the request started: until ``check()`` holds and nothing runs."""
    deadline = time.monotonic() + limit_s
    while not (check() and not slack.deps.tasks):
        left = deadline - time.monotonic()
        assert left > 0, "the work did not finish"
        if slack.deps.tasks:
            await asyncio.wait(set(slack.deps.tasks), timeout=left)
        else:
            await asyncio.sleep(0.02)


def no_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    bad = [r for r in caplog.records if r.exc_info or "never retrieved" in r.getMessage()]
    assert not bad, [r.getMessage() for r in bad]


@pytest.mark.parametrize("failures", [1, 5])
async def test_a_500_on_append_stream_still_shows_the_whole_answer(
    slack: SlackDriver, failures: int
) -> None:
    slack.api.fail("chat.appendStream", status=500, times=failures)
    await slack.event(dm("UEVE", QUESTION, "10.1"))
    await done(slack, lambda: len(exchanges(slack)) == 1)
    (row,) = exchanges(slack)
    assert slack.api.called("chat.appendStream")
    assert any(row.answer in text for text in shown(slack, "DEVE")), shown(slack, "DEVE")
    assert all(m.stopped for m in slack.api.in_channel("DEVE") if m.streaming)
    assert (row.outcome, row.delivery) == ("answered", "delivered")
    assert "Sorry" not in "".join(shown(slack, "DEVE"))


async def test_a_failed_stop_stream_never_posts_the_answer_twice(slack: SlackDriver) -> None:
    slack.api.fail("chat.stopStream", status=500, times=10)
    await slack.event(dm("UEVE", "Where do I submit expenses?", "11.1"))
    await done(slack, lambda: len(exchanges(slack)) == 1)
    (row,) = exchanges(slack)
    copies = [text for text in shown(slack, "DEVE") if "Pleo" in text]
    assert len(copies) == 1, copies
    assert row.delivery == "delivered"


async def test_delivery_that_finally_fails_is_never_recorded_as_answered(
    slack: SlackDriver,
) -> None:
    slack.api.native_streaming = False
    slack.api.fail("chat.postMessage", status=500, times=50)
    await slack.event(dm("UEVE", "Where do I submit expenses?", "12.1"))
    await done(slack, lambda: len(exchanges(slack)) == 1, limit_s=20)
    (row,) = exchanges(slack)
    assert row.delivery == "failed" and row.outcome != "answered"


async def test_a_429_burst_on_concierge_ask_still_answers_and_records(slack: SlackDriver) -> None:
    slack.api.fail("conversations.open", retry_after=0, times=4)
    slack.api.fail("chat.postMessage", retry_after=0, times=4)
    status, body, _ = await slack.command("UEVE", "ask Where do I submit expenses?")
    assert status == 200 and "Working on it" in body
    await done(slack, lambda: len(exchanges(slack)) == 1)
    (row,) = exchanges(slack)
    assert (row.outcome, row.delivery) == ("answered", "delivered")
    assert any("Pleo" in text for text in shown(slack, "DEVE"))


def review_click(value: Any) -> dict[str, Any]:
    return {
        "type": "block_actions",
        "user": {"id": "UEVE"},
        "team": {"id": "T1"},
        "container": {"type": "message", "channel_id": "C1", "message_ts": "1.1"},
        "channel": {"id": "C1"},
        "trigger_id": "trig-1",
        "actions": [
            {
                "action_id": "concierge_review_approve",
                "block_id": "review",
                "type": "button",
                "value": value,
            }
        ],
    }


async def test_a_review_button_whose_value_is_not_a_number_is_acked_and_explained(
    slack: SlackDriver, caplog: pytest.LogCaptureFixture
) -> None:
    started = time.monotonic()
    status, _, _ = await slack.interaction(review_click("abc"))
    assert status == 200 and time.monotonic() - started < 0.5
    await done(slack, lambda: bool(slack.api.called("chat.postEphemeral")))
    (told,) = slack.api.called("chat.postEphemeral")
    assert told["user"] == "UEVE" and "out of date" in told["text"]
    no_tracebacks(caplog)


async def test_a_slow_auth_test_never_delays_the_first_ack(slack: SlackDriver) -> None:
    slack.api.delays["auth.test"] = 2.0
    started = time.monotonic()
    status, _, _ = await slack.event(dm("UEVE", "Where do I submit expenses?", "13.1"))
    assert status == 200 and time.monotonic() - started < 0.5
    await done(slack, lambda: len(exchanges(slack)) == 1)


async def test_an_event_without_a_channel_is_recorded_as_having_nowhere_to_answer(
    slack: SlackDriver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    event = dm("UEVE", "Where do I submit expenses?", "14.1")
    del event["channel"]
    status, _, _ = await slack.event(event)
    assert status == 200
    await done(slack, lambda: len(exchanges(slack)) == 1)
    (row,) = exchanges(slack)
    assert (row.outcome, row.delivery) == ("failed", "failed")
    assert "no channel" in (row.error or "")
    assert not slack.api.messages
    no_tracebacks(caplog)


@pytest.mark.parametrize(("text", "reply"), [(None, "Ask me a question"), (42, "isn't plain text")])
async def test_an_event_whose_text_is_not_text_gets_a_clear_reply(
    slack: SlackDriver, caplog: pytest.LogCaptureFixture, text: Any, reply: str
) -> None:
    caplog.set_level(logging.INFO)
    event = {**dm("UEVE", "", "15.1"), "text": text}
    status, _, _ = await slack.event(event)
    assert status == 200
    await done(slack, lambda: bool(slack.api.in_channel("DEVE")))
    (message,) = slack.api.in_channel("DEVE")
    assert reply in message.text and message.thread_ts == "15.1"
    no_tracebacks(caplog)


async def test_a_command_is_acked_while_the_claims_table_is_locked_and_a_replay_does_nothing(
    slack: SlackDriver, db_url: str
) -> None:
    # A second instance sharing the store: its in-process cache has not seen the request.
    other, port = await start_http(build_app(slack.deps), slack.deps, "127.0.0.1", 0)
    engine = make_engine(db_url)
    conn = engine.connect()
    try:
        # Another writer holds the replay claims' table: no claim can be written for now.
        if engine.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.begin()
            conn.exec_driver_sql("LOCK TABLE slack_deliveries IN ACCESS EXCLUSIVE MODE")
        body = urlencode(
            {"command": "/concierge", "text": "access list", "user_id": "UEVE", "team_id": "T1"}
            | {"channel_id": "C1", "trigger_id": "t", "response_url": "http://127.0.0.1:9/none"}
        )
        form = "application/x-www-form-urlencoded"
        replay = SlackDriver(f"http://127.0.0.1:{port}", slack.api, slack.deps, slack.session)
        headers = sign(body)
        for instance in (slack, replay):
            started = time.monotonic()
            status, _, _ = await asyncio.wait_for(instance.post(body, form, signed=headers), 3)
            assert status == 200 and time.monotonic() - started < 0.5
    finally:
        conn.rollback()
        conn.close()
        engine.dispose()
    await done(slack, lambda: bool(slack.api.called("chat.postEphemeral")))
    assert len(slack.api.called("chat.postEphemeral")) == 1
    await other.cleanup()


async def test_a_failed_stop_between_parts_of_a_long_answer_loses_no_word(
    slack: SlackDriver,
) -> None:
    """A long answer is several messages; a stream that cannot be stopped between two of
    them still leaves every word shown exactly once."""
    slack.api.fail("chat.stopStream", status=500, times=3)
    text = " ".join(f"word{i}" for i in range(1_200)) + " "
    sink = SlackStreamer(
        AsyncWebClient(token="xoxb-t", base_url=slack.api.url),
        Target("D1", "1.0", "T1", "U1"),
        Pacer(Budget(6000, 6000, 6000, 6000, 0.0)),
        message_limit=1_500,
    )
    for i in range(0, len(text), 50):
        await sink.write(text[i : i + 50])
        await asyncio.sleep(0)
    result = ExchangeResult("x1", "eve@x.test", "q", answer=text, outcome="answered")
    await sink.close(result)
    words = [
        w for m in sorted(slack.api.in_channel("D1"), key=lambda m: m.ts) for w in m.text.split()
    ]
    assert words == text.split()
    assert result.delivery == "delivered"
