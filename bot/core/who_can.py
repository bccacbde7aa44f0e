"""``access who-can SOURCE``: who may read a source, and why.

The config's readers (with each role's members) and the active grants; then every person the
config's directory knows who may read it, with the readers or grant they match (the same
rules the access step applies, guests included); then the documents whose front matter
narrows the source's readers, or that are closed to everyone, with who may read those.
Pure work on the config, the grants and the source folder: callers load the grants.
"""

from __future__ import annotations

from collections.abc import Sequence

from bot.config import Source, WorkspaceConfig
from bot.core.access import AccessPolicy, ActiveGrant, may_read_source, source_token
from bot.core.identity import DirectoryResolver
from bot.store import repo
from bot.store.models import Grant
from connectors.docs_access import narrowed_documents


def describe_readers(config: WorkspaceConfig, source: Source, grants: Sequence[Grant]) -> list[str]:
    lines: list[str] = []
    if source.is_public:
        lines.append("everyone (config), guests included")
    else:
        for token in sorted(source.reader_tokens):
            lines.append(f"{label(token)} (config)")
            if token.startswith("role:"):
                role = config.roles[token[5:]]
                lines.extend(f"  member: {label(m)}" for m in role.members)
    roles = {t for t in source.reader_tokens if t.startswith("role:")}
    for g in grants:
        if g.target == source.name or g.target in roles:
            until = f" until {repo.as_utc(g.expires_at):%Y-%m-%d}" if g.expires_at else ""
            via = "" if g.target == source.name else f" via {g.target}"
            lines.append(f"{label(g.principal)} (grant #{g.id}{via}{until})")
    held = people_principals(config, [ActiveGrant(g.principal, g.target) for g in grants])
    readers = {e: p for e, p in held.items() if may_read_source(source, p)}
    if not source.is_public:
        lines.append(
            f"people who may read it ({len(readers)} of the {len(held)} the directory knows):"
        )
        lines.extend(f"  {e} ({why(source, p)})" for e, p in readers.items())
        lines.extend(_bound_groups(config, source))
    lines.extend(_narrowed(config, source, readers))
    return lines


def people_principals(
    config: WorkspaceConfig, grants: Sequence[ActiveGrant]
) -> dict[str, frozenset[str]]:
    """Everyone the config's directory knows, with what each holds (grants included)."""
    directory = DirectoryResolver(config)
    policy = AccessPolicy(config)
    return {
        email: policy.principals(directory.lookup(email), grants)
        for email in sorted(directory.known)
    }


def why(source: Source, principals: frozenset[str]) -> str:
    """Why someone holding ``principals`` may read ``source``: the readers they match."""
    reasons = [label(t) for t in sorted(source.reader_tokens & principals)]
    if source_token(source.name) in principals:
        reasons.append("a grant")
    return ", ".join(reasons)


def label(token: str) -> str:
    return token[5:] if token.startswith("user:") else token


def _bound_groups(config: WorkspaceConfig, source: Source) -> list[str]:
    """In Slack, members of a bound user group read it too (the config does not list them)."""
    lines = []
    for token in sorted(t for t in source.reader_tokens if t.startswith("group:")):
        bound = config.slack_groups.get(token.removeprefix("group:"), ())
        if bound:
            shown = ", ".join(r[3:] if r.startswith("id:") else "@" + r[7:] for r in bound)
            lines.append(f"  and in Slack, the members of {shown} (bound to {token})")
    return lines


def _narrowed(
    config: WorkspaceConfig, source: Source, readers: dict[str, frozenset[str]]
) -> list[str]:
    if source.kind != "docs":
        return []
    folder = config.resolve(str(source.setting("path", source.name)))
    try:
        docs = narrowed_documents(folder)
    except OSError as exc:
        return [f"documents: the folder cannot be read ({exc.strerror})"]
    if not docs:
        return ["documents: none narrowed by front matter"]
    lines = ["documents narrowed by front matter:"]
    for d in docs:
        name = f"{d.path} ({d.title})" if d.title else d.path
        if d.closed is not None:
            lines.append(f"  {name}: closed, nobody may read it: {d.closed}")
            continue
        people = [e for e, p in readers.items() if p.intersection(d.readers)]
        lines.append(
            f"  {name}: {', '.join(label(r) for r in d.readers)}; people: "
            + (", ".join(people) or "none known")
        )
    return lines
