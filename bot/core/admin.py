"""Access administration: grant, revoke, list, who-can and audit.

The same operations back ``app.py access`` (a trusted shell operator, audited as ``cli``)
and, later, the ``/concierge access`` slash command (where the actor must be an admin).
Every change and every refused attempt is written to the append-only audit log.
Functions are synchronous database work: async callers use ``asyncio.to_thread``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.config import EMAIL_RE, WorkspaceConfig, normalise_reader
from bot.core.access import source_token
from bot.core.offers import deciders, who_decides
from bot.core.types import Asker
from bot.core.who_can import describe_readers
from bot.errors import UsageError
from bot.store import repo
from bot.store.db import Store
from bot.store.models import AccessRequest, AuditEvent, Grant, utcnow
from bot.store.replay import audit_or_spool

DURATION_RE = re.compile(r"^\s*(\d{1,4})\s*(m|min|h|d|w)\s*$", re.IGNORECASE)
UNITS = {"m": "minutes", "min": "minutes", "h": "hours", "d": "days", "w": "weeks"}
MAX_REASON = 500
MAX_DURATION = timedelta(days=366)


class NotAllowed(UsageError):
    """A non-admin tried an admin operation (the attempt is audited)."""


NOT_A_MEMBER = (
    "Only full members of this workspace can do that: admin, owner, approver and reviewer "
    "powers are never given to guest or external accounts, whatever email they show."
)


def require_full_member(
    store: Store, asker: Asker, operation: str, target: str | None = None
) -> str:
    """The asker's email, when they may use admin, owner, approver or reviewer powers.

    Those powers are granted by email, and an email alone proves nothing: a guest or an
    external (Slack Connect) account can show anyone's. So the account must be a full member
    of our own team (``Asker.is_full_member``). Anyone else is refused, and the refusal is
    audited under the account's own id (not the email it claims).
    """
    if asker.is_full_member:
        return asker.email
    why = asker.not_a_member_because or "not a full member"
    audit_or_spool(
        store,
        actor=f"slack:{asker.ref}" if asker.ref else asker.email,
        action="refused",
        target=target,
        subject=operation,
        reason=f"not a full member of the team: {why}, showing {asker.email}",
        details={"claimed_email": asker.email, "account": asker.ref},
    )
    raise NotAllowed(NOT_A_MEMBER)


def parse_duration(text: str) -> timedelta:
    m = DURATION_RE.match(text)
    if not m:
        raise UsageError(f"{text!r} is not a duration: use for example 30d, 12h, 2w or 90m")
    value = timedelta(**{UNITS[m.group(2).lower()]: int(m.group(1))})
    if value <= timedelta(0) or value > MAX_DURATION:
        raise UsageError("a grant lasts between one minute and 366 days")
    return value


@dataclass(frozen=True)
class Outcome:
    message: str
    grant: Grant | None = None


class AccessAdmin:
    def __init__(
        self, store: Store, config: WorkspaceConfig, *, also_admins: frozenset[str] = frozenset()
    ) -> None:
        self.store = store
        self.config = config
        # People who are admins here besides the config's (Slack workspace admins, when
        # the config's slack_admins is true).
        self.also_admins = also_admins

    # -- parsing ---------------------------------------------------------------------------
    def parse_who(self, who: str) -> str:
        value = who.strip()
        if value.startswith("#"):
            value = "channel:" + value[1:]
        if EMAIL_RE.match(value):
            return "user:" + value.lower()
        if value.lower().startswith(("group:", "channel:")):
            try:
                return normalise_reader(value)
            except ValueError as exc:
                raise UsageError(str(exc)) from None
        raise UsageError(f"{who!r}: WHO is an email, group:NAME or channel:NAME")

    def parse_what(self, what: str) -> str:
        value = what.strip().lower()
        if value.startswith("role:"):
            name = value[5:]
            if name not in self.config.roles:
                known = ", ".join(sorted(self.config.roles)) or "none"
                raise UsageError(f"there is no role {name!r} (roles: {known})")
            return value
        if self.config.source(value) is None:
            known = ", ".join(s.name for s in self.config.sources)
            raise UsageError(f"there is no source {what!r} (sources: {known})")
        return value

    @staticmethod
    def _reason(reason: str | None) -> str | None:
        if reason is None:
            return None
        reason = " ".join(reason.split())
        if len(reason) > MAX_REASON:
            raise UsageError(f"the reason is {len(reason)} characters; keep it under {MAX_REASON}")
        return reason or None

    # -- checks ----------------------------------------------------------------------------
    def is_admin(self, actor: str) -> bool:
        return actor.lower() in self.config.admins or actor.lower() in self.also_admins

    def require_admin(self, actor: str, operation: str, target: str | None = None) -> None:
        """Refuse (and audit the refusal) unless ``actor`` is an admin."""
        if self.is_admin(actor):
            return
        audit_or_spool(
            self.store,
            actor=actor,
            action="refused",
            target=target,
            subject=operation,
            reason="not an admin",
        )
        slack = " and the Slack workspace's admins and owners" if self.config.slack_admins else ""
        raise NotAllowed(
            f"Only admins can {operation}. Admins: {', '.join(self.config.admins) or 'none'}"
            f"{slack}."
        )

    # -- operations ------------------------------------------------------------------------
    def grant(
        self,
        *,
        actor: str,
        who: str,
        what: str,
        duration: timedelta | None = None,
        reason: str | None = None,
        warnings: Sequence[str] = (),
    ) -> Outcome:
        """Grant ``what`` to ``who``. ``warnings``: those of ``grant_warnings`` the actor saw
        and confirmed; kept in the audit row."""
        principal = self.parse_who(who)
        target = self.parse_what(what)
        why = self._reason(reason)
        expires = utcnow() + duration if duration else None
        with self.store.session() as s:
            existing = repo.find_active_grant(s, principal, target)
            if existing is not None:
                repo.revoke_grant(s, existing, actor=actor)
            grant = repo.add_grant(
                s, principal=principal, target=target, actor=actor, reason=why, expires_at=expires
            )
            repo.audit(
                s,
                actor=actor,
                action="grant",
                target=principal,
                subject=target,
                reason=why,
                details={
                    "grant_id": grant.id,
                    "expires_at": expires.isoformat() if expires else None,
                    "replaces": existing.id if existing else None,
                    **({"confirmed_warnings": list(warnings)} if warnings else {}),
                },
            )
        until = f" until {expires:%Y-%m-%d %H:%M} UTC" if expires else ""
        return Outcome(f"Granted {_label(target)} to {_label(principal)}{until}.", grant)

    def revoke(self, *, actor: str, who: str, what: str, reason: str | None = None) -> Outcome:
        principal = self.parse_who(who)
        target = self.parse_what(what)
        why = self._reason(reason)
        with self.store.session() as s:
            existing = repo.find_active_grant(s, principal, target)
            if existing is None:
                hint = self._config_hint(principal, target)
                raise UsageError(
                    f"{_label(principal)} has no active grant of {_label(target)}.{hint}"
                )
            repo.revoke_grant(s, existing, actor=actor)
            repo.audit(
                s,
                actor=actor,
                action="revoke",
                target=principal,
                subject=target,
                reason=why,
                details={"grant_id": existing.id},
            )
        return Outcome(f"Revoked {_label(target)} from {_label(principal)}.", existing)

    def _config_hint(self, principal: str, target: str) -> str:
        """Explain where access comes from when there is no grant to revoke."""
        held = {principal}
        if principal.startswith("user:"):
            person = next((p for p in self.config.people if p.email == principal[5:]), None)
            if person is not None and not person.guest:
                held |= {f"group:{g}" for g in person.groups}
        held |= {f"role:{n}" for n, r in self.config.roles.items() if held & set(r.members)}
        if target.startswith("role:"):
            return (
                " Their membership comes from the config file; change it there."
                if target in held
                else ""
            )
        source = self.config.source(target)
        if source and (source.is_public or held & source.reader_tokens):
            return " Their access comes from the config file's readers; change it there."
        return ""

    def list_grants(self, filter_: str | None = None) -> list[Grant]:
        with self.store.session() as s:
            rows = repo.active_grants(s)
        if not filter_:
            return rows
        value = filter_.strip()
        if self.config.source(value.lower()) or value.lower().startswith("role:"):
            target = self.parse_what(value)
            return [g for g in rows if g.target == target]
        principal = self.parse_who(value)
        return [g for g in rows if g.principal == principal]

    def grant_warnings(
        self, who: str, what: str, *, known: Callable[[str], bool], directory: str
    ) -> list[str]:
        """What an admin should look at twice before this grant is made: a person the
        directory does not know (``known(email)``; ``directory`` says which one), a group
        nobody is in, and confidential text for a channel, where everyone in it reads the
        answers. Empty when there is nothing to confirm."""
        principal = self.parse_who(who)
        target = self.parse_what(what)
        found: list[str] = []
        if principal.startswith("user:") and not known(principal[5:]):
            found.append(
                f"{principal[5:]} is not in {directory}: check the address (a grant to a "
                "mistyped email gives nobody access, and anyone who later holds that address "
                "gets it)."
            )
        if principal.startswith("group:") and not self._group_exists(principal[6:]):
            found.append(
                f"nobody is in {principal}: no person in the config has that group and no "
                "Slack user group is bound to it."
            )
        if principal.startswith("channel:"):
            secret = self._confidential(target)
            if secret:
                what_ = ", ".join(secret)
                found.append(
                    f"{what_} {'is' if len(secret) == 1 else 'are'} confidential, and "
                    f"{principal} is a shared audience: answers posted there may quote "
                    f"{'it' if len(secret) == 1 else 'them'} to everyone in the channel, "
                    "including people who may not read it themselves."
                )
        return found

    def _group_exists(self, name: str) -> bool:
        token = f"group:{name}"
        return (
            any(name in p.groups for p in self.config.people)
            or name in self.config.slack_groups
            or any(token in r.members for r in self.config.roles.values())
        )

    def _confidential(self, target: str) -> list[str]:
        """The confidential sources ``target`` (a source, or a role) gives access to."""
        if target.startswith("role:"):
            sources = [s for s in self.config.sources if target in s.reader_tokens]
        else:
            sources = [s for s in self.config.sources if s.name == target]
        return [s.name for s in sources if s.data_class not in ("public", "internal")]

    def who_can(self, source_name: str) -> list[str]:
        """Lines describing who may read a source (bot/core/who_can.py)."""
        target = self.parse_what(source_name)
        if target.startswith("role:"):
            raise UsageError("who-can takes a source name")
        source = self.config.source(target)
        assert source is not None
        with self.store.session() as s:
            grants = repo.active_grants(s)
        return describe_readers(self.config, source, grants)

    def audit_log(self, limit: int = 20) -> list[AuditEvent]:
        if limit < 1 or limit > 10_000:
            raise UsageError("audit shows between 1 and 10000 rows")
        with self.store.session() as s:
            return repo.recent_audit(s, limit)

    def source_grant_token(self, name: str) -> str:
        return source_token(name)


def _label(token: str) -> str:
    return token[5:] if token.startswith("user:") else token


def format_time(value: datetime | None) -> str:
    v = repo.as_utc(value)
    return f"{v:%Y-%m-%d %H:%M} UTC" if v else "never"


REQUEST_GRANT = timedelta(days=90)


class Requests:
    """Access requests: anyone may ask for a requestable source; its owner (or an admin, when
    the source has no owner) approves or denies. A source that is not requestable answers
    exactly like one that does not exist."""

    def __init__(self, admin: AccessAdmin) -> None:
        self.admin = admin
        self.config = admin.config
        self.store = admin.store

    def approvers(self, source_name: str) -> list[str]:
        source = self.config.source(source_name)
        if source is not None and source.owner:
            return [source.owner]
        return list(self.config.admins)

    def create(
        self, *, requester: str, source_name: str, reason: str | None, already_readable: bool
    ) -> AccessRequest:
        name = source_name.strip().lower()
        source = self.config.source(name)
        if source is None or not source.requestable:
            raise UsageError(f"There is no source called {source_name!r} that you can ask for.")
        why = self.admin._reason(reason)
        if not why:
            raise UsageError("Say why you need it: request SOURCE because …")
        if already_readable:
            raise UsageError(f"You can already read {name}.")
        with self.store.session() as s:
            pending = repo.pending_request(s, requester=requester, source=name)
            if pending is not None:
                return pending
            request = repo.add_request(
                s, requester=requester, source=name, reason=why, approvers=self.approvers(name)
            )
            repo.audit(
                s,
                actor=requester,
                action="request",
                target=f"user:{requester}",
                subject=name,
                reason=why,
                details={"request_id": request.id},
            )
            return request

    def decide(
        self, *, request_id: int, actor: str, approve: bool, reason: str | None = None
    ) -> tuple[AccessRequest, Grant | None]:
        why = self.admin._reason(reason)
        with self.store.session() as s:
            request = repo.get_request(s, request_id)
            if request is None:
                raise UsageError(f"There is no access request #{request_id}.")
            allowed = actor in (request.approvers or []) or self.admin.is_admin(actor)
            if not allowed:
                repo.audit(
                    s,
                    actor=actor,
                    action="refused",
                    target=f"user:{request.requester}",
                    subject=request.source,
                    reason="not an approver",
                    details={"request_id": request.id},
                )
        if not allowed:
            # Everyone who may decide, by name: the approvers asked, the owner and the admins.
            source = self.config.source(request.source)
            others = [p for p in request.approvers or [] if p not in deciders(self.config, source)]
            who = who_decides(self.config, source) + "".join(f" or {p}" for p in others)
            raise NotAllowed(f"Only {who} can decide request #{request_id}.")
        status = "approved" if approve else "denied"
        # Claim the decision first (a conditional UPDATE on "pending"): of two approvers
        # clicking at once, one decides and the other is told; no second grant is made.
        with self.store.session() as s:
            claimed = repo.claim_request(s, request_id, status=status, actor=actor, reason=why)
        if not claimed:
            with self.store.session() as s:
                request = repo.get_request(s, request_id) or request
            raise UsageError(
                f"Request #{request_id} was already {request.status} by {request.decided_by}."
            )
        grant = None
        if approve:
            try:
                grant = self.admin.grant(
                    actor=actor,
                    who=request.requester,
                    what=request.source,
                    duration=REQUEST_GRANT,
                    reason=why or f"approved request #{request_id}",
                ).grant
            except Exception:
                with self.store.session() as s:  # the grant failed: the request stays open
                    repo.reopen_request(s, request_id)
                raise
        with self.store.session() as s:
            request = repo.decide_request(
                s,
                request_id,
                status=status,
                actor=actor,
                reason=why,
                grant_id=grant.id if grant else None,
            )
            repo.audit(
                s,
                actor=actor,
                action="approve" if approve else "deny",
                target=f"user:{request.requester}",
                subject=request.source,
                reason=why,
                details={"request_id": request.id, "grant_id": grant.id if grant else None},
            )
        return request, grant

    def pending(self) -> list[AccessRequest]:
        with self.store.session() as s:
            return repo.pending_requests(s)
