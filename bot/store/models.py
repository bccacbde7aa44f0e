"""SQLAlchemy 2 typed models. Schema changes go through Alembic migrations only."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSON, list[Any]: JSON}


class Exchange(Base):
    """One question and what happened to it: the unit of audit, feedback and reporting."""

    __tablename__ = "exchanges"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    request_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    asker: Mapped[str] = mapped_column(String(320))
    asker_ref: Mapped[str | None] = mapped_column(String(64))
    surface: Mapped[str] = mapped_column(String(20))
    channel: Mapped[str | None] = mapped_column(String(200))
    thread: Mapped[str | None] = mapped_column(String(200))
    audience: Mapped[str] = mapped_column(String(20))
    question: Mapped[str | None] = mapped_column(Text)
    answer: Mapped[str | None] = mapped_column(Text)
    outcome: Mapped[str] = mapped_column(String(20))
    sources: Mapped[list[Any]] = mapped_column(default=list)
    sources_withheld: Mapped[list[Any]] = mapped_column(default=list)
    sources_searched: Mapped[list[Any]] = mapped_column(default=list)
    prompt_name: Mapped[str] = mapped_column(String(100))
    prompt_version: Mapped[str] = mapped_column(String(20))
    models_tried: Mapped[list[Any]] = mapped_column(default=list)
    attempts: Mapped[list[Any]] = mapped_column(default=list)
    model: Mapped[str | None] = mapped_column(String(100))
    input_tokens: Mapped[int] = mapped_column(Integer, default=0)
    output_tokens: Mapped[int] = mapped_column(Integer, default=0)
    tokens_estimated: Mapped[bool] = mapped_column(default=False)
    cost_usd: Mapped[float] = mapped_column(Float, default=0.0)
    ttft_ms: Mapped[float | None] = mapped_column(Float)
    total_ms: Mapped[float] = mapped_column(Float, default=0.0)
    error: Mapped[str | None] = mapped_column(Text)
    # What the question and answer text carry (bot.core.labels.Labels); NULL = unknown.
    labels: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # What redaction replaced in the stored question (detector -> count).
    redactions: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # delivered | partial | failed: what the person saw (NULL: recorded before 0008).
    delivery: Mapped[str | None] = mapped_column(String(20), nullable=True)

    __table_args__ = (
        Index("ix_exchanges_created_at", "created_at"),
        Index("ix_exchanges_asker", "asker"),
        Index("ix_exchanges_channel_thread", "channel", "thread"),
    )


class Feedback(Base):
    """One vote per person per exchange; a changed vote replaces the old one."""

    __tablename__ = "feedback"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    exchange_id: Mapped[str] = mapped_column(ForeignKey("exchanges.id", ondelete="CASCADE"))
    voter: Mapped[str] = mapped_column(String(320))
    vote: Mapped[int] = mapped_column(Integer)  # +1 or -1
    category: Mapped[str | None] = mapped_column(String(50))
    reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    __table_args__ = (UniqueConstraint("exchange_id", "voter", name="uq_feedback_vote"),)


class Grant(Base):
    """Access given by an admin: a principal may read a source, or holds a role."""

    __tablename__ = "grants"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    principal: Mapped[str] = mapped_column(String(330))  # user:x | group:x | channel:x
    target: Mapped[str] = mapped_column(String(120))  # source name | role:NAME
    granted_by: Mapped[str] = mapped_column(String(320))
    reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_by: Mapped[str | None] = mapped_column(String(320))
    expiry_audited_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (Index("ix_grants_principal_target", "principal", "target"),)


class AuditEvent(Base):
    """Append-only: the database refuses UPDATE and DELETE (triggers in the migrations), and
    each row carries a hash chain (bot.store.chain) so that a rewrite behind the database's
    back shows in ``app.py audit verify``. Rows are written only by ``repo.audit``."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    actor: Mapped[str] = mapped_column(String(320))
    action: Mapped[str] = mapped_column(String(50))
    target: Mapped[str | None] = mapped_column(String(330))
    subject: Mapped[str | None] = mapped_column(String(330))
    reason: Mapped[str | None] = mapped_column(Text)
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # The previous row's row_hash (64 zeros for the first row) and this row's own hash.
    # NULL only if written outside repo.audit, which the database refuses since 0006.
    prev_hash: Mapped[str | None] = mapped_column(String(64))
    row_hash: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (Index("ix_audit_at", "at"),)


