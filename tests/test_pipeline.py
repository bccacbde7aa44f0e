"""The pipeline through its Python API: prompts sent to models, connectors called, records."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from langchain_core.messages import BaseMessage
from pydantic import Field

from bot.config import ModelSpec
from bot.core.generate import ModelRouter
from bot.core.models import RegisteredModel
from bot.core.offline import OfflineChatModel
from bot.core.sinks import CollectingSink
from bot.core.types import Audience, Question
from bot.runtime import Runtime, build_runtime
from bot.settings import Settings
from bot.store.models import Exchange
from connectors.base import AccessDenied, Connector
from tests.conftest import CANARIES, PROBES


class RecordingOffline(OfflineChatModel):
    """The real offline model, keeping every prompt it receives."""

    prompts: list[str] = Field(default_factory=list)

    def _answer(self, messages: list[BaseMessage]) -> Any:
        self.prompts.append("\n".join(str(m.content) for m in messages))
        return super()._answer(messages)


@pytest.fixture
async def runtime(env: dict[str, str]) -> Any:
    rt = await build_runtime(Settings())
    model = RecordingOffline(prompts=[])
    rt.pipeline.deps.router = ModelRouter(
        [RegisteredModel(ModelSpec(name="offline", provider="offline"), model)]
    )
    rt.recording_model = model  # type: ignore[attr-defined]
    yield rt
    rt.close()


async def ask(rt: Runtime, text: str, who: str, channel: str | None = None) -> Any:
    audience = Audience("channel", channel) if channel else Audience()
    sink = CollectingSink()
    result = await rt.pipeline.ask(Question(text=text, asker_ref=who, audience=audience), sink)
    return result, sink


async def test_no_canary_reaches_a_prompt_for_someone_not_allowed(runtime: Any, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    for person in ("maya@canary.test", "gus@partner.test", "eve@canary.test"):
        for question in PROBES:
            runtime.recording_model.prompts.clear()
            await ask(runtime, question, person)
            prompt = "\n".join(runtime.recording_model.prompts)
            for canary, source in CANARIES.items():
                if source not in ("runbooks",) or person == "gus@partner.test":
                    assert canary not in prompt, (person, question)
            assert "CANARY-SRE-91B" not in prompt
    assert not any(c in caplog.text for c in CANARIES if CANARIES[c] != "runbooks")


async def test_channel_prompt_carries_only_shared_sources(runtime: Any) -> None:
    runtime.recording_model.prompts.clear()
    q = "How does parental leave top-up pay work with payroll?"
    result, sink = await ask(runtime, q, "hana@canary.test", channel="general")
    prompt = "\n".join(runtime.recording_model.prompts)
    assert "CANARY-HR-22C" not in prompt
    assert "CANARY-HR-22C" not in sink.text
    assert result.sources_withheld == ["hr-policies"]


class SpyConnector(Connector):
    kind = "spy"

    def __init__(self, inner: Connector) -> None:
        super().__init__(inner.source, inner.context)
        self.inner = inner
        self.calls = 0

    async def _search(self, *, query: str, principals: frozenset[str], k: int) -> list[Any]:
        self.calls += 1
        return await self.inner._search(query=query, principals=principals, k=k)


async def test_a_connector_is_never_called_for_someone_who_may_not_read_it(runtime: Any) -> None:
    spies = {name: SpyConnector(c) for name, c in runtime.connectors.items()}
    runtime.connectors.update(spies)
    for question in PROBES:
        await ask(runtime, question, "maya@canary.test")
    assert spies["handbook"].calls == len(PROBES)
    assert spies["hr-policies"].calls == 0
    assert spies["finance-notes"].calls == 0
    assert spies["runbooks"].calls == 0
    # And the base refuses outright if code ever asks it to.
    with pytest.raises(AccessDenied):
        await spies["hr-policies"].search(query="bands", principals=frozenset({"everyone"}), k=3)
    assert spies["hr-policies"].calls == 0


async def test_streams_in_several_chunks_and_records_once(runtime: Any) -> None:
    result, sink = await ask(
        runtime, "How many days of time off can I carry over?", "eve@canary.test"
    )
    assert len(sink.pieces) > 3
    assert sink.text.startswith(result.answer[:20])
    with runtime.store.session() as s:
        rows = s.query(Exchange).all()
    assert len(rows) == 1 and rows[0].id == result.exchange_id
    assert rows[0].answer == result.answer and rows[0].outcome == "answered"


async def test_concurrent_questions_each_recorded_once(runtime: Any) -> None:
    questions = [f"How many days of time off can I carry over? ({i})" for i in range(20)]
    results = await asyncio.gather(*(ask(runtime, q, "eve@canary.test") for q in questions))
    with runtime.store.session() as s:
        ids = {r.id for r in s.query(Exchange).all()}
    assert ids == {r.exchange_id for r, _ in results}


async def test_same_request_key_is_recorded_once(runtime: Any) -> None:
    q = Question(
        text="Where do I submit expenses?", asker_ref="eve@canary.test", request_key="ev-1"
    )
    await runtime.pipeline.ask(q, CollectingSink())
    q2 = Question(
        text="Where do I submit expenses?", asker_ref="eve@canary.test", request_key="ev-1"
    )
    await runtime.pipeline.ask(q2, CollectingSink())
    with runtime.store.session() as s:
        assert s.query(Exchange).filter_by(request_key="ev-1").count() == 1


def test_history_is_trimmed_to_turns_and_tokens() -> None:
    from bot.core.pipeline import trim_history
    from bot.core.types import Turn

    turns = tuple(Turn(f"question {i}", "answer " * 100) for i in range(10))
    assert [t.question for t in trim_history(turns, 4, 10_000)] == [
        "question 6",
        "question 7",
        "question 8",
        "question 9",
    ]
    assert [t.question for t in trim_history(turns, 4, 400)] == ["question 8", "question 9"]
    assert trim_history(turns, 0, 10_000) == ()
    assert trim_history(turns, 4, 10) == ()
