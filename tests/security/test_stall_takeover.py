"""A stalled answer is carried on by the next model with the text so far: a new path into a
prompt. The partial answer carries the labels of the passages it came from, so a model that
may not receive them is passed over (the offline model starts over instead), and a
``redact: true`` model receives the partial answer redacted like the rest of its prompt."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bot.core.sinks import CollectingSink
from bot.core.types import Question
from bot.runtime import build_runtime
from bot.settings import Settings
from tests.standins import openai_api
from tests.standins.openai_api import OpenAIStandIn

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)

DEPLOY = "How do I deploy a service?"  # the runbooks source: internal, engineering only
PARTIAL_REPLY = "To deploy, page ops@canary.test and then run the pipeline as described. [1]"


@pytest.fixture
async def models(env: dict[str, str], workspace: Any, monkeypatch: Any) -> AsyncIterator[Any]:
    """primary (internal allowed) stalls after 8 tokens; public-only takes public text only;
    redacting accepts internal text but only redacted."""
    apis = {
        "primary": OpenAIStandIn(reply=PARTIAL_REPLY, stall_after=8),
        "public-only": OpenAIStandIn(reply="continued. [1]"),
        "redacting": OpenAIStandIn(reply="continued. [1]"),
    }
    runners = [await openai_api.start(api) for api in apis.values()]
    extra = {"public-only": "    data_classes: [public]\n", "redacting": "    redact: true\n"}
    models = "".join(
        f"  - name: {name}\n    provider: openai\n    model: m\n    base_url: {api.url}\n"
        + extra.get(name, "")
        for name, api in apis.items()
    )
    yield apis, workspace, models, monkeypatch
    for r in runners:
        await r.cleanup()


async def answer(workspace: Any, models: str, chain: str, monkeypatch: Any) -> Any:
    text = workspace.config.read_text().replace(
        "limits:",
        "models:\n" + models + "  - {name: offline, provider: offline}\n"
        f"routing: {{chain: [{chain}], first_token_timeout_s: 2, stall_timeout_s: 0.5, "
        "total_timeout_s: 8}\nlimits:",
    )
    workspace.config.write_text(text)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-stand-in")
    runtime = await build_runtime(Settings())
    try:
        sink = CollectingSink()
        return await runtime.pipeline.ask(Question(DEPLOY, "eve@canary.test"), sink)
    finally:
        runtime.close()


async def test_a_stalled_internal_answer_never_reaches_a_public_only_model(models) -> None:
    apis, workspace, config, monkeypatch = models
    result = await answer(workspace, config, "primary, public-only, offline", monkeypatch)
    assert "internal" in result.labels.classes
    assert not apis["public-only"].requests  # the partial answer is internal text
    assert result.models_tried == ["primary", "offline"]
    assert result.attempts[1].outcome == "skipped" and result.attempts[1].error == "data_class"
    assert result.model == "offline" and "Restarted by offline" in result.answer


async def test_a_redacting_model_gets_the_partial_answer_redacted(models) -> None:
    apis, workspace, config, monkeypatch = models
    result = await answer(workspace, config, "primary, redacting, offline", monkeypatch)
    assert result.model == "redacting" and "Continued by redacting" in result.answer
    sent = apis["redacting"].requests[0]["body"]["messages"]
    assert sent[2]["role"] == "assistant" and sent[2]["content"].startswith("To deploy, page")
    assert "ops@canary.test" not in json.dumps(sent)
