"""The Slack sink on its own: long answers split without losing a word, shared pacing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from bot.core.types import ExchangeResult
from bot.slack.pacing import Budget, Pacer
from bot.slack.streaming import SlackStreamer, Target
from tests.standins import slack_api
from tests.standins.slack_api import SlackStandIn

WORDS = [f"word{i}" for i in range(2_000)]


@pytest.fixture
async def api() -> AsyncIterator[SlackStandIn]:
    standin = SlackStandIn()
    runner = await slack_api.start(standin)
    yield standin
    await runner.cleanup()


def result(answer: str) -> ExchangeResult:
    return ExchangeResult(
        exchange_id="x1",
        asker="eve@x.test",
        question="q",
        answer=answer,
        outcome="answered",
        model="offline",
    )


async def stream(
    api: SlackStandIn, *, native: bool, limit: int, pacer: Pacer | None = None, channel: str = "D1"
) -> tuple[SlackStreamer, str]:
    client = AsyncWebClient(token="xoxb-t", base_url=api.url)
    sink = SlackStreamer(
        client,
        Target(channel, "1.0", "T1", "U1"),
        pacer or Pacer(Budget(6000, 6000, 6000, 6000, 0.0)),
        native=native,
        message_limit=limit,
    )
    text = ""
    for i in range(0, len(WORDS), 7):
        piece = " ".join(WORDS[i : i + 7]) + " "
        text += piece
        await sink.write(piece)
        if i % 70 == 0:
            await asyncio.sleep(0)
    await sink.close(result(text))
    return sink, text


@pytest.mark.parametrize("native", [True, False])
async def test_long_answers_are_split_without_losing_a_word(
    api: SlackStandIn, native: bool
) -> None:
    _, text = await stream(api, native=native, limit=1_500)
    messages = sorted(api.in_channel("D1"), key=lambda m: m.ts)
    assert len(messages) >= 9
    shown: list[str] = []
    for m in messages:
        body = (
            m.text
            if native
            else next((b["text"] for b in m.blocks if b["type"] == "markdown"), m.text)
        )
        assert len(body) <= 1_500
        shown.extend(body.split())
    assert shown == text.split()
    assert [b["type"] for b in messages[-1].blocks][-1] == "context_actions"
    assert all(m.thread_ts == "1.0" for m in messages)


async def test_many_answers_share_the_workspace_budget(api: SlackStandIn) -> None:
    """With a budget of 600 writes a minute (10/s), 20 concurrent answers of 2,000 words
    together make far fewer writes than pieces, and every text arrives whole."""
    api.native_streaming = False
    pacer = Pacer(Budget(update_per_minute=600, append_per_minute=600, write_interval_s=0.0))
    runs: list[Any] = await asyncio.gather(
        *(stream(api, native=False, limit=40_000, pacer=pacer, channel=f"D{i}") for i in range(20))
    )
    for i, (_, text) in enumerate(runs):
        messages = sorted(api.in_channel(f"D{i}"), key=lambda m: m.ts)
        body = " ".join(
            " ".join(b["text"] for b in m.blocks if b["type"] == "markdown") or m.text
            for m in messages
        )
        assert body.split() == text.split()
    updates = len(api.called("chat.update"))
    pieces = 20 * (len(WORDS) // 7 + 1)
    assert updates < pieces / 10
