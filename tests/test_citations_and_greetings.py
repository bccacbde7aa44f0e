"""What an answer shows: citations numbered in the order the answer cites them (never [1]
then [4]), each source with its path inside the source (or its link) and its document's date,
in ``ask`` and ``ask --json``; greetings answered with what Concierge can do and the sources
this person may use here, in every front end, while a greeting before a question is still
a question."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bot.core.citations import CitationNumbers
from bot.core.query import small_talk
from bot.core.sinks import CollectingSink
from bot.core.types import Question
from bot.runtime import build_runtime
from bot.settings import Settings
from tests.conftest import Workspace
from tests.slack_helpers import SlackDriver, dm, mention
from tests.standins import openai_api
from tests.standins.openai_api import OpenAIStandIn

DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
PASSAGE_HEADER = re.compile(r"^\[(\d+)\] [\w-]+ \| ([^\n—(]+)", re.MULTILINE)


# -- citation numbers -------------------------------------------------------------------------


def test_markers_are_renumbered_in_order_even_when_split_across_pieces() -> None:
    numbers = CitationNumbers(5)
    pieces = ["Directors approve. [", "4] Pleo [", "1", "] again [4][4] and ", "[2026] [9] [2]"]
    shown = "".join(numbers.feed(p) for p in pieces) + numbers.flush()
    assert shown == "Directors approve. [1] Pleo [2] again [1][1] and [2026] [9] [3]"
    assert numbers.cited == [4, 1, 2]
    assert numbers.text == shown
    held = CitationNumbers(2)
    assert held.feed("the end [1") == "the end "
    assert held.flush() == "[1"  # an unfinished marker is shown as written


@pytest.fixture
async def model_runtime(
    env: dict[str, str], workspace: Workspace, monkeypatch: Any
) -> AsyncIterator[Any]:
    api = OpenAIStandIn()
    runner = await openai_api.start(api)
    text = workspace.config.read_text().replace(
        "limits:",
        openai_api.primary_config(api.url, "first_token_timeout_s: 5, total_timeout_s: 20")
        + "limits:",
    )
    workspace.config.write_text(text)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-stand-in")
    runtime = await build_runtime(Settings())
    yield api, runtime
    runtime.close()
    await runner.cleanup()


async def test_the_answer_and_its_sources_are_numbered_in_citation_order(model_runtime) -> None:
    api, runtime = model_runtime
    api.reply = "Submit expenses in Pleo. [2] Managers approve them. [2] See also [1]."
    sink = CollectingSink()
    question = Question(
        "Where do I submit expenses, and how much parental leave?", "eve@canary.test"
    )
    result = await runtime.pipeline.ask(question, sink)
    prompt = api.requests[0]["body"]["messages"][-1]["content"]
    titles = {int(n): t.strip() for n, t in PASSAGE_HEADER.findall(prompt)}
    assert len(titles) >= 2, prompt  # the model saw at least two passages
    assert sink.text.startswith(
        "Submit expenses in Pleo. [1] Managers approve them. [1] See also [2]."
    )
    assert result.answer.startswith(sink.text[: len("Submit expenses in Pleo. [1]")])
    assert [s["ref"] for s in result.sources] == [1, 2]
    assert [s["title"] for s in result.sources] == [titles[2], titles[1]]


# -- sources in ask and ask --json ------------------------------------------------------------


def test_ask_json_sources_have_a_relative_path_and_the_documents_date(
    cli, workspace: Workspace
) -> None:
    workspace.write(
        "handbook",
        "travel/taxis.md",
        "---\ntitle: Taxis\nupdated: 2025-06-01\n---\n\n"
        "Taxi rides to the airport are reimbursed when booked through FreeNow business.\n",
    )
    r = cli("ask", "Are taxi rides to the airport reimbursed?", "--as", "eve@canary.test", "--json")
    assert r.code == 0, r.err
    data = json.loads(r.out)
    assert data["outcome"] == "answered"
    (source,) = [s for s in data["sources"] if s["title"] == "Taxis"]
    assert {"source", "title", "uri", "date"} <= set(source)
    assert source["source"] == "handbook"
    assert source["uri"] == "travel/taxis.md"  # relative to the source, not a bare name
    assert source["date"] == "2025-06-01"  # the front matter's date
    assert [s["ref"] for s in data["sources"]] == list(range(1, len(data["sources"]) + 1))
    for s in data["sources"]:
        assert DATE.match(str(s["date"])), s

    plain = cli("ask", "Are taxi rides to the airport reimbursed?", "--as", "eve@canary.test")
    assert "Sources:" in plain.out
    assert re.search(r"\[\d\] Taxis — handbook/travel/taxis\.md\S*, updated 2025-06-01", plain.out)
    assert "\x1b" not in plain.out + plain.err  # not a terminal: plain text only


# -- greetings --------------------------------------------------------------------------------


def ask_json(cli, text: str, *args: str) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    r = cli("ask", text, "--json", *args)
    assert r.code == 0, r.err
    return dict(json.loads(r.out))


@pytest.mark.parametrize("greeting", ["hi", "hello", "hey there", "Good morning!"])
def test_a_greeting_gets_what_concierge_does_and_the_persons_sources(cli, greeting: str) -> None:
    data = ask_json(cli, greeting, "--as", "eve@canary.test")
    assert data["outcome"] == "answered"
    assert data["model"] is None and data["models_tried"] == [] and data["sources"] == []
    assert "I'm Concierge" in data["answer"]
    assert "couldn't find" not in data["answer"]
    assert "handbook" in data["answer"] and "runbooks" in data["answer"]
    assert "hr-policies" not in data["answer"] and "finance-notes" not in data["answer"]


def test_thanks_and_other_people_get_their_own_sources(cli) -> None:
    thanks = ask_json(cli, "thanks!", "--as", "maya@canary.test")
    assert thanks["answer"].startswith("You're welcome")
    assert "handbook" in thanks["answer"] and "runbooks" not in thanks["answer"]
    hana = ask_json(cli, "hello", "--as", "hana@canary.test")
    assert "hr-policies" in hana["answer"]
    # In a channel only what every reader there may see is named.
    shared = ask_json(cli, "hello", "--as", "hana@canary.test", "--channel", "general")
    assert "handbook" in shared["answer"] and "hr-policies" not in shared["answer"]
    assert "direct message" in shared["answer"]


def test_a_greeting_before_a_question_is_a_question(cli) -> None:
    data = ask_json(cli, "hey, quick one: where do I submit expenses?", "--as", "eve@canary.test")
    assert data["outcome"] == "answered" and data["model"] == "offline"
    assert "Pleo" in data["answer"] and data["sources"]


async def test_slack_gets_the_greeting_too(slack: SlackDriver) -> None:
    await slack.event(dm("UEVE", "hi", "300.1"))
    await slack.event(mention("UHANA", "<@UBOT> hello", "300.2", channel="C1"))
    await slack.settle()
    texts = [m.full_text() for m in slack.api.in_channel("DEVE") if m.blocks]
    assert any("I'm Concierge" in t and "runbooks" in t for t in texts), texts
    assert not any("couldn't find" in t for t in texts)
    public = [m.full_text() for m in slack.api.in_channel("C1") if m.blocks]
    assert any("I'm Concierge" in t for t in public), public
    assert not any("hr-policies" in t for t in public)


async def test_slack_citations_are_numbered_and_dated(slack: SlackDriver) -> None:
    await slack.event(dm("UEVE", "How many days of time off can I carry over?", "300.3"))
    await slack.settle()
    (answer,) = [m for m in slack.api.in_channel("DEVE") if m.blocks]
    assert re.search(r"\[1\] handbook: Paid time off \(\d{4}-\d{2}-\d{2}\)", answer.full_text())


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("hi", "greeting"),
        ("hey there", "greeting"),
        ("<@U123> hello :wave:", "greeting"),
        ("good morning team!", "greeting"),
        ("what can you do?", "greeting"),
        ("thanks!", "thanks"),
        ("thank you so much 🙏", "thanks"),
        ("thanks for the help", "thanks"),
        ("hey, quick one: how many PTO days carry over?", None),
        ("hi, what is the wifi password?", None),
        ("thanks, and what about contractors?", None),
        ("why?", None),  # a follow-up, not small talk
        ("and until when?", None),
        ("help me with expenses", None),
        ("hi " + "x" * 300, None),
    ],
)
def test_what_counts_as_small_talk(text: str, kind: str | None) -> None:
    assert small_talk(text) == kind
