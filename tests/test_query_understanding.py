"""Query understanding through the pipeline on the example workspace: conversational noise
never decides whether there is an answer, and only a follow-up borrows from the thread."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from bot.config import load_config
from bot.core.access import AccessDecision
from bot.core.labels import Labels
from bot.core.pipeline import visible_turns
from bot.core.query import clean_question, is_followup, understand
from bot.core.sinks import CollectingSink
from bot.core.types import Question, Turn
from bot.runtime import Runtime, build_runtime
from bot.settings import DEFAULT_CONFIG, Settings

PUBLIC = Labels.of("internal", ["everyone"])
CARRY = "How many days of holiday can I carry over?"


@pytest.fixture
async def acme(env: dict[str, str]) -> AsyncIterator[Runtime]:
    rt = await build_runtime(Settings(), config=load_config(DEFAULT_CONFIG))
    yield rt
    rt.close()


async def ask(rt: Runtime, text: str, history: tuple[Turn, ...] = ()) -> Any:
    question = Question(text, "eve@acme.test", history=history)
    return await rt.pipeline.ask(question, CollectingSink())


@pytest.mark.parametrize(
    "text",
    [
        "hey, quick one: how many days of PTO can I carry over?",
        "How many days of PTO can I carry over? (ref TCK-20931)",
        "<@U07CONCIERGE> hi team :wave: how many days of PTO can I carry over? thanks!! 🙏",
    ],
)
async def test_a_greeting_or_a_pasted_code_does_not_turn_an_answer_into_no_answer(
    acme: Runtime, text: str
) -> None:
    plain = await ask(acme, "How many days of PTO can I carry over?")
    noisy = await ask(acme, text)
    assert plain.outcome == noisy.outcome == "answered"
    assert "five" in noisy.answer and "five" in plain.answer


async def test_the_readme_followup_borrows_from_the_question_it_follows(acme: Runtime) -> None:
    first = await ask(acme, CARRY)
    follow = await ask(acme, "and until when?", (Turn(CARRY, first.answer, PUBLIC),))
    assert follow.outcome == "answered" and "31 March" in follow.answer


async def test_an_unrelated_next_question_is_answered_on_its_own(acme: Runtime) -> None:
    first = await ask(acme, CARRY)
    nxt = await ask(acme, "Where do I submit my expenses?", (Turn(CARRY, first.answer, PUBLIC),))
    assert nxt.outcome == "answered"
    assert "carry" not in nxt.answer.lower() and "PTO" not in nxt.answer
    assert {s["title"] for s in nxt.sources} == {"Expenses"}


def test_a_followup_borrows_only_from_turns_the_audience_may_read() -> None:
    hr = Labels.of("confidential", ["role:hr"])
    turns = (
        Turn("What is the L3 salary band in Lisbon?", "42,000 to 54,000 EUR", hr),
        Turn("How many days of holiday can I carry over?", "Five days.", PUBLIC),
    )
    decision = AccessDecision(
        principals=frozenset({"everyone"}),
        readable=(),
        shared=(),
        audience_principals=frozenset({"everyone"}),
    )
    asked = understand("and in Berlin?", visible_turns(turns[::-1], decision))
    assert "salary" not in asked.query and "holiday" in asked.query
    hr_only = understand("and in Berlin?", visible_turns(turns[:1], decision))
    assert hr_only.query == "and in Berlin?"


def test_noise_and_followups_are_recognised() -> None:
    assert clean_question("what is INC-4411 about?") == "what is INC-4411 about?"
    assert clean_question("Hello! Any idea where I book travel?") == "where I book travel?"
    assert is_followup("what about contractors?") and is_followup("and until when?")
    assert not is_followup("Where do I submit expenses?")
    assert not is_followup("Who approves purchase orders above 10,000 EUR?")
