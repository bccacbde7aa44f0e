"""``app.py exchange show ID [--json]``: the whole record of one exchange, with the prompt
each model attempt received ("log every prompt"), its votes and review; retention purges the
prompts with the rest of the text."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from bot.store.db import Store
from bot.store.models import Exchange
from tests.standins import openai_api
from tests.standins.openai_api import OpenAIStandIn


def asked(cli: Any, question: str, who: str = "eve@canary.test") -> dict[str, Any]:
    result = cli("ask", question, "--as", who, "--json")
    assert result.code == 0, result.err
    data: dict[str, Any] = json.loads(result.out)
    return data


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_every_attempt_shows_the_prompt_it_received(
    cli: Any, workspace: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-stand-in")
    api = OpenAIStandIn(status=500)  # the hosted model fails: the offline model answers
    with openai_api.in_thread(api):
        text = workspace.config.read_text().replace(
            "limits:", openai_api.primary_config(api.url, "first_token_timeout_s: 2") + "limits:"
        )
        workspace.config.write_text(text)
        summary = asked(cli, "Where do I submit expenses?")
    assert all("prompt" not in a for a in summary["attempts"])  # ask --json stays compact
    shown = cli("exchange", "show", summary["exchange_id"])
    assert shown.code == 0, shown.err
    assert "by eve@canary.test via cli" in shown.out
    assert "1. primary: failed" in shown.out and "2. offline: answered" in shown.out
    # Each attempt's own prompt, with the passage text the model actually received.
    assert shown.out.count("--- system ---") == 2
    assert shown.out.count("Submit expenses in Pleo within thirty days") >= 3  # 2 prompts + answer
    record = json.loads(cli("exchange", "show", summary["exchange_id"], "--json").out)
    primary, offline = record["attempts"]
    assert primary["prompt"] == [
        {"role": m["role"].replace("user", "human"), "content": m["content"]}
        for m in api.requests[0]["body"]["messages"]
    ]
    assert offline["prompt"][1]["content"].count("Pleo") >= 1
    assert record["sources"][0]["source"] == "handbook" and record["prompt"]["version"]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_withheld_sources_votes_and_the_reason_are_shown(cli: Any) -> None:
    summary = asked(cli, "What is the deploy freeze codeword for deploying a service?")
    script = "Where do I submit expenses?\nn\nmissing the deadline\n/quit\n"
    assert cli("chat", "--as", "eve@canary.test", stdin=script).code == 0
    channel = json.loads(
        cli(
            "ask",
            "What is the deploy freeze codeword for deploying a service?",
            "--as",
            "eve@canary.test",
            "--channel",
            "general",
            "--json",
        ).out
    )
    shown = cli("exchange", "show", channel["exchange_id"]).out
    assert "withheld: runbooks (only the asker may read them" in shown
    store_rows = cli("exchange", "show", summary["exchange_id"], "--json")
    assert json.loads(store_rows.out)["feedback"] == []


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_retention_purges_the_prompts_too(cli: Any, env: dict[str, str]) -> None:
    summary = asked(cli, "Where do I submit expenses?")
    store = Store.open(env["DATABASE_URL"])
    with store.session() as s:
        row = s.scalars(select(Exchange)).one()
        row.created_at = datetime.now(UTC) - timedelta(days=400)
    store.close()
    config = Path(env["CONCIERGE_CONFIG"])
    config.write_text(config.read_text() + "retention: {days: 30}\n")
    assert cli("jobs", "run", "retention_purge").code == 0
    record = json.loads(cli("exchange", "show", summary["exchange_id"], "--json").out)
    assert record["question"] is None and record["answer"] is None
    assert all(a["prompt"] == [] for a in record["attempts"])
    assert "Pleo" not in json.dumps(record)
    assert "purged by retention" in cli("exchange", "show", summary["exchange_id"]).out


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_an_unknown_id_is_a_clear_usage_error(cli: Any) -> None:
    result = cli("exchange", "show", "no-such-id")
    assert result.code == 2 and "there is no exchange" in result.err
