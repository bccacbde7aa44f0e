"""Small repository functions, each taking the session of the unit of work it belongs to."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bot.core.access import ActiveGrant
from bot.core.types import ExchangeResult
from bot.store import chain
from bot.store.models import (
    AccessRequest,
    AuditEvent,
    Exchange,
    Feedback,
    Grant,
    Review,
    VerifiedAnswer,
    utcnow,
)
from bot.telemetry import FEEDBACK


def _aware(value: datetime | None) -> datetime | None:
    """SQLite returns naive datetimes; everything we store is UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


# NUL (PostgreSQL refuses it in text) and surrogate code points (no UTF-8 form: SQLite and
# psycopg refuse them). A valid pair never appears in a Python str, so any is a lone one.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable(value: Any) -> Any:
    """``value`` with every string in it made storable in both databases (each unstorable
    code point becomes U+FFFD). Applied here, at the store boundary, to every text we write,
    so that no caller can forget it; what the person saw is not changed."""
    if isinstance(value, str):
        return _UNSTORABLE.sub("\ufffd", value)
    if isinstance(value, list | tuple):
        return [storable(v) for v in value]
    if isinstance(value, dict):
        return {storable(k): storable(v) for k, v in value.items()}
    return value


def exchange_row(result: ExchangeResult, at: datetime | None = None) -> dict[str, Any]:
    """The exchange's columns as plain, storable JSON values (also what the spool keeps)."""
    return storable(
        {
            "id": result.exchange_id,
            "created_at": (at or utcnow()).isoformat(),
            "request_key": result.request_key,
            "asker": result.asker,
            "asker_ref": result.asker_ref,
            "surface": result.surface,
            "channel": result.channel,
            "thread": result.thread,
            "audience": result.audience,
            "question": result.question,
            "answer": result.answer,
            "outcome": result.outcome,
            "sources": list(result.sources),
            "sources_withheld": list(result.sources_withheld),
            "sources_searched": list(result.sources_searched),
            "prompt_name": result.prompt_name,
            "prompt_version": result.prompt_version,
            "models_tried": list(result.models_tried),
            "attempts": [a.as_dict() for a in result.attempts],
            "model": result.model,
            "input_tokens": result.input_tokens,
            "output_tokens": result.output_tokens,
            "tokens_estimated": result.tokens_estimated,
            "cost_usd": result.cost_usd,
            "ttft_ms": result.ttft_ms,
            "total_ms": result.total_ms,
            "error": result.error,
            "labels": result.labels.to_json(),
            "redactions": dict(result.redactions),
            "delivery": result.delivery,
        }
    )


def record_exchange(session: Session, result: ExchangeResult) -> bool:
    """Insert the exchange once. Returns False if its request key was already recorded."""
    return insert_exchange(session, exchange_row(result))


def insert_exchange(session: Session, values: dict[str, Any]) -> bool:
    """Insert one exchange from ``exchange_row`` values. False (nothing written) when its id
    or its request key is already recorded: a replayed record, or a retried delivery."""
    values = storable(values)
    if session.get(Exchange, values["id"]) is not None:
        return False
    row = Exchange(**{**values, "created_at": datetime.fromisoformat(values["created_at"])})
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:
        if values.get("request_key") is None:
            raise
        return False
    return True


def get_exchange(session: Session, exchange_id: str) -> Exchange | None:
    return session.get(Exchange, exchange_id)


def set_vote(
    session: Session,
    *,
    exchange_id: str,
    voter: str,
    vote: int,
    reason: str | None = None,
    category: str | None = None,
    at: datetime | None = None,
) -> Feedback:
    """One vote per person per exchange: a second vote replaces the first. ``at`` is when the
    vote was cast (a spooled vote, replayed later): a newer vote already stored is kept."""
    if vote not in (1, -1):
        raise ValueError("vote must be +1 or -1")
    reason, category = storable(reason), storable(category)
    existing = session.scalar(
        select(Feedback).where(Feedback.exchange_id == exchange_id, Feedback.voter == voter)
    )
    if existing is None:
        existing = Feedback(exchange_id=exchange_id, voter=voter, vote=vote)
        if at is not None:
            existing.created_at = at
        session.add(existing)
    elif at is not None and (_aware(existing.updated_at) or at) > at:
        return existing
    existing.vote = vote
    existing.reason = reason
    existing.category = category
    existing.updated_at = at or utcnow()
    session.flush()
    FEEDBACK.labels("up" if vote > 0 else "down").inc()
    return existing


