"""Delivery claims in the database (``slack_deliveries``): the authority on whether a Slack
delivery (an event, a message, a signed command or click) was already taken by some
instance. A claim is one atomic statement on the table's primary key, so two instances
claiming the same key at once cannot both succeed. A claim expires: once past
``expires_at`` it no longer blocks (the next claim takes the row over) and the
``delivery_purge`` job deletes it."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from bot.store.models import SlackDelivery, utcnow

KEY_CHARS = 200  # the column's width


def claim(session: Session, key: str, ttl_s: float, now: datetime | None = None) -> bool:
    """True when this call took ``key`` (never claimed, or its claim expired); False when a
    live claim holds it."""
    return claim_all(session, [key], ttl_s, now) == {key[:KEY_CHARS]}


def claim_all(
    session: Session, keys: Iterable[str], ttl_s: float, now: datetime | None = None
) -> set[str]:
    """The keys this call took (never claimed, or their claim expired); a key a live claim
    holds is not among them. One ``INSERT … ON CONFLICT DO UPDATE … WHERE expired RETURNING``
    for all of them, so the several claims of one delivery (its event id, its message) cost
    one write: the database decides, whoever asks at the same moment. Keys are written in
    sorted order, so two such statements on PostgreSQL lock shared rows in the same order."""
    now = now or utcnow()
    wanted = sorted({k[:KEY_CHARS] for k in keys})
    if not wanted:
        return set()
    expires = now + timedelta(seconds=ttl_s)
    rows = [{"key": k, "seen_at": now, "expires_at": expires} for k in wanted]
    dialect = session.get_bind().dialect.name
    insert: Any = postgresql.insert if dialect == "postgresql" else sqlite.insert
    if dialect not in ("postgresql", "sqlite"):
        raise NotImplementedError(f"delivery claims on {dialect}")
    stmt = insert(SlackDelivery).values(rows)
    stmt = stmt.on_conflict_do_update(
        index_elements=[SlackDelivery.key],
        set_={"seen_at": stmt.excluded.seen_at, "expires_at": stmt.excluded.expires_at},
        where=SlackDelivery.expires_at <= now,
    ).returning(SlackDelivery.key)
    return {str(k) for k in session.execute(stmt).scalars()}


def purge(session: Session, now: datetime | None = None) -> int:
    """Delete the expired claims; returns how many."""
    result: Any = session.execute(
        delete(SlackDelivery).where(SlackDelivery.expires_at <= (now or utcnow()))
    )
    return int(result.rowcount or 0)
