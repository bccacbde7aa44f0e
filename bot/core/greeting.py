"""The reply to small talk ("hi", "thanks", "what can you do?"): what Concierge is for and
which sources the person may use here, instead of "I couldn't find an answer".

Pure text from the config and the access decision: no source is searched and no model is
asked. In a shared audience only the sources every reader there may see are named (the
audience rule); the asker is told that a direct message can use more.
"""

from __future__ import annotations

from bot.config import Source
from bot.core.access import AccessDecision
from bot.core.types import Asker


def _source_line(source: Source) -> str:
    title = source.title or source.name
    about = f": {source.description}" if source.description else ""
    named = f" (`{source.name}`)" if source.title and source.title != source.name else ""
    return f"- **{title}**{named}{about}"


def greeting_reply(
    kind: str, *, asker: Asker, access: AccessDecision, workspace: str, private: bool
) -> str:
    """Markdown for a greeting (``kind`` "greeting") or thanks (``kind`` "thanks")."""
    first = (asker.name or "").split(" ")[0]
    hello = f"Hi {first}!" if first else "Hi!"
    if kind == "thanks":
        opening = "You're welcome! Ask me anything else whenever you like."
    else:
        opening = (
            f"{hello} I'm Concierge, the assistant for {workspace}. Ask me a question in your "
            "own words and I'll answer from the company's sources, citing each one."
        )
    sources = access.readable if private else access.shared
    lines = [opening, ""]
    if sources:
        here = "" if private else " here"
        lines.append(f"The sources I can use for you{here}:")
        lines += [_source_line(s) for s in sources]
    if not private and access.private_only:
        lines += ["", "In a direct message I can also use sources only you may read."]
    return "\n".join(lines).rstrip()
