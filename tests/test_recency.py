"""When two versions of the same policy are retrieved, the newer one answers and the answer
names its date; the older one is never quoted against it."""

from __future__ import annotations

from typing import Any

from bot.core.sinks import CollectingSink
from bot.core.types import Question
from bot.runtime import build_runtime
from bot.settings import Settings


def policy(updated: str, days: str) -> str:
    return (
        f"---\ntitle: Remote work policy\nupdated: {updated}\n---\n\n# Remote work policy\n\n"
        f"## Office days\n\nWe expect everyone in the office {days} days a week, on days the "
        "team agrees.\n"
    )


async def test_the_newer_version_of_a_policy_wins_and_names_its_date(
    env: dict[str, str], workspace: Any
) -> None:
    # The older version is the more literal match for the question's words.
    workspace.write("handbook", "remote-old.md", policy("2024-02-01", "three office"))
    workspace.write("handbook", "remote.md", policy("2026-05-10", "two"))
    rt = await build_runtime(Settings())
    try:
        result = await rt.pipeline.ask(
            Question("How many office days a week are expected?", "eve@canary.test"),
            CollectingSink(),
        )
    finally:
        rt.close()
    assert result.outcome == "answered"
    assert "two days a week" in result.answer and "three" not in result.answer
    assert "2026-05-10" in result.answer


async def test_a_hosted_model_sees_each_passage_date_and_the_newer_wins_rule(
    env: dict[str, str], workspace: Any, monkeypatch: Any
) -> None:
    from tests.standins import openai_api
    from tests.standins.openai_api import OpenAIStandIn

    workspace.write("handbook", "remote-old.md", policy("2024-02-01", "three office"))
    workspace.write("handbook", "remote.md", policy("2026-05-10", "two"))
    api = OpenAIStandIn(reply="Two days a week, since 2026-05-10. [1]")
    runner = await openai_api.start(api)
    try:
        text = workspace.config.read_text().replace(
            "limits:", openai_api.primary_config(api.url, "total_timeout_s: 10") + "limits:"
        )
        workspace.config.write_text(text)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-stand-in")
        rt = await build_runtime(Settings())
        try:
            result = await rt.pipeline.ask(
                Question("How many office days a week are expected?", "eve@canary.test"),
                CollectingSink(),
            )
        finally:
            rt.close()
    finally:
        await runner.cleanup()
    assert result.model == "primary" and result.prompt_version == "2"
    system, user = (m["content"] for m in api.requests[0]["body"]["messages"])
    assert "updated most recently" in system
    assert "(updated 2026-05-10)" in user and "(updated 2024-02-01)" in user
    assert "concierge_answer_context" not in str(api.requests[0]["body"])
