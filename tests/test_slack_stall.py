"""A stream that stalls in Slack: the served app, signed events, the Slack Web API stand-in
and an OpenAI-compatible stand-in that goes silent after 5 tokens. The offline model starts
the answer over, and the thread ends with its answer alone, labelled."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.slack_helpers import mention
from tests.standins import openai_api
from tests.standins.openai_api import OpenAIStandIn

PARTIAL_REPLY = "According to the handbook, expenses are submitted in Pleo within thirty days. [1]"


@pytest.fixture
async def stalling(workspace: Any, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Any]:
    """A hosted primary that stalls after 5 tokens (configured before the app starts)."""
    api = OpenAIStandIn(reply=PARTIAL_REPLY, stall_after=5)
    runner = await openai_api.start(api)
    routing = "first_token_timeout_s: 2, stall_timeout_s: 0.5, total_timeout_s: 10"
    text = workspace.config.read_text().replace(
        "limits:", openai_api.primary_config(api.url, routing) + "limits:"
    )
    workspace.config.write_text(text)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-stand-in")
    yield api
    await runner.cleanup()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_a_stalled_answer_is_replaced_in_the_thread(stalling: Any, slack: Any) -> None:
    await slack.event(mention("UEVE", "Where do I submit expenses?", "700.1"))
    await slack.settle()
    assert stalling.requests  # the hosted model was asked, and stalled
    replies = [m for m in slack.api.in_channel("C1") if m.thread_ts == "700.1"]
    assert len(replies) == 1 and replies[0].streaming  # a native stream, rewritten
    shown = replies[0].full_text()
    assert "Pleo" in shown and "Restarted by offline after primary stalled" in shown
    assert "According to the handbook" not in shown
