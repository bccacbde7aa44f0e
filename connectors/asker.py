"""Who a connector acts for: the one asker whose identity a source is queried with."""

from __future__ import annotations

from bot.config import EMAIL_RE
from connectors.base import SourceUnavailable


def sole_asker_email(name: str, principals: frozenset[str]) -> str:
    """The asker's email from ``principals`` (its ``user:`` token), for a source that fetches
    rows as that person (an http identity header, a sql ``:asker_email`` parameter).

    Exactly one well-formed ``user:`` token must be present: with none, or several, rows would
    be fetched as nobody or as the wrong person, so the source fails closed instead.
    """
    emails = {p[5:] for p in principals if p.startswith("user:")}
    if len(emails) != 1:
        raise SourceUnavailable(f"{name} needs exactly one asker identity, got {len(emails)}")
    email = next(iter(emails))
    if not EMAIL_RE.match(email) or not email.isprintable():
        raise SourceUnavailable(f"{name} cannot be searched as a malformed asker identity")
    return email
