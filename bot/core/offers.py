"""Requestable sources: when an answer offers one, who decides, and how to ask on each surface.

A source marked ``requestable: true`` that the asker may not read is offered only when the
question is about it, decided from what the config says of the source (its name, title,
``description`` and ``topics``) and never from its documents: a withheld source is never
searched (invariant 2), so its documents' titles or text cannot make an offer appear, and an
offer can tell nothing about what the source holds.

- Named: every distinctive word of the source's name or title is in the question ("where
  are the finance notes?", "finance approvals?" for *Finance notes*); offered with any answer.
- About its topic: a word of its description or topics is in the question; offered only when
  nothing the asker may read answered it (the offer replaces a dead end, not an answer).

Never offered to a guest (or any account that is not a full member of our team), never into a
shared audience (a channel answer, ``ask --channel``), and never on a surface whose way of
asking is not known here: the offer must be something the person can do where they read it.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable

from bot.config import Source, WorkspaceConfig
from bot.core.access import AccessDecision
from bot.core.query import content_words
from bot.core.text import stem
from bot.core.types import Asker, Audience

# Words that say what kind of thing a source is, not what it is about: "notes" alone must not
# make "where are my meeting notes?" an offer of *Finance notes*.
GENERIC = frozenset(
    stem(w)
    for w in (
        "notes", "docs", "documents", "documentation", "doc", "policies", "policy", "pages",
        "page", "wiki", "files", "file", "data", "info", "information", "guide", "guides",
        "manual", "handbook", "knowledge", "base", "kb", "internal", "company", "team",
        "teams", "records", "reports", "sheets", "database", "source", "sources", "things",
        "stuff", "general", "misc", "about", "all", "everything",
    )
)  # fmt: skip

# How a person asks for access where they read the offer ({source}, {email}).
ASK_FORMS = {
    "slack": "`/concierge access request {source} because …`",
    "cli": '`app.py access request {source} --because "…" --as {email}`',
    "chat": '`app.py access request {source} --because "…" --as {email}` (in a shell)',
}


def _stems(text: str) -> frozenset[str]:
    return frozenset(stem(w) for w in content_words(text))


@functools.lru_cache(maxsize=512)
def _distinctive(text: str) -> frozenset[str]:
    """Config text only (names, titles, descriptions): cached, the config is small."""
    return _stems(text) - GENERIC


def names_source(source: Source, question: str, asked: frozenset[str] | None = None) -> bool:
    """The question names the source: its name as written, or every distinctive word of its
    name or of its title (``asked``: the question's stems, when already known)."""
    low = question.lower()
    for form in {source.name, source.name.replace("-", " ")}:
        if re.search(rf"(?<![\w-]){re.escape(form)}(?![\w-])", low):
            return True  # as a word: a source called "hr" is not named by "three"
    asked = _stems(question) if asked is None else asked
    for label in (source.name.replace("-", " ").replace("_", " "), source.title or ""):
        words = _distinctive(label)
        if words and words <= asked:
            return True
    return False


def topic_words(source: Source) -> frozenset[str]:
    """What the config says the source is about (its description and ``topics``)."""
    topics = source.setting("topics") or ()
    if isinstance(topics, str):
        topics = [topics]
    text = " ".join([source.description or "", *(str(t) for t in topics)])
    return _distinctive(text)


def about_source(source: Source, asked: frozenset[str]) -> bool:
    """The question's stems (``asked``) hold a word of the source's description or topics."""
    return bool(topic_words(source) & asked)


def offers(
    config: WorkspaceConfig,
    *,
    access: AccessDecision,
    asker: Asker,
    audience: Audience,
    surface: str,
    question: str,
    unanswered: bool,
) -> list[Source]:
    """The requestable sources to offer with this answer (see the module's rules)."""
    if not asker.is_full_member or not audience.is_private or surface not in ASK_FORMS:
        return []
    readable = {s.name for s in access.readable}
    candidates = [s for s in config.sources if s.requestable and s.name not in readable]
    if not candidates:
        return []
    asked = _stems(question)
    named = [s for s in candidates if names_source(s, question, asked)]
    if named:
        return named
    return [s for s in candidates if about_source(s, asked)] if unanswered else []


def deciders(config: WorkspaceConfig, source: Source | None) -> list[str]:
    """Everyone who may decide a request for ``source``: its owner, then the admins."""
    people = [source.owner] if source is not None and source.owner else []
    return people + [a for a in config.admins if a not in people]


def who_decides(config: WorkspaceConfig, source: Source | None) -> str:
    """``fin@x (its owner) or an admin (ada@x, bob@x)``: every decider, by name."""
    owner = source.owner if source is not None else None
    admins = [a for a in config.admins if a != owner]
    slack = " or a Slack workspace admin" if config.slack_admins else ""
    if admins:
        word = "an admin" if owner or len(admins) > 1 else "the admin"
        parts = [f"{word} ({', '.join(admins)}){slack}"]
    else:
        parts = [slack.removeprefix(" or ")] if slack else []
    if owner:
        role = "its owner, also an admin" if owner in config.admins else "its owner"
        parts.insert(0, f"{owner} ({role})")
    return " or ".join(p for p in parts if p) or "an admin of this workspace"


def offer_note(
    config: WorkspaceConfig, sources: Iterable[Source], *, surface: str, email: str
) -> str:
    """One sentence per offered source, phrased for the surface it is read on."""
    form = ASK_FORMS[surface]
    return " ".join(
        f"You can ask for access to {s.title or s.name}: "
        f"{form.format(source=s.name, email=email)}. {who_decides(config, s)} decides."
        for s in sources
    )
