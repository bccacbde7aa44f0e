"""The audit log's hash chain: how a row's hash is computed, and how a walk over the rows
finds where the chain was broken.

Each row stores ``prev_hash`` (the previous row's ``row_hash``; 64 zeros for the first row) and
``row_hash = sha256(prev_hash + canonical JSON of its fields)``. Changing, removing or
re-ordering a row therefore shows: its own hash no longer matches, or the next row's link does.
The format below is part of every stored row: changing it breaks every existing chain, so it
is fixed (a new format would need a new column and a migration).

The algorithm is no secret, so whoever can write the table may recompute the whole chain after
a change; ``audit verify`` prints the head hash so that a copy kept elsewhere shows that too.
Pure functions, no database: ``repo.audit`` writes, ``verify`` reads whatever rows it is given.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple, Protocol

GENESIS = "0" * 64
# pg_advisory_xact_lock key taken by every append on PostgreSQL ("concaudt" in ASCII).
LOCK_KEY = 0x636F6E6361756474


class ChainRow(Protocol):
    """What the chain reads from a stored row (an AuditEvent has these attributes)."""

    id: int
    at: datetime
    actor: str
    action: str
    target: str | None
    subject: str | None
    reason: str | None
    details: dict[str, Any]
    prev_hash: str | None
    row_hash: str | None


class ChainFields(NamedTuple):
    """The fields a row's hash covers."""

    id: int
    at: datetime
    actor: str
    action: str
    target: str | None
    subject: str | None
    reason: str | None
    details: dict[str, Any]

    @classmethod
    def of(cls, row: ChainRow) -> ChainFields:
        return cls(*(getattr(row, name) for name in cls._fields))


def utc_iso(value: datetime) -> str:
    """A timestamp as ISO 8601 in UTC with microseconds (SQLite hands back naive UTC)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def plain_json(details: dict[str, Any] | None) -> dict[str, Any]:
    """``details`` as it reads back from the JSON column (tuples become lists, keys strings),
    so that the hash computed before the insert matches the one computed from the row."""
    return dict(json.loads(json.dumps(details or {}, allow_nan=False)))


def canonical(fields: ChainFields) -> str:
    """One fixed text for a row's fields: sorted keys, no spaces, ASCII only."""
    return json.dumps(
        {
            "id": fields.id,
            "at": utc_iso(fields.at),
            "actor": fields.actor,
            "action": fields.action,
            "target": fields.target,
            "subject": fields.subject,
            "reason": fields.reason,
            "details": fields.details,
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
        allow_nan=False,
    )


def row_hash(prev_hash: str, fields: ChainFields) -> str:
    return hashlib.sha256((prev_hash + canonical(fields)).encode("ascii")).hexdigest()


@dataclass(frozen=True)
class Break:
    """One place where the chain does not hold: the first bad row and what is wrong."""

    row_id: int
    problem: str

    def __str__(self) -> str:
        return f"row #{self.row_id}: {self.problem}"


@dataclass
class Verification:
    """The result of a walk: how many rows, the head, and every break found."""

    rows: int = 0
    head_id: int | None = None
    head_hash: str = GENESIS
    breaks: list[Break] = field(default_factory=list)

    @property
    def intact(self) -> bool:
        return not self.breaks


def _missing(first: int, last: int) -> str:
    return f"row #{first}" if first == last else f"rows #{first}-#{last}"


def _link_problem(row: ChainRow, last_id: int | None, linked_id: int | None) -> str:
    """Why ``row.prev_hash`` is not the hash of the last hashed row before it, if it is not."""
    expected_first = 1 if last_id is None else last_id + 1
    if row.id > expected_first:
        gone = _missing(expected_first, row.id - 1)
        return f"{gone} missing (deleted): this row does not link to the row before the gap"
    if linked_id is None:
        return "broken link: the first row does not start from the genesis hash"
    return (
        f"broken link: prev_hash is not row #{linked_id}'s hash "
        f"(row #{linked_id} was rewritten with a new hash, or rows were removed)"
    )


def walk(rows: Iterable[ChainRow]) -> Iterator[Break]:
    """Check each row, in id order, against its own hash and the row before it.

    A gap in ids is only a break when the link across it is broken too: ids are allocated
    without gaps since the chain exists, but rows from before it may have had them (a rolled
    back insert on PostgreSQL) and were chained as they were.
    """
    expected_prev, linked_id, last_id = GENESIS, None, None
    for row in rows:
        if row.row_hash is None or row.prev_hash is None:
            yield Break(row.id, "no hash: written outside the chain (after the chain started)")
            last_id = row.id
            continue
        problems: list[str] = []
        if row.prev_hash != expected_prev:
            problems.append(_link_problem(row, last_id, linked_id))
        if row_hash(row.prev_hash, ChainFields.of(row)) != row.row_hash:
            problems.append("changed: its contents no longer match its hash")
        if problems:
            yield Break(row.id, "; ".join(problems))
        expected_prev, linked_id, last_id = row.row_hash, row.id, row.id


def verify(rows: Iterable[ChainRow]) -> Verification:
    """Walk every row; collect the breaks and the head (the last row and its hash)."""
    result = Verification()

    def counted() -> Iterator[ChainRow]:
        for row in rows:
            result.rows += 1
            result.head_id = row.id
            result.head_hash = row.row_hash or result.head_hash
            yield row

    result.breaks.extend(walk(counted()))
    return result
