"""The identity step: who is asking.

A resolver turns the front end's reference (an email in the terminal, a Slack user id in
Slack) into an Asker. The terminal uses the config's people directory; the Slack adapter
provides its own resolver built on users.info, behind the same protocol.
"""

from __future__ import annotations

import difflib
from typing import Protocol

from bot.config import EMAIL_RE, WorkspaceConfig
from bot.core.types import Asker
from bot.errors import UsageError


class UnknownPerson(UsageError):
    pass


class IdentityResolver(Protocol):
    async def resolve(self, ref: str) -> Asker: ...


class DirectoryResolver:
    """People from the config file. Admins, owners and people named in readers are known too
    (with no groups), so that any email the config mentions can ask."""

    def __init__(self, config: WorkspaceConfig) -> None:
        self.config = config
        self.people = {p.email: p for p in config.people}
        known = set(self.people) | set(config.admins) | set(config.owners)
        for role in config.roles.values():
            known |= {m[5:] for m in role.members if m.startswith("user:")}
        for s in config.sources:
            known |= {t[5:] for t in s.reader_tokens if t.startswith("user:")}
            if s.owner:
                known.add(s.owner)
        self.known = known

    def default_ref(self) -> str:
        if self.config.default_person:
            return self.config.default_person.lower()
        members = [p.email for p in self.config.people if not p.guest]
        if members:
            return members[0]
        if self.known:
            return sorted(self.known)[0]
        return "you@localhost.invalid"

    def lookup(self, ref: str) -> Asker:
        email = ref.strip().lower()
        if not EMAIL_RE.match(email):
            raise UnknownPerson(f"{ref!r} is not an email address")
        person = self.people.get(email)
        if person is not None:
            return Asker(email, frozenset(person.groups), person.guest, person.name)
        if email in self.known or (not self.people and not self.known):
            return Asker(email)
        raise UnknownPerson(
            f"{email} is not in the workspace's people (config file {self.config.path})"
            f"{self.suggest(email)}"
        )

    def suggest(self, email: str, shown: int = 8) -> str:
        """ "; did you mean …?" with the nearest known emails, else the people who are known."""
        known = sorted(self.known)
        if not known:
            return ""
        near = difflib.get_close_matches(email, known, n=2, cutoff=0.85)
        local = email.partition("@")[0]
        near += [k for k in known if k.partition("@")[0] == local and k not in near]
        if near:
            return f"; did you mean {' or '.join(near[:3])}?"
        more = f" and {len(known) - shown} more" if len(known) > shown else ""
        return f"; known people: {', '.join(known[:shown])}{more}"

    async def resolve(self, ref: str) -> Asker:
        return self.lookup(ref)