def active_grants(session: Session, now: datetime | None = None) -> list[Grant]:
    """Grants neither revoked nor expired. Expiry is compared in Python, in UTC, because
    SQLite keeps datetimes without their zone."""
    now = now or utcnow()
    rows = session.scalars(select(Grant).where(Grant.revoked_at.is_(None)).order_by(Grant.id)).all()
    return [r for r in rows if r.expires_at is None or (_aware(r.expires_at) or now) > now]


def active_grant_pairs(session: Session) -> list[ActiveGrant]:
    return [ActiveGrant(g.principal, g.target) for g in active_grants(session)]


def find_active_grant(session: Session, principal: str, target: str) -> Grant | None:
    return next(
        (g for g in active_grants(session) if g.principal == principal and g.target == target),
        None,
    )


def add_grant(
    session: Session,
    *,
    principal: str,
    target: str,
    actor: str,
    reason: str | None,
    expires_at: datetime | None,
) -> Grant:
    grant = Grant(
        principal=principal,
        target=target,
        granted_by=actor,
        reason=reason,
        expires_at=expires_at,
    )
    session.add(grant)
    session.flush()
    return grant


def revoke_grant(session: Session, grant: Grant, *, actor: str) -> None:
    grant.revoked_at = utcnow()
    grant.revoked_by = actor
    session.flush()


def audit(
    session: Session,
    *,
    actor: str,
    action: str,
    target: str | None = None,
    subject: str | None = None,
    reason: str | None = None,
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append one row to the audit log, chained to the row before it (bot.store.chain).

    The chain lock is held from reading the last row until the transaction ends, so two
    instances appending at once wait for each other instead of linking to the same row. The
    id is the last id + 1 (not a sequence), so ids have no gaps: a missing id is a deleted
    row. The database refuses changes to existing rows and rows without a hash.
    """
    _lock_chain(session)
    last_id, prev_hash = _chain_head(session)
    fields = chain.ChainFields(
        id=last_id + 1,
        at=utcnow(),
        actor=storable(actor),
        action=storable(action),
        target=storable(target),
        subject=storable(subject),
        reason=storable(reason),
        details=chain.plain_json(storable(details)),
    )
    row = AuditEvent(
        **fields._asdict(), prev_hash=prev_hash, row_hash=chain.row_hash(prev_hash, fields)
    )
    session.add(row)
    session.flush()
    return row


def _lock_chain(session: Session) -> None:
    """Serialise appends: a transaction-scoped advisory lock on PostgreSQL; on SQLite the
    database's write lock, taken now (BEGIN IMMEDIATE) unless this transaction has already
    written, because a plain read would run outside any transaction and could go stale."""
    conn = session.connection()
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": chain.LOCK_KEY})
    elif conn.dialect.name == "sqlite":
        raw = conn.connection.dbapi_connection
        if not getattr(raw, "in_transaction", True):
            conn.exec_driver_sql("BEGIN IMMEDIATE")


def _chain_head(session: Session) -> tuple[int, str]:
    """The last row's id and the hash the next row links to (the genesis hash when empty)."""
    last = session.execute(
        select(AuditEvent.id, AuditEvent.row_hash).order_by(AuditEvent.id.desc()).limit(1)
    ).first()
    if last is None:
        return 0, chain.GENESIS
    if last.row_hash is not None:
        return int(last.id), str(last.row_hash)
    # The last row has no hash (written behind our back; verify reports it): link past it.
    hashed = session.scalar(
        select(AuditEvent.row_hash)
        .where(AuditEvent.row_hash.is_not(None))
        .order_by(AuditEvent.id.desc())
        .limit(1)
    )
    return int(last.id), hashed or chain.GENESIS


def has_spooled_audit(session: Session, entry_id: str, *, action: str, since: datetime) -> bool:
    """Whether the audit row of spool entry ``entry_id`` is already in the log (its details
    carry ``spool_id``): replaying it again would append it twice."""
    rows = session.scalars(
        select(AuditEvent.details).where(AuditEvent.action == action, AuditEvent.at >= since)
    )
    return any(isinstance(d, dict) and d.get("spool_id") == entry_id for d in rows)


def recent_audit(session: Session, limit: int = 20) -> list[AuditEvent]:
    rows = session.scalars(select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)).all()
    return list(reversed(rows))


