"""A runaway model cannot flood a channel or the store: answers are capped (issue 10, item
10), through the pipeline's API with the real OpenAI client against the local stand-in."""

from __future__ import annotations

from typing import Any

from bot.core.sinks import CollectingSink
from bot.core.types import Question
from bot.runtime import build_runtime
from bot.settings import Settings
from tests.standins import openai_api
from tests.standins.openai_api import OpenAIStandIn


async def test_a_model_that_never_stops_is_cut_at_the_answer_cap(
    env: dict[str, str], workspace: Any, monkeypatch: Any
) -> None:
    api = OpenAIStandIn(reply="Submit expenses in Pleo. " * 4000)  # about 100,000 characters
    runner = await openai_api.start(api)
    text = workspace.config.read_text().replace(
        "limits: {questions_per_minute: 1000}",
        openai_api.primary_config(api.url, "first_token_timeout_s: 15")
        + "limits: {questions_per_minute: 1000, max_answer_chars: 2000}",
    )
    workspace.config.write_text(text)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-stand-in")
    runtime = await build_runtime(Settings())
    try:
        sink = CollectingSink()
        result = await runtime.pipeline.ask(
            Question("Where do I submit expenses?", "eve@canary.test"), sink
        )
    finally:
        runtime.close()
        await runner.cleanup()
    assert result.model == "primary" and result.outcome == "incomplete"
    assert "cut at 2,000 characters" in result.answer
    assert len(result.answer) < 2200 and len(sink.text) < 2200
    assert result.attempts[0].error == "answer_too_long"
