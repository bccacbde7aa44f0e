"""``/concierge access …``: the same operations and WHO / WHAT rules as ``app.py access``.

WHO may be a Slack mention (``<@U…>``, ``<!subteam^S…|@handle>``, ``<#C…|name>``, as Slack
sends them with escaping on), an email, ``group:NAME`` or ``channel:NAME``. A user group
stands for the config group that ``slack_groups`` binds it to, and is refused when unbound.
WHAT is a source name or ``role:NAME``. The actor is the Slack user, who must be a full
member of our team and an admin; a refused attempt is audited. Replies are ephemeral text;
database work runs in a thread.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from slack_sdk.models.blocks import ActionsBlock, ButtonElement, SectionBlock

from bot.config import WorkspaceConfig
from bot.core.admin import AccessAdmin, format_time, parse_duration
from bot.errors import UsageError
from bot.slack import ids
from bot.slack.ids import COMMAND
from bot.slack.text import escape

USER_RE = re.compile(r"^<@([A-Z0-9]+)(?:\|[^>]*)?>$")
GROUP_RE = re.compile(r"^<!subteam\^([A-Z0-9]+)(?:\|@?([^>]*))?>$")
CHANNEL_RE = re.compile(r"^<#([A-Z0-9]+)(?:\|([^>]*))?>$")
USAGE = (
    "Usage: `/concierge access grant WHO WHAT [for 30d] [because …] [--yes]`, "
    "`revoke WHO WHAT [because …]`, `list [WHO|SOURCE]`, `who-can SOURCE`, `audit [N]`; "
    "anyone: `request SOURCE because …`. "
    "WHO is @person, @usergroup, #channel or an email; WHAT is a source or role:NAME."
)

# Confirms a grant that drew warnings (Slack may turn "--" into a dash as it is typed).
CONFIRM = frozenset({"--yes", "—yes", "–yes"})
MAX_BUTTON_VALUE = 2000  # Slack's limit for a button's value

Resolve = Callable[[str], Awaitable[str]]  # a Slack user id -> email
Known = Callable[[str], Awaitable[bool]]  # an email -> whether a person of ours has it
# (a Slack user id, the operation) -> the email of a full member of our team, or NotAllowed
Member = Callable[[str, str], Awaitable[str]]


class NeedsConfirmation(UsageError):
    """A grant that drew warnings and was not confirmed: nothing was changed. ``command`` is
    the ``access`` text that grants anyway (the original with ``--yes``)."""

    def __init__(self, warnings: list[str], command: str) -> None:
        self.warnings = warnings
        self.command = command
        listed = "\n".join(f"• {escape(w)}" for w in warnings)
        super().__init__(
            f"Nothing was granted yet:\n{listed}\nTo grant anyway, press *Grant anyway* or "
            f"repeat the command with `--yes`: `{COMMAND} access {escape(command)}`"
        )


def confirm_blocks(exc: NeedsConfirmation) -> list[dict[str, Any]]:
    """The warnings with a *Grant anyway* button (whose click runs the command again, with
    ``--yes``, as the clicker: who may grant is checked again then)."""
    blocks: list[dict[str, Any]] = [SectionBlock(text=str(exc)).to_dict()]
    if len(exc.command) <= MAX_BUTTON_VALUE:
        button = ButtonElement(
            text="Grant anyway",
            action_id=ids.ACCESS_GRANT_CONFIRM,
            value=exc.command,
            style="danger",
        )
        blocks.append(ActionsBlock(elements=[button]).to_dict())
    return blocks


def split_options(words: list[str]) -> tuple[list[str], str | None, str | None]:
    """``[… for 30d because reason words]`` -> (positional, duration, reason)."""
    reason = None
    if "because" in words:
        i = words.index("because")
        reason = " ".join(words[i + 1 :]) or None
        words = words[:i]
    duration = None
    if len(words) >= 2 and words[-2] == "for":
        duration = words[-1]
        words = words[:-2]
    return words, duration, reason


def bound_group(config: WorkspaceConfig, usergroup_id: str, handle: str | None) -> str:
    """``group:NAME`` for a Slack user group the config binds to exactly one group."""
    shown = "@" + handle.lstrip("@") if handle else usergroup_id
    bound = sorted(config.groups_bound_to(usergroup_id, handle))
    if not bound:
        raise UsageError(
            f"The Slack user group {escape(shown)} is not bound to a Concierge group, so it "
            "gives no access. Bind it under slack_groups in the config file, or grant "
            "group:NAME."
        )
    if len(bound) > 1:
        raise UsageError(
            f"The Slack user group {escape(shown)} is bound to several groups "
            f"({', '.join(bound)}); grant one of them as group:NAME."
        )
    return f"group:{bound[0]}"


async def parse_who(
    token: str,
    resolve: Resolve,
    channel_name: Callable[[str], Awaitable[str]],
    config: WorkspaceConfig,
) -> str:
    if m := USER_RE.match(token):
        return await resolve(m.group(1))
    if m := GROUP_RE.match(token):
        return bound_group(config, m.group(1), m.group(2))
    if m := CHANNEL_RE.match(token):
        return "channel:" + (m.group(2) or await channel_name(m.group(1))).lower()
    return token


async def run_access(
    text: str,
    *,
    actor_id: str,
    admin: AccessAdmin,
    resolve: Resolve,
    member: Member,
    channel_name: Callable[[str], Awaitable[str]],
    known: Known,
) -> str:
    """Carry out one ``access`` subcommand; returns the reply (or raises UsageError; a grant
    that needs confirming raises NeedsConfirmation)."""
    words = text.split()
    confirmed = any(w in CONFIRM for w in words)
    words = [w for w in words if w not in CONFIRM]
    if not words:
        return USAGE
    op, args = words[0].lower(), words[1:]
    if op not in ("grant", "revoke", "list", "who-can", "audit"):
        raise UsageError(f"I don't know `access {escape(op[:30])}`. {USAGE}")
    # Every access operation is for admins (full members of our team): even who-can would
    # tell others which restricted sources exist. A refused attempt is audited.
    actor = await member(actor_id, f"use access {op}")
    await asyncio.to_thread(admin.require_admin, actor, f"use access {op}", None)
    if op in ("grant", "revoke"):
        positional, duration, reason = split_options(args)
        if len(positional) != 2:
            raise UsageError(USAGE)
        who = await parse_who(positional[0], resolve, channel_name, admin.config)
        what = positional[1]
        if op == "revoke" and duration:
            raise UsageError("`revoke` takes no duration.")
        span: timedelta | None = parse_duration(duration) if duration else None
        warnings: list[str] = []
        if op == "grant":
            # A mention is a person Slack knows; a typed email is looked up.
            principal = admin.parse_who(who)
            is_known = (
                USER_RE.match(positional[0]) is not None
                or not principal.startswith("user:")
                or await known(principal.removeprefix("user:"))
            )
            warnings = admin.grant_warnings(
                who, what, known=lambda _e: is_known, directory="this Slack workspace"
            )
            if warnings and not confirmed:
                raise NeedsConfirmation(warnings, " ".join([*words, "--yes"]))

        def change() -> str:
            if op == "grant":
                return admin.grant(
                    actor=actor,
                    who=who,
                    what=what,
                    duration=span,
                    reason=reason,
                    warnings=warnings,
                ).message
            return admin.revoke(actor=actor, who=who, what=what, reason=reason).message

        return await asyncio.to_thread(change)
    if op == "list":
        target = await parse_who(args[0], resolve, channel_name, admin.config) if args else None
        rows = await asyncio.to_thread(admin.list_grants, target)
        if not rows:
            return "No active grants" + (f" for {escape(args[0])}." if args else ".")
        return "\n".join(
            f"#{g.id} {escape(g.principal)} → {escape(g.target)} (by {escape(g.granted_by)}"
            + (f", until {format_time(g.expires_at)}" if g.expires_at else "")
            + ")"
            for g in rows
        )
    if op == "who-can":
        if len(args) != 1:
            raise UsageError("Usage: `/concierge access who-can SOURCE`")
        lines = await asyncio.to_thread(admin.who_can, args[0])
        return f"Who can read *{escape(args[0])}*:\n" + "\n".join(f"• {escape(x)}" for x in lines)
    if op == "audit":
        try:
            n = int(args[0]) if args else 20
        except ValueError:
            raise UsageError("Usage: `/concierge access audit [N]`") from None

        def audit() -> str:
            events = admin.audit_log(min(n, 100))
            if not events:
                return "The audit log is empty."
            return "\n".join(
                f"{format_time(a.at)} {escape(a.actor)} {a.action} {escape(a.target or '')} "
                f"{escape(a.subject or '')}" + (f" because {escape(a.reason)}" if a.reason else "")
                for a in events
            )

        return await asyncio.to_thread(audit)
    raise AssertionError(op)
