"""Admission control (issue 13): at most ``CONCIERGE_MAX_ANSWERS`` answers are worked on at
once; questions beyond wait in arrival order, their acks do not. Signed events into the real
HTTP endpoint, a slow model stand-in holding the slots, /healthz and the records checked."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import select

from bot.slack.server import drain
from bot.store.db import Store
from bot.store.models import Exchange
from tests.slack_helpers import dm
from tests.standins import openai_api
from tests.standins.openai_api import OpenAIStandIn

# About two seconds of streaming per answer: long enough to hold a slot while more arrive.
SLOW_REPLY = "Submit expenses in Pleo within thirty days. [1] " + "More words follow here. " * 5
BOUND = 2
QUESTIONS = 6


@pytest.fixture
async def slow_model(
    env: dict[str, str], workspace: Any, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[OpenAIStandIn]:
    """A slow primary model, and a bound of two answers at a time (set before ``slack``)."""
    model = OpenAIStandIn(reply=SLOW_REPLY, token_s=0.08)
    runner = await openai_api.start(model)
    routing = "first_token_timeout_s: 5, stall_timeout_s: 5, total_timeout_s: 30"
    text = workspace.config.read_text().replace(
        "limits:", openai_api.primary_config(model.url, routing) + "limits:"
    )
    workspace.config.write_text(text)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-stand-in")
    monkeypatch.setenv("CONCIERGE_MAX_ANSWERS", str(BOUND))
    try:
        yield model
    finally:
        await runner.cleanup()


def recorded(env: dict[str, str]) -> list[Exchange]:
    store = Store.open(env["DATABASE_URL"], migrate=False)
    try:
        with store.session() as s:
            return list(s.scalars(select(Exchange)))
    finally:
        store.close()


async def health(slack: Any) -> dict[str, Any]:
    async with slack.session.get(slack.url + "/healthz") as r:
        assert r.status == 200
        body: dict[str, Any] = await r.json()
        return body


async def wait_for(check: Any, limit_s: float = 20) -> None:
    """Poll ``check`` (an async predicate on work already started) until it holds."""
    deadline = time.monotonic() + limit_s
    while not await check():
        assert time.monotonic() < deadline, "the expected state was not reached"
        await asyncio.sleep(0.02)


async def test_answers_beyond_the_bound_wait_and_their_acks_do_not(
    slow_model: OpenAIStandIn, slack: Any, env: dict[str, str]
) -> None:
    sent: list[float] = []

    async def ask(i: int) -> float:
        started = time.perf_counter()
        status, _, _ = await slack.event(dm("UEVE", f"Where do I submit expenses? ({i})", f"7.{i}"))
        assert status == 200
        sent.append(time.perf_counter())
        return time.perf_counter() - started

    for i in range(BOUND):  # these two take the slots
        await ask(i)

    async def holding() -> bool:
        return len(slow_model.requests) >= BOUND

    await wait_for(holding)
    acks = [await ask(i) for i in range(BOUND, QUESTIONS)]
    # Acked at once while both slots are held (a generous bound: the point is no waiting).
    assert max(acks) < 1.0, acks

    async def queued() -> bool:
        return (await health(slack)).get("answers_queued") == QUESTIONS - BOUND

    await wait_for(queued)
    state = await health(slack)
    assert state["answers_active"] == BOUND and state["answers_limit"] == BOUND
    assert len(slow_model.requests) == BOUND  # the model saw no more than the bound

    await slack.settle(60)
    assert (await health(slack))["answers_queued"] == 0
    # Each answered once; the two that held the slots went to the model first.
    for i in range(QUESTIONS):
        replies = [
            p
            for m, p in slack.api.calls
            if m in ("chat.startStream", "chat.postMessage") and p.get("thread_ts") == f"7.{i}"
        ]
        assert len(replies) == 1, (i, replies)
    asked = [str(r["body"]["messages"][-1]["content"]) for r in slow_model.requests]
    order = [next(i for i in range(QUESTIONS) if f"({i})" in text) for text in asked]
    assert sorted(order) == list(range(QUESTIONS)) and set(order[:BOUND]) == {0, 1}, order
    # Recorded once each; a question that waited counts the wait in its times (from arrival).
    rows = {r.request_key: r for r in recorded(env)}
    assert len(rows) == QUESTIONS
    assert all(r.outcome == "answered" for r in rows.values())
    first = rows[f"T1:DEVE:7.{0}"]
    last = rows[f"T1:DEVE:7.{QUESTIONS - 1}"]
    assert last.total_ms > first.total_ms + 500  # it waited for a slot: that is in its time


async def test_a_question_still_waiting_at_shutdown_is_told_and_recorded(
    slow_model: OpenAIStandIn, slack: Any, env: dict[str, str]
) -> None:
    for i in range(BOUND + 1):
        status, _, _ = await slack.event(dm("UEVE", f"Where do I submit expenses? ({i})", f"8.{i}"))
        assert status == 200

    async def one_waits() -> bool:
        return (await health(slack)).get("answers_queued") == 1

    await wait_for(one_waits)
    await drain(slack.deps, 0)  # shutdown: what runs is cancelled at once
    rows = {r.request_key: r for r in recorded(env)}
    assert len(rows) == BOUND + 1
    # The one that waited (claims finish in any order: whichever queued) never began: it is
    # recorded as failed with the reason, and the asker is told; the others were cut off.
    waiting = [k for k, r in rows.items() if r.outcome == "failed"]
    assert len(waiting) == 1, {k: r.outcome for k, r in rows.items()}
    assert "stopped before answering" in (rows[waiting[0]].error or "")
    assert sorted(r.outcome for r in rows.values()) == ["failed"] + ["incomplete"] * BOUND
    thread = waiting[0].rsplit(":", 1)[1]
    told = [
        p for m, p in slack.api.calls if m == "chat.postMessage" and p.get("thread_ts") == thread
    ]
    assert told and "restarting" in str(told[0].get("text"))
    assert (await health(slack))["answers_queued"] == 0
