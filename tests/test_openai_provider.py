"""The real langchain-openai client, as built from config, against a local OpenAI-compatible
streaming server: usage and cost recorded, faults ending in honest, labelled answers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from bot.core.sinks import CollectingSink
from bot.core.types import Question
from bot.runtime import build_runtime
from bot.settings import Settings
from tests.standins import openai_api
from tests.standins.openai_api import OpenAIStandIn


@pytest.fixture
async def provider(env: dict[str, str], workspace: Any, monkeypatch: Any) -> AsyncIterator[Any]:
    api = OpenAIStandIn()
    runner = await openai_api.start(api)
    text = workspace.config.read_text().replace(
        "limits:",
        (
            "models:\n"
            "  - name: primary\n    provider: openai\n    model: stand-in-1\n"
            f"    base_url: {api.url}\n    price: {{input: 1.0, output: 2.0}}\n"
            "  - {name: offline, provider: offline}\n"
            "routing: {chain: [primary, offline], first_token_timeout_s: 1, total_timeout_s: 10}\n"
            "limits:"
        ),
    )
    workspace.config.write_text(text)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-stand-in")
    runtime = await build_runtime(Settings())
    yield api, runtime
    runtime.close()
    await runner.cleanup()


async def ask(runtime: Any, text: str = "Where do I submit expenses?") -> Any:
    sink = CollectingSink()
    result = await runtime.pipeline.ask(Question(text, "eve@canary.test"), sink)
    return result, sink


async def test_streamed_usage_and_cost_are_recorded(provider) -> None:
    api, runtime = provider
    result, sink = await ask(runtime)
    assert result.outcome == "answered" and result.model == "primary"
    assert result.models_tried == ["primary"]
    assert sink.text.startswith("Submit expenses in Pleo")
    assert len(sink.pieces) > 3
    assert (result.input_tokens, result.output_tokens) == (321, len(api.tokens()))
    assert not result.tokens_estimated
    assert result.cost_usd == pytest.approx((321 * 1.0 + len(api.tokens()) * 2.0) / 1e6)
    sent = api.requests[0]
    assert sent["auth"] == "Bearer sk-stand-in" and sent["body"]["stream"] is True
    assert "<passages>" in sent["body"]["messages"][-1]["content"]


@pytest.mark.parametrize("fault", ["status500", "status429", "hang"])
async def test_faults_fall_back_to_the_offline_model(provider, fault: str) -> None:
    api, runtime = provider
    if fault == "hang":
        api.hang = True
    else:
        api.status = int(fault[-3:])
        api.retry_after = 30 if api.status == 429 else None
    result, sink = await ask(runtime)
    assert result.outcome == "answered" and result.model == "offline"
    assert result.models_tried == ["primary", "offline"]
    assert "Pleo" in sink.text and sink.statuses
    assert result.attempts[0].outcome in ("failed", "timeout")
    assert result.total_ms < 5_000


async def test_a_stream_cut_midway_is_marked_incomplete(provider) -> None:
    api, runtime = provider
    api.drop_after = 3
    result, sink = await ask(runtime)
    assert sink.text.startswith("Submit expenses in")
    assert result.outcome == "incomplete" and result.model == "primary"
    assert "cut off" in result.answer


async def test_confidential_passages_never_reach_the_hosted_model(provider) -> None:
    api, runtime = provider
    sink = CollectingSink()
    result = await runtime.pipeline.ask(
        Question("What is the L3 salary band in Lisbon?", "hana@canary.test"), sink
    )
    assert "CANARY-HR-BANDS" in result.answer and result.model == "offline"
    assert all("CANARY-HR" not in str(r["body"]) for r in api.requests)
    assert result.attempts[0].outcome == "skipped"
