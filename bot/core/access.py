"""The access step: which sources this asker, and this audience, may read.

Decisions are made here in code, from the config's readers and roles plus active grants;
a model never takes part. Deny by default: a source is readable only when a rule says so.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from bot.config import Source, WorkspaceConfig
from bot.core.types import Asker, Audience


@dataclass(frozen=True)
class ActiveGrant:
    principal: str  # user:EMAIL | group:NAME | channel:NAME
    target: str  # a source name, or role:NAME


def source_token(name: str) -> str:
    """The principal token that an explicit grant of a source adds."""
    return f"source:{name}"


def may_read_source(source: Source, principals: frozenset[str]) -> bool:
    return (
        source.is_public
        or bool(source.reader_tokens & principals)
        or source_token(source.name) in principals
    )


@dataclass(frozen=True)
class AccessDecision:
    principals: frozenset[str]  # what the asker holds
    readable: tuple[Source, ...]  # every source the asker may read
    shared: tuple[Source, ...]  # of those, the ones every reader of the audience may see
    audience_principals: frozenset[str]

    @property
    def private_only(self) -> tuple[Source, ...]:
        names = {s.name for s in self.shared}
        return tuple(s for s in self.readable if s.name not in names)


class AccessPolicy:
    """Computes principals and readable sources from the config and the active grants."""

    def __init__(self, config: WorkspaceConfig) -> None:
        self.config = config

    def principals(self, asker: Asker, grants: Iterable[ActiveGrant]) -> frozenset[str]:
        """``everyone``, ``user:EMAIL``, groups, roles and explicitly granted sources.

        Guests (restricted accounts, external users) do not inherit access from groups or
        group-based roles: they read public sources plus what names them directly. An email
        the directory does not vouch for names nobody: public sources only.
        """
        if not asker.email_verified:
            return frozenset({"everyone"})
        own = {"everyone", f"user:{asker.email}"}
        if not asker.guest:
            own |= {f"group:{g}" for g in asker.groups}
        held = set(own)
        for name, role in self.config.roles.items():
            if own.intersection(role.members):
                held.add(f"role:{name}")
        for grant in grants:
            if grant.principal not in own:
                continue
            if grant.target.startswith("role:"):
                held.add(grant.target)
            else:
                held.add(source_token(grant.target))
        return frozenset(held)

    def audience_principals(
        self, audience: Audience, grants: Iterable[ActiveGrant]
    ) -> frozenset[str]:
        held = set(audience.principals)
        if audience.channel and not audience.has_guests:
            for grant in grants:
                if grant.principal == f"channel:{audience.channel}":
                    held.add(
                        grant.target
                        if grant.target.startswith("role:")
                        else source_token(grant.target)
                    )
        return frozenset(held)

    def decide(
        self, asker: Asker, audience: Audience, grants: Iterable[ActiveGrant]
    ) -> AccessDecision:
        grants = tuple(grants)
        principals = self.principals(asker, grants)
        readable = tuple(s for s in self.config.sources if may_read_source(s, principals))
        if audience.is_private:
            return AccessDecision(principals, readable, readable, principals)
        aud = self.audience_principals(audience, grants)
        shared = tuple(s for s in readable if may_read_source(s, aud))
        return AccessDecision(principals, readable, shared, aud)
