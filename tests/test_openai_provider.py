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
    routing = "first_token_timeout_s: 1, total_timeout_s: 10"
    text = workspace.config.read_text().replace(
        "limits:", openai_api.primary_config(api.url, routing) + "limits:"
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


@pytest.fixture
async def two_models(env: dict[str, str], workspace: Any, monkeypatch: Any) -> AsyncIterator[Any]:
    """primary and backup: two OpenAI-compatible stand-ins, hedging after 0.3 s."""
    primary, backup = OpenAIStandIn(), OpenAIStandIn(reply="Backup says: use Pleo. [1]")
    runners = [await openai_api.start(primary), await openai_api.start(backup)]
    models = "".join(
        f"  - name: {name}\n    provider: openai\n    model: m-{name}\n"
        f"    base_url: {api.url}\n    price: {{input: 1.0, output: 1.0}}\n"
        for name, api in (("primary", primary), ("backup", backup))
    )
    text = workspace.config.read_text().replace(
        "limits:",
        (
            "models:\n" + models + "  - {name: offline, provider: offline}\n"
            "routing: {chain: [primary, backup, offline], first_token_timeout_s: 5, "
            "hedge_after_s: 0.3, total_timeout_s: 20}\nlimits:"
        ),
    )
    workspace.config.write_text(text)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-stand-in")
    runtime = await build_runtime(Settings())
    yield primary, backup, runtime
    runtime.close()
    for r in runners:
        await r.cleanup()


async def test_timeline_hedge_starts_at_the_hedge_delay_not_the_deadline(two_models) -> None:
    primary, backup, runtime = two_models
    primary.hang = True
    result, sink = await ask(runtime)
    started = primary.requests[0]["at"]
    hedge_gap = backup.requests[0]["at"] - started
    assert 0.25 <= hedge_gap < 2.0  # the hedge delay (0.3 s), far from the 5 s deadline
    assert sink.text.startswith("Backup says")
    assert result.model == "backup" and result.models_tried == ["primary", "backup"]
    lost = result.attempts[0]
    assert lost.outcome == "cancelled" and lost.cost_usd > 0 and lost.tokens_estimated
    assert any("slow" in s for s in sink.statuses)


async def test_a_losing_hedge_is_cancelled_and_still_billed(two_models) -> None:
    primary, backup, runtime = two_models
    primary.first_token_s = 0.6  # slow, but faster than the backup
    backup.first_token_s = 3.0
    result, sink = await ask(runtime)
    assert sink.text.startswith("Submit expenses")
    assert result.model == "primary"
    assert [a.outcome for a in result.attempts[:2]] == ["answered", "cancelled"]
    assert result.attempts[1].cost_usd > 0
    assert result.cost_usd == pytest.approx(sum(a.cost_usd for a in result.attempts))
    assert len(backup.requests) == 1


async def test_a_failing_model_is_skipped_for_a_cooldown(provider) -> None:
    api, runtime = provider
    api.status = 500
    for _ in range(3):  # three failures in a row open the breaker (default)
        await ask(runtime)
    assert len(api.requests) == 3
    result, sink = await ask(runtime)
    assert len(api.requests) == 3  # not called at all while the breaker is open
    assert result.attempts[0].outcome == "skipped" and result.attempts[0].error == "circuit_open"
    assert result.model == "offline" and "Pleo" in sink.text


async def test_breakers_are_shared_through_redis(redis_client) -> None:
    from bot.core.breaker import LocalBreaker, RedisBreaker

    a = RedisBreaker(redis_client, redis_client.test_prefix, failures=2, cooldown_s=0.5)
    b = RedisBreaker(redis_client, redis_client.test_prefix, failures=2, cooldown_s=0.5)
    await a.record("primary", False)
    await b.record("primary", False)  # the second failure, seen by another instance
    assert await a.is_open("primary") and await b.is_open("primary")
    assert not await a.is_open("backup")
    import asyncio

    await asyncio.sleep(0.6)
    assert not await b.is_open("primary")
    local = LocalBreaker(failures=2, cooldown_s=60)
    await local.record("m", False)
    await local.record("m", True)  # a success resets the count
    await local.record("m", False)
    assert not await local.is_open("m")
    await local.record("m", False)
    assert await local.is_open("m")


async def test_retry_after_within_the_deadline_retries_the_same_model(provider) -> None:
    api, runtime = provider
    api.status, api.retry_after, api.fail_times = 429, 0.2, 1
    result, sink = await ask(runtime)
    assert result.outcome == "answered" and result.model == "primary"
    assert result.models_tried == ["primary"] and result.attempts[0].retries == 1
    gap = api.requests[1]["at"] - api.requests[0]["at"]
    assert gap >= 0.2  # the provider's Retry-After was honoured
    assert sink.text.startswith("Submit expenses")


async def test_retry_after_beyond_the_deadline_skips_the_model_that_long(provider) -> None:
    api, runtime = provider
    api.status, api.retry_after = 429, 30
    first, _ = await ask(runtime)
    assert first.model == "offline" and first.attempts[0].error == "rate_limited"
    second, sink = await ask(runtime)
    assert len(api.requests) == 1  # held for its Retry-After: not called again
    assert second.attempts[0].error == "circuit_open" and "Pleo" in sink.text


async def test_a_context_length_error_trims_the_prompt_and_retries(provider) -> None:
    api, runtime = provider
    await ask(runtime)
    full = sum(len(m["content"]) for m in api.requests[0]["body"]["messages"])
    api.max_prompt_chars = full - 1
    result, sink = await ask(runtime)
    assert result.outcome == "answered" and result.model == "primary"
    assert result.attempts[0].retries >= 1
    assert "context_length" in result.attempts[0].notes[0]
    sent = [sum(len(m["content"]) for m in r["body"]["messages"]) for r in api.requests[1:]]
    assert sent[0] == full and sent[-1] <= full - 1
    assert sink.text.startswith("Submit expenses")


async def test_a_prompt_that_cannot_be_trimmed_enough_falls_back(provider) -> None:
    api, runtime = provider
    api.max_prompt_chars = 10
    result, sink = await ask(runtime)
    assert result.model == "offline" and result.attempts[0].error == "context_length"
    assert "Pleo" in sink.text


async def test_a_content_refusal_is_reported_not_rerouted(provider) -> None:
    api, runtime = provider
    api.refuse = True
    result, sink = await ask(runtime)
    assert result.outcome == "refused" and result.error == "content_refusal"
    assert result.models_tried == ["primary"] and result.attempts[0].outcome == "refused"
    assert "declined to answer" in sink.text and "Pleo" not in sink.text
    assert result.sources == []