def audit_rows(session: Session, since: datetime | None = None) -> Iterator[AuditEvent]:
    """Every audit row in id order (from ``since`` on), streamed in batches."""
    query = select(AuditEvent).order_by(AuditEvent.id).execution_options(yield_per=1000)
    if since is not None:
        query = query.where(AuditEvent.at >= since)
    yield from session.scalars(query)


def as_utc(value: datetime | None) -> datetime | None:
    return _aware(value)


def thread_turns(session: Session, *, channel: str, thread: str, limit: int) -> list[Exchange]:
    """Earlier exchanges of one thread, oldest first, as recorded for that thread's audience
    (a private fuller answer is recorded in the asker's DM, never in the public thread)."""
    rows = session.scalars(
        select(Exchange)
        .where(Exchange.channel == channel, Exchange.thread == thread)
        .where(Exchange.outcome.in_(("answered", "incomplete", "no_answer")))
        .order_by(Exchange.created_at.desc())
        .limit(limit)
    ).all()
    return list(reversed(rows))


def add_request(
    session: Session, *, requester: str, source: str, reason: str | None, approvers: list[str]
) -> AccessRequest:
    row = AccessRequest(requester=requester, source=source, reason=reason, approvers=approvers)
    session.add(row)
    session.flush()
    return row


def get_request(session: Session, request_id: int) -> AccessRequest | None:
    return session.get(AccessRequest, request_id)


def pending_request(session: Session, *, requester: str, source: str) -> AccessRequest | None:
    return session.scalar(
        select(AccessRequest).where(
            AccessRequest.requester == requester,
            AccessRequest.source == source,
            AccessRequest.status == "pending",
        )
    )


def pending_requests(session: Session) -> list[AccessRequest]:
    return list(
        session.scalars(
            select(AccessRequest)
            .where(AccessRequest.status == "pending")
            .order_by(AccessRequest.id)
        )
    )


def decide_request(
    session: Session,
    request_id: int,
    *,
    status: str,
    actor: str,
    reason: str | None,
    grant_id: int | None,
) -> AccessRequest:
    row = session.get(AccessRequest, request_id)
    assert row is not None
    row.status = status
    row.decided_at = utcnow()
    row.decided_by = actor
    row.decision_reason = reason
    row.grant_id = grant_id
    session.flush()
    return row


def claim_request(
    session: Session, request_id: int, *, status: str, actor: str, reason: str | None
) -> bool:
    """Decide a pending request; False when it was no longer pending."""
    changed = session.execute(
        update(AccessRequest)
        .where(AccessRequest.id == request_id, AccessRequest.status == "pending")
        .values(status=status, decided_by=actor, decided_at=utcnow(), decision_reason=reason)
    ).rowcount  # type: ignore[attr-defined]
    return bool(changed)


def reopen_request(session: Session, request_id: int) -> None:
    session.execute(
        update(AccessRequest)
        .where(AccessRequest.id == request_id)
        .values(status="pending", decided_by=None, decided_at=None, decision_reason=None)
    )


def add_request_notice(session: Session, request_id: int, notice: dict[str, Any]) -> None:
    row = session.get(AccessRequest, request_id)
    if row is not None:
        row.notices = [*(row.notices or []), notice]
        session.flush()


def cost_since(session: Session, since: datetime, asker: str | None = None) -> float:
    """Model cost recorded since ``since``, for one person or (None) for everyone."""
    query = select(func.coalesce(func.sum(Exchange.cost_usd), 0.0)).where(
        Exchange.created_at >= since
    )
    if asker is not None:
        query = query.where(Exchange.asker == asker)
    return float(session.scalar(query) or 0.0)


def expire_grants(session: Session, now: datetime | None = None) -> list[Grant]:
    """Grants whose expiry has passed and that have no expiry audit row yet: write one each.
    (They stopped working at their expiry already; this makes it visible in the audit log.)"""
    now = now or utcnow()
    rows = session.scalars(
        select(Grant).where(
            Grant.revoked_at.is_(None),
            Grant.expires_at.is_not(None),
            Grant.expiry_audited_at.is_(None),
        )
    ).all()
    expired = [g for g in rows if (_aware(g.expires_at) or now) <= now]
    for g in expired:
        audit(
            session,
            actor="system",
            action="expire",
            target=g.principal,
            subject=g.target,
            reason=f"granted until {_aware(g.expires_at):%Y-%m-%d %H:%M} UTC",
            details={"grant_id": g.id, "granted_by": g.granted_by},
        )
        g.expiry_audited_at = now
    session.flush()
    return expired


