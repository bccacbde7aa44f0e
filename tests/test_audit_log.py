"""The audit log's hash chain: the migration that chains existing rows, ``audit export``,
``audit verify``'s messages, and a property test of the chain walk."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from alembic import command
from alembic.config import Config as AlembicConfig
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from bot.store import chain
from bot.store.db import MIGRATIONS, make_engine

SQLITE = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


def alembic(url: str, verb: str, revision: str) -> None:
    engine = make_engine(url)
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    try:
        getattr(command, verb)(cfg, revision)
    finally:
        engine.dispose()


def insert_old_rows(url: str, ids: list[int]) -> None:
    """Rows as revision 0005's code wrote them: no hashes; ids with a gap, as a rolled-back
    insert leaves on PostgreSQL."""
    engine = make_engine(url)
    try:
        with engine.begin() as c:
            for i in ids:
                c.execute(
                    text(
                        "INSERT INTO audit_log (id, at, actor, action, target, subject, reason, "
                        "details) VALUES (:id, :at, 'cli', 'grant', 'user:eve@canary.test', "
                        "'runbooks', :reason, :details)"
                    ),
                    {
                        "id": i,
                        "at": datetime(2026, 11, 1, 9, 30, i, 123456, tzinfo=UTC),
                        "reason": f"old row {i} ✓",
                        "details": json.dumps({"grant_id": i, "expires_at": None}),
                    },
                )
    finally:
        engine.dispose()


@pytest.fixture
def empty_url(db_url: str) -> str:
    """A database with no schema at all (the PostgreSQL fixture's clone is migrated)."""
    if db_url.startswith("postgresql"):
        alembic(db_url, "downgrade", "base")
    return db_url


def test_upgrading_chains_the_rows_written_before(cli, empty_url: str) -> None:
    alembic(empty_url, "upgrade", "0005")
    insert_old_rows(empty_url, [1, 2, 4])
    assert cli("db", "upgrade").code == 0
    r = cli("audit", "verify")
    assert r.code == 0 and "3 rows, chain intact" in r.out, r.out + r.err
    assert cli("access", "grant", "eve@canary.test", "finance-notes").code == 0
    r = cli("audit", "verify")
    assert r.code == 0 and "4 rows, chain intact; last row #5" in r.out


def test_downgrading_keeps_the_log_append_only_and_upgrading_again_rechains(
    cli, db_url: str
) -> None:
    assert cli("access", "grant", "eve@canary.test", "finance-notes").code == 0
    alembic(db_url, "downgrade", "0005")
    engine = make_engine(db_url)
    try:
        with pytest.raises(Exception, match="append-only"), engine.begin() as c:
            c.execute(text("UPDATE audit_log SET actor = 'mallory'"))
    finally:
        engine.dispose()
    insert_old_rows(db_url, [2])
    assert cli("db", "upgrade").code == 0
    r = cli("audit", "verify")
    assert r.code == 0 and "2 rows, chain intact" in r.out, r.out + r.err


@SQLITE
def test_export_writes_every_row_with_its_hashes(cli, db_url: str) -> None:
    cli("access", "grant", "eve@canary.test", "finance-notes", "--because", "=HYPERLINK(1)")
    cli("access", "grant", "#ops", "runbooks", "--for", "1d")
    lines = cli("audit", "export", "--format", "jsonl").out.splitlines()
    rows = [json.loads(line) for line in lines]
    assert [r["id"] for r in rows] == [1, 2]
    assert rows[0]["reason"] == "=HYPERLINK(1)" and rows[1]["prev_hash"] == rows[0]["row_hash"]
    assert rows[1]["details"]["expires_at"] is not None and rows[0]["at"].endswith("+00:00")
    table = list(csv.DictReader(io.StringIO(cli("audit", "export").out)))
    assert [r["actor"] for r in table] == ["cli", "cli"]
    assert table[0]["reason"] == "'=HYPERLINK(1)"  # never run as a formula by a spreadsheet
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    assert cli("audit", "export", "--since", tomorrow, "--format", "jsonl").out == ""


@SQLITE
def test_verify_on_an_empty_log(cli, db_url: str) -> None:
    r = cli("audit", "verify")
    assert r.code == 2 and "db upgrade" in r.err  # never migrates: a check only reads
    cli("db", "upgrade")
    r = cli("audit", "verify")
    assert (r.code, r.out) == (0, "audit log verified: 0 rows, chain intact\n")


@SQLITE
@pytest.mark.parametrize("argv", [["verify"], ["export"]])
def test_audit_commands_say_plainly_when_the_database_is_unreachable(
    cli, monkeypatch: pytest.MonkeyPatch, argv: list[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
    r = cli("audit", *argv)
    assert r.code == 2 and r.out == ""
    assert r.err.count("\n") == 1 and "cannot reach the database" in r.err
    assert "Traceback" not in r.err


@SQLITE
def test_a_bad_since_is_a_usage_error(cli, db_url: str) -> None:
    r = cli("audit", "export", "--since", "last tuesday")
    assert r.code == 2 and "not a date" in r.err


# --- the walk itself ------------------------------------------------------------------


class Row:
    """A stored row, as the walk sees it."""

    def __init__(self, fields: chain.ChainFields, prev_hash: str) -> None:
        self.id, self.at, self.actor, self.action = fields[:4]
        self.target, self.subject, self.reason, self.details = fields[4:]
        self.prev_hash: str | None = prev_hash
        self.row_hash: str | None = chain.row_hash(prev_hash, fields)


def build(values: list[tuple[str, str | None, dict[str, Any]]]) -> list[Row]:
    rows, prev = [], chain.GENESIS
    start = datetime(2026, 12, 1, tzinfo=UTC)
    for i, (actor, reason, details) in enumerate(values, start=1):
        fields = chain.ChainFields(
            i, start + timedelta(seconds=i), actor, "grant", None, None, reason, details
        )
        rows.append(Row(fields, prev))
        prev = rows[-1].row_hash or ""
    return rows


VALUES = st.lists(
    st.tuples(
        st.text(min_size=1, max_size=8),
        st.none() | st.text(max_size=8),
        st.dictionaries(st.text(max_size=4), st.integers() | st.text(max_size=4), max_size=3),
    ),
    min_size=3,
    max_size=12,
)


@settings(max_examples=100, deadline=None)
@given(values=VALUES, data=st.data())
def test_any_change_or_removal_is_found_at_its_row(
    values: list[tuple[str, str | None, dict[str, Any]]], data: st.DataObject
) -> None:
    rows = build(values)
    assert chain.verify(rows).intact
    victim = data.draw(st.integers(0, len(rows) - 2), label="victim")
    how = data.draw(st.sampled_from(["actor", "reason", "details", "at", "delete"]), label="how")
    if how == "delete":
        del rows[victim]
        expected = rows[victim].id  # the row after the gap
    else:
        row = rows[victim]
        if how == "actor":
            row.actor += "x"
        elif how == "reason":
            row.reason = (row.reason or "") + "x"
        elif how == "details":
            row.details = {**row.details, "tampered": True}
        else:
            row.at += timedelta(microseconds=1)
        expected = row.id
    result = chain.verify(rows)
    assert not result.intact and result.breaks[0].row_id == expected