class SlackDelivery(Base):
    """A claimed Slack delivery key (event id, channel+ts, request signature)."""

    __tablename__ = "slack_deliveries"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (Index("ix_slack_deliveries_expires_at", "expires_at"),)


class AccessRequest(Base):
    """Someone asked to read a requestable source; its owner (or an admin) decides."""

    __tablename__ = "access_requests"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    requester: Mapped[str] = mapped_column(String(320))
    source: Mapped[str] = mapped_column(String(120))
    reason: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20), default="pending")
    approvers: Mapped[list[Any]] = mapped_column(default=list)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    decided_by: Mapped[str | None] = mapped_column(String(320))
    decision_reason: Mapped[str | None] = mapped_column(Text)
    grant_id: Mapped[int | None] = mapped_column(Integer)
    notices: Mapped[list[Any]] = mapped_column(default=list)  # where approvers were asked

    __table_args__ = (Index("ix_access_requests_status", "status"),)


class JobRun(Base):
    """One run of a scheduled job for one trigger time ("slot"). The unique (job, slot) pair is
    the claim: of several instances, only the one whose insert succeeds runs the job."""

    __tablename__ = "job_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job: Mapped[str] = mapped_column(String(50))
    slot: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    instance: Mapped[str] = mapped_column(String(100))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    status: Mapped[str] = mapped_column(String(20), default="running")  # running | ok | failed
    late_s: Mapped[float] = mapped_column(Float, default=0.0)
    missed: Mapped[int] = mapped_column(Integer, default=0)  # earlier slots not run (downtime)
    detail: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        UniqueConstraint("job", "slot", name="uq_job_runs_job_slot"),
        Index("ix_job_runs_started_at", "started_at"),
    )


class Review(Base):
    """An item in an owner's review queue: a held draft (``draft``: the source requires review
    before answers are shared) or a voted-down answer (``feedback``) to correct."""

    __tablename__ = "reviews"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(20))  # draft | feedback
    exchange_id: Mapped[str] = mapped_column(ForeignKey("exchanges.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(20), default="pending")
    # pending | approved | edited | rejected (drafts); verified | dismissed (feedback)
    sources: Mapped[list[Any]] = mapped_column(default=list)
    reviewers: Mapped[list[Any]] = mapped_column(default=list)  # emails
    review_channel: Mapped[str | None] = mapped_column(String(200))
    question: Mapped[str | None] = mapped_column(Text)
    draft: Mapped[str | None] = mapped_column(Text)
    citations: Mapped[list[Any]] = mapped_column(default=list)
    final: Mapped[str | None] = mapped_column(Text)
    reason: Mapped[str | None] = mapped_column(Text)  # thumbs-down reason, or the reviewer's
    asker: Mapped[str] = mapped_column(String(320))
    asker_ref: Mapped[str | None] = mapped_column(String(64))
    channel: Mapped[str | None] = mapped_column(String(200))  # where the asker is answered
    thread: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    decided_by: Mapped[str | None] = mapped_column(String(320))
    reminded_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    reminders: Mapped[int] = mapped_column(Integer, default=0)
    notices: Mapped[list[Any]] = mapped_column(default=list)  # where reviewers were asked
    # What the draft / answer text carries; who may be shown it is decided on these.
    labels: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)

    __table_args__ = (Index("ix_reviews_status", "status"),)


class VerifiedAnswer(Base):
    """An owner's corrected answer, preferred for the same question until a cited document
    changes (``fingerprints`` no longer match)."""

    __tablename__ = "verified_answers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    question: Mapped[str] = mapped_column(Text)
    question_key: Mapped[str] = mapped_column(String(500))
    answer: Mapped[str] = mapped_column(Text)
    citations: Mapped[list[Any]] = mapped_column(default=list)
    fingerprints: Mapped[dict[str, Any]] = mapped_column(default=dict)
    verified_by: Mapped[str] = mapped_column(String(320))
    verified_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    status: Mapped[str] = mapped_column(String(20), default="active")  # active | stale
    stale_reason: Mapped[str | None] = mapped_column(Text)
    review_id: Mapped[int | None] = mapped_column(Integer)
    # What the verified text carries (its cited passages' labels).
    labels: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)

    __table_args__ = (Index("ix_verified_answers_key", "question_key"),)
