"""``audit verify`` (walk the hash chain) and ``audit export`` (CSV or JSON lines).

Both only read: they never migrate the database. Exit codes: 0 done (chain intact), 1 the
chain is broken (verify), 2 the database cannot be read or the arguments are wrong, so that a
monitoring job can tell a tampered log from an unreachable one.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import os
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from bot.cli.output import err, out
from bot.errors import UsageError
from bot.settings import Settings
from bot.store import chain, repo
from bot.store.db import Store, StoreError, is_current, make_engine
from bot.store.diagnose import describe
from bot.store.models import AuditEvent

SHOWN_BREAKS = 100
FIELDS = ("id", "at", "actor", "action", "target", "subject", "reason", "details")
CSV_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def audit(settings: Settings, args: argparse.Namespace) -> int:
    """Run ``audit verify`` or ``audit export``; database trouble is one line and exit 2."""
    since = parse_since(args.since) if args.op == "export" else None
    try:
        store = open_for_reading(settings.effective_database_url)
        try:
            if args.op == "verify":
                return verify(store)
            return export(store, since=since, fmt=args.format)
        finally:
            store.close()
    except BrokenPipeError:  # `audit export | head`: the reader has what it wanted
        _silence_stdout()
        return 1
    except SQLAlchemyError as exc:
        why = describe(exc, settings.effective_database_url)
        err(f"concierge: cannot read the audit log: {why}")
        return 2
    except StoreError as exc:
        err(f"concierge: {exc}")
        return 2


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that Python's flush at exit does not fail again."""
    with contextlib.suppress(OSError, ValueError, io.UnsupportedOperation):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def open_for_reading(url: str) -> Store:
    """The store, if it is reachable and migrated; never migrates (a check only reads)."""
    engine = make_engine(url)
    try:
        current = is_current(engine)
    except SQLAlchemyError as exc:
        engine.dispose()
        raise StoreError(
            f"cannot reach the database ({engine.url.render_as_string(hide_password=True)}): "
            f"{describe(exc, engine.url)}"
        ) from exc
    if not current:
        engine.dispose()
        raise StoreError("the database schema is not current: run `app.py db upgrade` first")
    return Store(engine)


def verify(store: Store) -> int:
    """Walk the whole chain; print each break (the first bad row and what is wrong)."""
    with store.session() as s:
        result = chain.verify(repo.audit_rows(s))
    if result.intact:
        head = f"; last row #{result.head_id}, hash {result.head_hash}" if result.rows else ""
        out(f"audit log verified: {result.rows} rows, chain intact{head}")
        return 0
    for problem in result.breaks[:SHOWN_BREAKS]:
        out(str(problem))
    if len(result.breaks) > SHOWN_BREAKS:
        out(f"… and {len(result.breaks) - SHOWN_BREAKS} more")
    out(
        f"audit log verification FAILED: {result.rows} rows, {len(result.breaks)} problem(s); "
        f"first bad row #{result.breaks[0].row_id}"
    )
    return 1


def parse_since(text: str | None) -> datetime | None:
    """``--since``: a date (midnight UTC) or an ISO 8601 time; without a zone, UTC."""
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(f"--since {text!r} is not a date (YYYY-MM-DD or an ISO time)") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def record(row: AuditEvent) -> dict[str, Any]:
    """One row as exported: the hashed fields (time in UTC) and the chain's two hashes."""
    return {
        "id": row.id,
        "at": chain.utc_iso(row.at),
        "actor": row.actor,
        "action": row.action,
        "target": row.target,
        "subject": row.subject,
        "reason": row.reason,
        "details": row.details,
        "prev_hash": row.prev_hash,
        "row_hash": row.row_hash,
    }


def csv_cell(value: Any) -> str:
    """A CSV cell that a spreadsheet will not run as a formula (the text is user-supplied);
    JSON lines are exact, CSV is for reading."""
    if value is None:
        return ""
    text = json.dumps(value, sort_keys=True) if isinstance(value, dict) else str(value)
    return "'" + text if text.startswith(CSV_FORMULA_START) else text


def export(store: Store, *, since: datetime | None, fmt: str) -> int:
    """Every row (from ``since`` on) in id order to stdout, streamed."""
    with store.session() as s:
        records: Iterator[dict[str, Any]] = (record(r) for r in repo.audit_rows(s, since))
        if fmt == "jsonl":
            for item in records:
                sys.stdout.write(json.dumps(item, ensure_ascii=False) + "\n")
        else:
            writer = csv.writer(sys.stdout, lineterminator="\n")
            writer.writerow([*FIELDS, "prev_hash", "row_hash"])
            for item in records:
                writer.writerow([csv_cell(v) for v in item.values()])
    sys.stdout.flush()
    return 0
