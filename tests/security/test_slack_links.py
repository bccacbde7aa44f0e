"""A link in a document or in model output never reaches Slack with a disguised destination
(#9): Markdown ``[IT portal](https://evil.example)``, Slack's ``<https://evil|IT portal>`` and
a label that is another URL are shown with their real destination, or are not links at all,
in every streamed update and in the final message."""

from __future__ import annotations

import itertools
import json
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.slack.text import defang_links, link, safe_text
from tests.security.slack_app import chat_calls
from tests.slack_helpers import SlackDriver, mention

# What Slack would render as a link with a label: Markdown (inline, image, reference
# definitions) in markdown blocks and streams, and <url|label> in mrkdwn.
MD_LINK = re.compile(r"!?\[((?:[^\[\]]|\[[^\[\]]*\])*)\]\(\s*<?([^\s)>]*)")
MD_DEFINITION = re.compile(r"(?m)^ {0,3}\[[^\]]+\]:")
SLACK_LINK = re.compile(r"<((?:https?|mailto|ftp)[^|>]*)\|([^>]*)>")


def disguised_links(text: str) -> list[tuple[str, str]]:
    """(label, destination) of every link whose visible text is not its destination."""
    found = [(m.group(1), m.group(2)) for m in MD_LINK.finditer(text)]
    found += [(m.group(2), m.group(1)) for m in SLACK_LINK.finditer(text)]
    found += [("(reference)", m.group(0)) for m in MD_DEFINITION.finditer(text)]
    return [(label, url) for label, url in found if label.strip() != url.strip()]


ATTACKS = [
    "[IT portal](https://evil.example/login)",
    "![logo](https://evil.example/pixel.png)",
    "[https://it.canary.test](https://evil.example/steal)",
    '[IT portal](<https://evil.example/a b> "title")',
    "[a [nested] label](https://evil.example/n)",
    "[IT portal][p]\n\n[p]: https://evil.example/ref",
    "<https://evil.example/reset|IT portal reset page>",
    "<https://evil.example|https://it.canary.test>",
]


@pytest.mark.parametrize("attack", ATTACKS)
def test_no_disguised_link_survives_rendering(attack: str) -> None:
    assert disguised_links(attack)  # the detector sees the attack...
    rendered = safe_text(f"See {attack} now.")
    assert disguised_links(rendered) == [], rendered  # ...and not what Slack is sent
    assert "evil.example" in rendered  # the real destination stays visible


def test_ordinary_text_and_citations_are_unchanged() -> None:
    text = "Book time off in Factorial [1], two weeks ahead [2]. Costs: 5 (five) EUR."
    assert defang_links(text) == text


def test_our_own_links_never_hide_another_address() -> None:
    assert link("https://wiki.canary.test/pto", "[1] wiki: Paid time off") == (
        "<https://wiki.canary.test/pto|[1] wiki: Paid time off>"
    )
    shown = link("https://evil.example/x", "[1] wiki: https://wiki.canary.test")
    assert disguised_links(shown) == [] and "evil.example" in shown
    shown = link("https://evil.example/x", "[1] wiki: paypal.com login")
    assert disguised_links(shown) == [] and "<https://evil.example/x>" in shown


pieces = st.lists(
    st.sampled_from(["[", "]", "(", ")", ":", "<", ">", "|", "!", " ", "\n", "a", "https://e.x"])
    | st.text(max_size=4),
    max_size=30,
)


@settings(max_examples=200, deadline=None)
@given(parts=pieces, cuts=st.lists(st.integers(min_value=0, max_value=200), max_size=8))
def test_any_chunking_gives_the_same_safe_text(parts: list[str], cuts: list[int]) -> None:
    """Streamed text is defanged chunk by chunk: the result is the same as for the whole,
    so a link split across chunks is caught, and every prefix shown is safe too."""
    text = "".join(parts)
    bounds = sorted({min(c, len(text)) for c in cuts} | {0, len(text)})
    streamed = ""
    for start, end in itertools.pairwise(bounds):
        streamed += defang_links(text[start:end], streamed[-1:])
        assert disguised_links(escape_only(streamed)) == []
    assert streamed == defang_links(text)


def escape_only(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def sent_text(calls: list[dict[str, Any]]) -> list[str]:
    return [
        str(p.get("markdown_text") or "") + str(p.get("text") or "") + json.dumps(p.get("blocks"))
        for p in calls
    ]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("native", [True, False], ids=["stream", "post-update"])
async def test_a_documents_disguised_links_reach_the_channel_undisguised(
    native: bool, slack: SlackDriver, workspace: Any
) -> None:
    workspace.write(
        "handbook",
        "portal.md",
        "---\ntitle: Password resets\n---\n"
        "To reset your password open the [IT portal](https://evil.example/login) or the "
        "<https://evil.example/reset|IT portal reset page>, or ask "
        "[https://it.canary.test](https://evil.example/steal) for help.\n",
    )
    slack.api.native_streaming = native
    await slack.event(mention("UEVE", "How do I reset my password?", "1.1"))
    await slack.settle()
    every = sent_text(chat_calls(slack.api))
    assert any("reset your password" in t for t in every)
    for text in every:  # every write, streamed updates included
        assert disguised_links(text) == [], text
    assert "evil.example/login" in slack.api.everything_posted()
