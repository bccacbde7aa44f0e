"""The Slack sink told to replace its text (the offline model restarting an answer after the
model that began it stalled): the person ends with one message holding the new answer only."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from bot.core.types import ExchangeResult
from bot.slack.pacing import Budget, Pacer
from bot.slack.streaming import SlackStreamer, Target
from tests.standins import slack_api
from tests.standins.slack_api import Message, SlackStandIn

PARTIAL = "The stalled model began like this "
ANSWER = "Submit expenses in Pleo within thirty days. [1]"


@pytest.fixture
async def api() -> AsyncIterator[SlackStandIn]:
    standin = SlackStandIn()
    runner = await slack_api.start(standin)
    yield standin
    await runner.cleanup()


async def shown(api: SlackStandIn, text: str) -> list[Message]:
    """The channel's messages once one shows ``text`` (the writer sends in the background)."""
    for _ in range(500):
        messages = api.in_channel("D1")
        if any(text in m.text for m in messages):
            return messages
        await asyncio.sleep(0.01)
    raise AssertionError(f"{text!r} was never shown")


def body(message: Message) -> str:
    return next((b["text"] for b in message.blocks if b["type"] == "markdown"), message.text)


@pytest.mark.parametrize("native", [True, False])
async def test_replace_leaves_one_message_with_the_new_answer(
    api: SlackStandIn, native: bool
) -> None:
    client = AsyncWebClient(token="xoxb-t", base_url=api.url)
    sink = SlackStreamer(
        client,
        Target("D1", "1.0", "T1", "U1"),
        Pacer(Budget(6000, 6000, 6000, 6000, 0.0)),
        native=native,
    )
    await sink.write(PARTIAL)
    await shown(api, PARTIAL.strip())
    await sink.replace("")
    for word in ANSWER.split(" "):
        await sink.write(word + " ")
    result = ExchangeResult(
        exchange_id="x1",
        asker="eve@x.test",
        question="q",
        answer=ANSWER,
        outcome="answered",
        model="offline",
    )
    await sink.close(result)
    messages = api.in_channel("D1")
    assert len(messages) == 1 and result.delivery == "delivered"
    final = messages[0]
    assert "Pleo" in body(final) and "stalled model" not in final.full_text()
