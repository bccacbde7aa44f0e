"""Text from documents and models, made safe for Slack.

Slack treats ``<…>`` as control sequences: ``<!channel>``, ``<@U123>``, ``<#C1>``,
``<https://evil|innocent>``. Escaping ``&``, ``<`` and ``>`` (Slack's own rule) turns every
one of them into plain text, so nothing from a document or a model can mention people or
disguise a link. Our own links are added after escaping.
"""

from __future__ import annotations

import re

MENTION_RE = re.compile(r"<@([A-Z0-9]+)(?:\|[^>]*)?>")
CHANNEL_RE = re.compile(r"<#([A-Z0-9]+)(?:\|([^>]*))?>")
USERGROUP_RE = re.compile(r"<!subteam\^([A-Z0-9]+)(?:\|[^>]*)?>")


def escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# Markdown (the markdown blocks and streams answers are shown in) makes a link of
# ``[label](url)``, ``![alt](url)`` and ``[label][ref]`` with a ``[ref]: url`` definition: the
# reader sees the label, never the URL. A space after the ``]`` of each such construct leaves
# plain text that shows both: ``[IT portal] (https://evil.example)``. The change depends only
# on the character before, so it can be applied to streamed chunks one by one and gives the
# same text as applied to the whole (a link split across chunks is caught too).
LINK_JOINS = {"(": " (", "[": " [", ":": " :"}


def defang_links(text: str, before: str = "") -> str:
    """``text`` with no Markdown link whose label hides its destination. ``before`` is the
    text that came before it (its last character matters), for streamed chunks. Slack's own
    ``<url|label>`` is turned into plain text by ``escape``, applied after this."""
    if not text:
        return text
    out = []
    prev = before[-1:] if before else ""
    for ch in text:
        if prev == "]" and ch in LINK_JOINS:
            out.append(LINK_JOINS[ch])
        else:
            out.append(ch)
        prev = ch
    return "".join(out)


def safe_text(text: str) -> str:
    """Document or model text as Slack markdown: no live links in disguise, no mentions."""
    return escape(defang_links(text))


URLISH_RE = re.compile(
    r"(?i)([a-z][a-z0-9+.-]*:/{0,2}\S|www\.|\b[a-z0-9-]+(\.[a-z0-9-]+)*\.[a-z]{2,}\b)"
)


def link(url: str, label: str) -> str:
    """A link we build ourselves, with an escaped label and a URL that cannot break out.
    A label that looks like an address (another URL, a domain) would hide the real one: the
    real URL is then shown after it, as a link of its own."""
    safe_url = url.replace("<", "%3C").replace(">", "%3E").replace("|", "%7C").replace(" ", "%20")
    if URLISH_RE.search(label):
        return f"{escape(label)} (<{safe_url}>)"
    return f"<{safe_url}|{escape(label).replace('|', '¦')}>"


def question_text(raw: str, bot_user_id: str | None) -> str:
    """A user's message as a question: our own mention removed, other mentions readable."""
    text = raw
    if bot_user_id:
        text = re.sub(rf"<@{re.escape(bot_user_id)}(?:\|[^>]*)?>", " ", text)
    text = MENTION_RE.sub(r"@\1", text)
    text = CHANNEL_RE.sub(lambda m: "#" + (m.group(2) or m.group(1)), text)
    text = USERGROUP_RE.sub(r"@\1", text)
    text = re.sub(r"<(https?://[^|>]+)(?:\|[^>]*)?>", r"\1", text)
    text = text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    return " ".join(text.split())


def split_text(text: str, limit: int) -> list[str]:
    """Split at paragraph, then line, then word boundaries so that no part exceeds ``limit``
    and no word is lost."""
    parts: list[str] = []
    rest = text
    while len(rest) > limit:
        cut = rest.rfind("\n\n", 0, limit)
        if cut < limit // 2:
            cut = rest.rfind("\n", 0, limit)
        if cut < limit // 2:
            cut = rest.rfind(" ", 0, limit)
        if cut <= 0:
            cut = limit
        parts.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    if rest or not parts:
        parts.append(rest)
    return parts
