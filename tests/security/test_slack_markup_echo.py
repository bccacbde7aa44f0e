"""``/concierge ask QUESTION`` echoes the question as plain text (#15): a question holding
Slack markup must not mention people or show a disguised link in the echo."""

from __future__ import annotations

import pytest

from tests.slack_helpers import SlackDriver


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_the_echoed_question_cannot_ping_or_disguise_a_link(slack: SlackDriver) -> None:
    await slack.command(
        "UEVE",
        "ask <!channel> <@U999|boss> where is the <https://evil.example|IT portal>? "
        "<!subteam^S1|@finance>",
    )
    await slack.settle()
    (echo,) = [p for p in slack.api.called("chat.postMessage") if "You asked" in p["text"]]
    text = echo["text"]
    assert "IT portal" not in text or "evil.example" in text
    for live in ("<!channel>", "<@U999", "<https://evil", "<!subteam"):
        assert live not in text, text
    assert "where is the" in text