def purge_text_before(session: Session, cutoff: datetime) -> int:
    """Remove question and answer text (and the prompts each model attempt received,
    free-text feedback and review drafts) of exchanges older than ``cutoff``; counts,
    outcomes, costs and latencies stay for reports."""
    old = select(Exchange.id).where(Exchange.created_at < cutoff)
    for row in session.scalars(
        select(Exchange).where(Exchange.created_at < cutoff, Exchange.question.is_not(None))
    ):
        if any(isinstance(a, dict) and a.get("prompt") for a in row.attempts or []):
            row.attempts = [
                {**a, "prompt": []} if isinstance(a, dict) else a for a in row.attempts or []
            ]
    session.flush()
    done = session.execute(
        update(Exchange)
        .where(Exchange.created_at < cutoff)
        .where((Exchange.question.is_not(None)) | (Exchange.answer.is_not(None)))
        .values(question=None, answer=None)
        # Rows loaded above hold SQLite's naive times: no in-Python evaluation against them.
        .execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]
    session.execute(update(Feedback).where(Feedback.exchange_id.in_(old)).values(reason=None))
    session.execute(
        update(Review)
        .where(Review.exchange_id.in_(old))
        .values(question=None, draft=None, final=None, reason=None)
    )
    return int(done or 0)


def add_review(session: Session, review: Review) -> Review:
    for name in ("question", "draft", "final", "reason"):
        if isinstance(getattr(review, name, None), str):
            setattr(review, name, storable(getattr(review, name)))
    session.add(review)
    session.flush()
    return review


def hold_review(session: Session, review: Review, happened_at: str | None = None) -> Review:
    """Store a held draft (or a thumbs-down item) with its audit row. ``happened_at``: when
    it was held, for one written later from the spool."""
    add_review(session, review)
    details: dict[str, Any] = {"review_id": review.id, "exchange_id": review.exchange_id}
    if happened_at is not None:
        details["happened_at"] = happened_at
    audit(
        session,
        actor="concierge",
        action=f"review.{review.kind}",
        target=review.asker,
        subject=",".join(review.sources),
        reason=review.reason,
        details=details,
    )
    return review


def has_review(session: Session, exchange_id: str, kind: str) -> bool:
    found = session.scalar(
        select(Review.id).where(Review.exchange_id == exchange_id, Review.kind == kind).limit(1)
    )
    return found is not None


def get_review(session: Session, review_id: int) -> Review | None:
    return session.get(Review, review_id)


def pending_reviews(session: Session, kind: str | None = None) -> list[Review]:
    query = select(Review).where(Review.status == "pending").order_by(Review.id)
    if kind:
        query = query.where(Review.kind == kind)
    return list(session.scalars(query))


def decide_review(
    session: Session,
    review_id: int,
    *,
    status: str,
    actor: str,
    final: str | None = None,
    reason: str | None = None,
) -> Review | None:
    """Move a pending review to ``status``; None when it was decided already (a second click,
    another reviewer) -- the conditional UPDATE makes the first decision the only one."""
    values: dict[str, Any] = {"status": status, "decided_by": actor, "decided_at": utcnow()}
    if final is not None:
        values["final"] = final
    if reason is not None:
        values["reason"] = reason
    changed = session.execute(
        update(Review).where(Review.id == review_id, Review.status == "pending").values(**values)
    ).rowcount  # type: ignore[attr-defined]
    if not changed:
        return None
    session.flush()
    review = session.get(Review, review_id)
    if review is not None:
        session.refresh(review)
    return review


def active_verified(session: Session) -> list[VerifiedAnswer]:
    return list(session.scalars(select(VerifiedAnswer).where(VerifiedAnswer.status == "active")))


def audit_version(session: Session) -> int:
    """The newest audit row id: it moves with every access change."""
    return int(session.scalar(select(func.max(AuditEvent.id))) or 0)
