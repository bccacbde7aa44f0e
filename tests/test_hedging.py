"""Hedging that helps and stalls that do not freeze an answer: the real langchain-openai
client against local OpenAI-compatible stand-ins, through the pipeline and ``ask --json``.

- the offline model is a last resort, never a hedge that beats a slightly slow primary;
- a hedge delay that follows each model's observed first-token p95 (config value as the cap);
- a hung model opens its circuit breaker even when it only ever lost races;
- a stream that goes silent is continued by the next model, or restarted by the offline model
  with the text shown replaced, and the answer says so.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from prometheus_client import REGISTRY

from bot.core.sinks import CollectingSink
from bot.core.types import Question
from bot.runtime import build_runtime
from bot.settings import Settings
from tests.standins import openai_api
from tests.standins.openai_api import OpenAIStandIn

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)

PRIMARY_REPLY = (
    "According to the handbook, expenses are submitted in Pleo within thirty days, with the "
    "receipt attached. [1]"
)
SECONDARY_REPLY = "and receipts are required above 25 EUR. [1]"


def models_config(apis: dict[str, OpenAIStandIn], routing: str) -> str:
    """Hosted models named after ``apis`` (in chain order), then the offline one."""
    models = "".join(
        f"  - name: {name}\n    provider: openai\n    model: m-{name}\n"
        f"    base_url: {api.url}\n    price: {{input: 1.0, output: 2.0}}\n"
        for name, api in apis.items()
    )
    chain = ", ".join([*apis, "offline"])
    return (
        "models:\n" + models + "  - {name: offline, provider: offline}\n"
        f"routing: {{chain: [{chain}], {routing}}}\n"
    )


async def world(workspace: Any, monkeypatch: Any, names: list[str], routing: str) -> Any:
    apis = {name: OpenAIStandIn(reply=PRIMARY_REPLY) for name in names}
    runners = [await openai_api.start(api) for api in apis.values()]
    text = workspace.config.read_text().replace("limits:", models_config(apis, routing) + "limits:")
    workspace.config.write_text(text)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-stand-in")
    runtime = await build_runtime(Settings())
    return apis, runtime, runners


@pytest.fixture
async def one_hosted(env: dict[str, str], workspace: Any, monkeypatch: Any) -> AsyncIterator[Any]:
    """[primary, offline] with the default hedge delay (1.5 s) and stall timeout."""
    apis, runtime, runners = await world(
        workspace, monkeypatch, ["primary"], "first_token_timeout_s: 4, total_timeout_s: 20"
    )
    yield apis["primary"], runtime
    runtime.close()
    for r in runners:
        await r.cleanup()


@pytest.fixture
async def two_hosted(env: dict[str, str], workspace: Any, monkeypatch: Any) -> AsyncIterator[Any]:
    """[primary, secondary, offline], hedging after at most 1 s, a 1 s stall timeout, and a
    breaker that opens after two failures."""
    routing = (
        "first_token_timeout_s: 1.5, hedge_after_s: 1.0, stall_timeout_s: 1, "
        "total_timeout_s: 8, breaker_failures: 2"
    )
    apis, runtime, runners = await world(workspace, monkeypatch, ["primary", "secondary"], routing)
    apis["secondary"].reply = SECONDARY_REPLY
    yield apis["primary"], apis["secondary"], runtime
    runtime.close()
    for r in runners:
        await r.cleanup()


async def ask(runtime: Any, text: str = "Where do I submit expenses?") -> Any:
    sink = CollectingSink()
    result = await runtime.pipeline.ask(Question(text, "eve@canary.test"), sink)
    return result, sink


async def test_a_slightly_slow_primary_answers_and_offline_is_no_hedge(one_hosted) -> None:
    api, runtime = one_hosted
    api.first_token_s = 1.8  # past the default hedge delay (1.5 s), well within the deadline
    result, sink = await ask(runtime)
    assert result.outcome == "answered" and result.model == "primary"
    assert result.models_tried == ["primary"]  # the offline model was never started
    assert sink.text.startswith("According to the handbook") and not sink.statuses


async def test_the_hedge_is_a_comparable_model(two_hosted) -> None:
    primary, secondary, runtime = two_hosted
    primary.first_token_s = 3.0  # slower than the hedge delay; the secondary is quick
    result, sink = await ask(runtime)
    assert result.model == "secondary" and result.models_tried == ["primary", "secondary"]
    gap = secondary.requests[0]["at"] - primary.requests[0]["at"]
    assert 0.9 <= gap < 1.4  # hedged at the configured delay (no history yet), not offline
    assert sink.statuses == ["The primary model is slow; answering with secondary."]


async def test_the_hedge_delay_follows_the_primary_s_observed_p95(two_hosted) -> None:
    primary, secondary, runtime = two_hosted
    primary.first_token_s = 0.1
    for _ in range(5):  # history: the primary's first token comes after about 0.1 s
        result, _ = await ask(runtime)
        assert result.model == "primary"
    assert not secondary.requests
    primary.first_token_s = 0.9  # still within the configured 1 s, but far past its own p95
    result, _ = await ask(runtime)
    gap = secondary.requests[0]["at"] - primary.requests[-1]["at"]
    assert gap < 0.6  # hedged at about its p95 (0.1 s), not at the configured 1 s
    assert result.model == "secondary"


async def test_a_hung_primary_opens_its_breaker_though_it_only_lost_races(two_hosted) -> None:
    primary, _, runtime = two_hosted
    primary.hang = True
    router = runtime.pipeline.deps.router
    for _ in range(2):  # breaker_failures: 2
        result, sink = await ask(runtime)
        assert result.model == "secondary" and sink.text.startswith("and receipts")
        assert result.attempts[0].outcome == "cancelled"  # it lost the race ...
        await router.settle()  # ... and is judged at its first-token deadline
    assert len(primary.requests) == 2
    result, sink = await ask(runtime)
    assert len(primary.requests) == 2  # skipped: the breaker is open
    assert result.attempts[0].outcome == "skipped" and result.attempts[0].error == "circuit_open"
    assert result.model == "secondary" and result.models_tried == ["secondary"]
    assert not sink.statuses  # no hedge delay paid: the secondary is asked at once


async def test_a_stalled_stream_is_continued_by_the_next_model(two_hosted) -> None:
    primary, secondary, runtime = two_hosted
    primary.stall_after = 5
    labels = {"model": "primary", "outcome": "stalled"}
    stalls = REGISTRY.get_sample_value("concierge_model_attempts_total", labels) or 0
    result, sink = await ask(runtime)
    partial = "".join(primary.tokens()[:5])
    assert REGISTRY.get_sample_value("concierge_model_attempts_total", labels) == stalls + 1
    assert result.outcome == "answered" and result.model == "secondary"
    assert result.models_tried == ["primary", "secondary"]
    assert [a.outcome for a in result.attempts] == ["incomplete", "answered"]
    assert result.attempts[0].error == "stalled"
    assert result.answer.startswith(partial + SECONDARY_REPLY)
    assert "(Continued by secondary after primary stalled.)" in result.answer
    assert sink.text == result.answer and not sink.replaced
    assert sink.statuses == ["The primary model stalled; continuing with secondary."]
    # The secondary got the passages, the text so far and the request to continue it.
    sent = secondary.requests[0]["body"]["messages"]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "user"]
    assert "<passages>" in sent[1]["content"] and sent[2]["content"] == partial
    assert "Continue it from exactly where" in sent[3]["content"]
    # Taken over within the stall timeout (1 s) and a margin, never frozen for long.
    gap = secondary.requests[0]["at"] - primary.requests[0]["at"]
    assert gap < 1.0 + 1.0
    assert result.cost_usd == pytest.approx(sum(a.cost_usd for a in result.attempts))


async def test_a_stalled_stream_is_restarted_offline_with_the_text_replaced(one_hosted) -> None:
    api, runtime = one_hosted
    api.stall_after = 5
    router = runtime.pipeline.deps.router
    assert router.timings.stall_timeout_s == 5  # routing.stall_timeout_s's default
    result, sink = await ask(runtime)
    partial = "".join(api.tokens()[:5])
    assert result.outcome == "answered" and result.model == "offline"
    assert result.models_tried == ["primary", "offline"]
    assert sink.replaced == [partial]  # the sink was told to drop the stalled text
    assert not result.answer.startswith(partial) and "Pleo" in result.answer
    assert "(Restarted by offline after primary stalled.)" in result.answer
    assert sink.text == result.answer
    assert 5_000 <= result.total_ms < 5_000 + 2_000


def test_ask_json_records_a_continued_answer(cli: Any, workspace: Any, monkeypatch: Any) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-stand-in")
    primary = OpenAIStandIn(reply=PRIMARY_REPLY, stall_after=5)
    secondary = OpenAIStandIn(reply=SECONDARY_REPLY)
    with openai_api.in_thread(primary), openai_api.in_thread(secondary):
        routing = "first_token_timeout_s: 2, stall_timeout_s: 1, total_timeout_s: 8"
        text = workspace.config.read_text().replace(
            "limits:",
            models_config({"primary": primary, "secondary": secondary}, routing) + "limits:",
        )
        workspace.config.write_text(text)
        done = cli("ask", "Where do I submit expenses?", "--as", "eve@canary.test", "--json")
    assert done.code == 0, done.err
    record = json.loads(done.out)
    assert record["outcome"] == "answered" and record["model"] == "secondary"
    assert record["models_tried"] == ["primary", "secondary"]
    assert [a["outcome"] for a in record["attempts"]] == ["incomplete", "answered"]
    assert "(Continued by secondary after primary stalled.)" in record["answer"]
    assert record["total_ms"] < 1_000 + 3_000


async def test_a_hung_successor_hands_a_stalled_answer_to_the_offline_model(two_hosted) -> None:
    primary, secondary, runtime = two_hosted
    primary.stall_after, secondary.hang = 5, True
    result, sink = await ask(runtime)
    assert result.outcome == "answered" and result.model == "offline"
    assert result.models_tried == ["primary", "secondary", "offline"]
    assert [a.outcome for a in result.attempts] == ["incomplete", "timeout", "answered"]
    assert sink.replaced and "According to the handbook" not in result.answer
    assert "(Restarted by offline after primary stalled.)" in result.answer
    # Frozen for the stall timeout (1 s), then at most another for the secondary to start.
    assert result.total_ms < 1_000 + 1_000 + 1_000
