"""Cost budgets: a daily one per person and a monthly one for the workspace. Near the soft
limit a cheaper chain answers; at the hard limit the person is told when they can ask again and
the owners are told once. Spending comes from the store, and is shared through Redis."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest

from bot.config import Limits
from bot.core.budgets import Budgets, LocalLedger, RedisLedger
from bot.core.sinks import CollectingSink
from bot.core.types import ExchangeResult, Question
from bot.runtime import build_runtime
from bot.settings import Settings
from tests.standins import openai_api
from tests.standins.openai_api import OpenAIStandIn

ANSWER_COST = (321 * 1.0 + len(OpenAIStandIn().tokens()) * 2.0) / 1e6  # stand-in usage x prices


@pytest.fixture
async def budgeted(env: dict[str, str], workspace: Any, monkeypatch: Any) -> AsyncIterator[Any]:
    api = OpenAIStandIn()
    runner = await openai_api.start(api)
    text = workspace.config.read_text().replace(
        "limits: {questions_per_minute: 1000}",
        (
            openai_api.primary_config(api.url, "first_token_timeout_s: 2")
            + "limits:\n  questions_per_minute: 1000\n  person_daily_usd: 0.001\n"
            "  workspace_monthly_usd: 0.01\n  budget_soft_fraction: 0.8\n"
        ),
    )
    workspace.config.write_text(text)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-stand-in")
    runtime = await build_runtime(Settings())
    told: list[tuple[str, str]] = []

    async def deliver(owner: str, message: str) -> None:
        told.append((owner, message))

    runtime.owner_notice.deliver = deliver
    yield api, runtime, told
    runtime.close()
    await runner.cleanup()


async def spend(runtime: Any, asker: str, usd: float) -> None:
    """An earlier exchange in the store that cost ``usd``."""
    await runtime.record(
        ExchangeResult(exchange_id=str(uuid.uuid4()), asker=asker, question="earlier", cost_usd=usd)
    )


async def ask(runtime: Any, asker: str = "eve@canary.test") -> tuple[Any, CollectingSink]:
    sink = CollectingSink()
    result = await runtime.pipeline.ask(Question("Where do I submit expenses?", asker), sink)
    return result, sink


async def test_answers_are_charged_and_spending_is_counted(budgeted) -> None:
    api, runtime, _ = budgeted
    result, _ = await ask(runtime)
    assert len(api.requests) == 1
    assert result.model == "primary" and result.cost_usd == pytest.approx(ANSWER_COST)
    budgets = runtime.pipeline.deps.budgets
    decision = await budgets.check("eve@canary.test")
    assert decision.allowed and decision.spent == pytest.approx(ANSWER_COST)


async def test_near_the_soft_limit_a_cheaper_model_answers(budgeted) -> None:
    api, runtime, told = budgeted
    await spend(runtime, "eve@canary.test", 0.00085)  # 85% of the daily budget
    result, sink = await ask(runtime)
    assert result.outcome == "answered" and result.model == "offline"
    assert result.models_tried == ["offline"] and api.requests == []
    assert any("cheaper model" in s for s in sink.statuses)
    other, _ = await ask(runtime, "sam@canary.test")  # someone else's budget is untouched
    assert other.model == "primary"
    assert told == []


async def test_at_the_hard_limit_the_person_is_told_when_and_owners_once(budgeted) -> None:
    api, runtime, told = budgeted
    await spend(runtime, "eve@canary.test", 0.0011)
    first, sink = await ask(runtime)
    assert first.outcome == "refused" and first.error == "budget_person_daily"
    assert "You can ask again after 00:00 UTC" in sink.text and "$0.00 of $0.00" in sink.text
    second, _ = await ask(runtime)
    assert second.outcome == "refused"
    assert api.requests == []  # no model was called
    assert [owner for owner, _ in told] == ["olu@canary.test"]  # once, not per question
    assert "eve@canary.test" in told[0][1]
    fine, _ = await ask(runtime, "sam@canary.test")
    assert fine.outcome == "answered"


async def test_the_workspace_monthly_budget_stops_everyone(budgeted) -> None:
    api, runtime, told = budgeted
    await spend(runtime, "someone@canary.test", 0.0101)
    runtime.pipeline.deps.budgets.clock = lambda: datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
    result, sink = await ask(runtime, "sam@canary.test")
    assert result.outcome == "refused" and result.error == "budget_workspace_monthly"
    assert api.requests == []
    assert "Questions resume on 01 December (UTC)" in sink.text
    assert len(told) == 1 and "monthly" in told[0][1]


async def test_budgets_are_shared_through_redis(redis_client) -> None:
    limits = Limits(person_daily_usd=1.0)
    seeded: list[str | None] = []

    async def seed(since: datetime, asker: str | None) -> float:
        seeded.append(asker)
        return 0.5  # what the store says was spent before today's first question

    a = Budgets(limits, RedisLedger(redis_client, redis_client.test_prefix), seed)
    b = Budgets(limits, RedisLedger(redis_client, redis_client.test_prefix), seed)
    assert (await b.check("eve@x.test")).spent == 0.5
    await a.charge("eve@x.test", 0.3)  # another instance spends
    decision = await b.check("eve@x.test")
    assert decision.spent == pytest.approx(0.8) and decision.step_down
    await a.charge("eve@x.test", 0.25)
    assert not (await b.check("eve@x.test")).allowed
    assert seeded == ["eve@x.test"]  # seeded from the store once, for all instances
    # In one process without Redis, the same rules hold.
    local = Budgets(limits, LocalLedger(), seed)
    await local.check("eve@x.test")
    await local.charge("eve@x.test", 0.6)
    assert not (await local.check("eve@x.test")).allowed
