"""Delivery claims in the database (``slack_deliveries``): the authority on whether a Slack
delivery (an event, a message, a signed command or click) was already taken by some
instance. A claim is one atomic statement on the table's primary key, so two instances
claiming the same key at once cannot both succeed. A claim expires: once past
``expires_at`` it no longer blocks (the next claim takes the row over) and the
``delivery_purge`` job deletes it."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from bot.store.models import SlackDelivery, utcnow

KEY_CHARS = 200  # the column's width


def claim(session: Session, key: str, ttl_s: float, now: datetime | None = None) -> bool:
    """True when this call took ``key`` (never claimed, or its claim expired); False when a
    live claim holds it. One ``INSERT … ON CONFLICT DO UPDATE … WHERE expired RETURNING``:
    the database decides, whoever asks at the same moment."""
    now = now or utcnow()
    values = {"key": key[:KEY_CHARS], "seen_at": now, "expires_at": now + timedelta(seconds=ttl_s)}
    dialect = session.get_bind().dialect.name
    insert: Any = postgresql.insert if dialect == "postgresql" else sqlite.insert
    if dialect not in ("postgresql", "sqlite"):
        raise NotImplementedError(f"delivery claims on {dialect}")
    stmt = insert(SlackDelivery).values(**values)
    stmt = stmt.on_conflict_do_update(
        index_elements=[SlackDelivery.key],
        set_={"seen_at": stmt.excluded.seen_at, "expires_at": stmt.excluded.expires_at},
        where=SlackDelivery.expires_at <= now,
    ).returning(SlackDelivery.key)
    return session.execute(stmt).first() is not None


def purge(session: Session, now: datetime | None = None) -> int:
    """Delete the expired claims; returns how many."""
    result: Any = session.execute(
        delete(SlackDelivery).where(SlackDelivery.expires_at <= (now or utcnow()))
    )
    return int(result.rowcount or 0)
