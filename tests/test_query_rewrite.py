"""The optional query rewrite (``retrieval.rewrite``): a hosted model's search terms are
searched beside the question; it has its own deadline and recorded cost; only the question
(and the earlier questions a follow-up borrows) is sent, and only to a model that may receive
what they carry. The real langchain-openai client talks to a local OpenAI-compatible server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from bot.core.labels import Labels
from bot.core.sinks import CollectingSink
from bot.core.types import Question, Turn
from bot.errors import ConfigError
from bot.runtime import build_runtime
from bot.settings import Settings
from tests.standins import openai_api
from tests.standins.openai_api import OpenAIStandIn

# Shares no word with any document: only the rewrite's terms can find the expenses page.
GIBBERISH = "zorblat quimfrey vextor?"


def rewrite_config(url: str, options: str = "") -> str:
    return (
        "models:\n"
        "  - name: rewriter\n    provider: openai\n    model: stand-in-mini\n"
        f"    base_url: {url}\n    price: {{input: 1.0, output: 2.0}}\n"
        "  - {name: offline, provider: offline}\n"
        "routing: {chain: [offline]}\n"
        f"retrieval: {{rewrite: {{model: rewriter, timeout_s: 0.5{options}}}}}\n"
    )


@pytest.fixture
async def rewriting(env: dict[str, str], workspace: Any, monkeypatch: Any) -> AsyncIterator[Any]:
    api = OpenAIStandIn(reply="submit expenses Pleo reimbursement", prompt_tokens=40)
    runner = await openai_api.start(api)
    text = workspace.config.read_text().replace("limits:", rewrite_config(api.url) + "limits:")
    workspace.config.write_text(text)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-stand-in")
    runtime = await build_runtime(Settings())
    yield api, runtime
    runtime.close()
    await runner.cleanup()


async def ask(
    runtime: Any, text: str, history: tuple[Turn, ...] = (), who: str = "eve@canary.test"
) -> Any:
    sink = CollectingSink()
    return await runtime.pipeline.ask(Question(text, who, history=history), sink)


async def test_without_a_rewrite_model_nothing_is_sent_and_gibberish_finds_nothing(
    env: dict[str, str],
) -> None:
    runtime = await build_runtime(Settings())
    try:
        result = await ask(runtime, GIBBERISH)
    finally:
        runtime.close()
    assert result.outcome == "no_answer"
    assert all(a.purpose == "answer" for a in result.attempts)


async def test_the_rewrites_terms_are_searched_and_its_cost_recorded(rewriting) -> None:
    api, runtime = rewriting
    result = await ask(runtime, GIBBERISH)
    assert result.outcome == "answered" and "Pleo" in result.answer
    assert result.model == "offline" and result.models_tried == ["offline"]
    rewrite = result.attempts[0]
    assert (rewrite.model, rewrite.purpose, rewrite.outcome) == ("rewriter", "rewrite", "answered")
    assert rewrite.input_tokens == 40 and rewrite.output_tokens > 0
    assert result.cost_usd == pytest.approx(rewrite.cost_usd) and rewrite.cost_usd > 0
    sent = api.requests[0]["body"]["messages"]
    assert GIBBERISH.rstrip("?") in sent[-1]["content"]
    assert "<passages>" not in sent[-1]["content"]  # nothing retrieved is ever sent


async def test_a_hung_rewrite_is_abandoned_at_its_deadline(rewriting) -> None:
    api, runtime = rewriting
    api.hang = True
    result = await ask(runtime, "Where do I submit expenses?")
    assert result.outcome == "answered" and "Pleo" in result.answer  # searched as asked
    rewrite = result.attempts[0]
    assert rewrite.outcome == "timeout" and rewrite.cost_usd == 0
    assert rewrite.ended_ms is not None and rewrite.ended_ms < 2_000


async def test_a_provider_error_searches_the_question_as_asked(rewriting) -> None:
    api, runtime = rewriting
    api.status = 500
    result = await ask(runtime, "Where do I submit expenses?")
    assert result.outcome == "answered" and result.attempts[0].outcome == "failed"


async def test_a_follow_up_sends_only_earlier_questions_and_never_confidential_turns(
    rewriting,
) -> None:
    api, runtime = rewriting
    earlier = Turn(
        "How do expenses work?", "ANSWER-TEXT-NEVER-SENT [1]", Labels.of("internal", ["everyone"])
    )
    await ask(runtime, "and until when?", history=(earlier,))
    content = api.requests[-1]["body"]["messages"][-1]["content"]
    assert "How do expenses work?" in content and "ANSWER-TEXT-NEVER-SENT" not in content
    # A thread that carried confidential text the asker may read: this model (public,
    # internal) gets nothing of it, not even the question.
    secret = Turn(
        "What is the L3 salary band?",
        "CANARY-HR-BANDS",
        Labels.of("confidential", ["role:hr"]),
    )
    sent_before = len(api.requests)
    result = await ask(runtime, "and in Lisbon?", history=(secret,), who="hana@canary.test")
    assert len(api.requests) == sent_before
    assert result.attempts[0].outcome == "skipped"


def test_the_config_names_a_hosted_rewrite_model(env: dict[str, str], workspace: Any) -> None:
    from bot.config import load_config

    base = workspace.config.read_text()
    for wrong, message in (
        ("retrieval: {rewrite: {model: nosuch}}\n", "not in models"),
        ("retrieval: {rewrite: {model: offline}}\n", "hosted model"),
    ):
        workspace.config.write_text(base.replace("limits:", wrong + "limits:"))
        with pytest.raises(ConfigError, match=message):
            load_config(workspace.config)


async def test_the_rewrite_prompt_kept_with_the_exchange_is_redacted(rewriting) -> None:
    """The question sent for search terms is stored with the exchange (``exchange show``):
    like every kept prompt, with personal data replaced."""
    from sqlalchemy import select

    from bot.store.models import Exchange

    api, runtime = rewriting
    result = await ask(runtime, "Where do I submit expenses? My email is bob.secret@canary.test")
    assert "bob.secret@canary.test" in api.requests[0]["body"]["messages"][-1]["content"]
    with runtime.store.session() as s:
        row = s.scalars(select(Exchange).where(Exchange.id == result.exchange_id)).one()
    (kept,) = [a for a in row.attempts if a.get("purpose") == "rewrite"]
    assert kept["prompt"] and "bob.secret@canary.test" not in str(kept["prompt"])
    assert "[email]" in str(kept["prompt"])
