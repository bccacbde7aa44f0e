"""Rewriting the audit log quietly: REPLACE over an existing id, the serving role switching the
append-only triggers off, the table's owner editing or deleting rows behind the triggers.

The database refuses what it can (triggers, a PostgreSQL role without UPDATE/DELETE/ALTER);
the hash chain makes the rest visible to ``app.py audit verify``.
"""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from sqlalchemy import create_engine, text

from bot.store import repo
from bot.store.db import Store, normalise_url
from tests.conftest import PG_ADMIN_URL, RUN_ID

SQLITE = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
POSTGRES = pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
APP_ROLE = "concierge_app"
EXPENSES = "Where do I submit expenses?"
ROWS = 8  # what write_real_log writes


def write_real_log(cli, workspace) -> int:  # type: ignore[no-untyped-def]
    """Audit rows written by real operations: grants, a revoke, an access request refused to
    a non-approver and approved by the source's owner. Returns how many rows that wrote."""
    config = workspace.config.read_text()
    workspace.config.write_text(
        config.replace("review: required", "review: required\n    requestable: true")
    )
    admin = ("--actor", "ada@canary.test")
    assert (
        cli("access", "grant", "eve@canary.test", "finance-notes", "--for", "30d", *admin).code == 0
    )
    assert cli("access", "grant", "#ops", "runbooks", "--because", "on-call").code == 0
    assert cli("access", "revoke", "eve@canary.test", "finance-notes", *admin).code == 0
    asked = cli(
        "access", "request", "hr-policies", "--because", "payroll", "--as", "maya@canary.test"
    )
    assert asked.code == 0, asked.err
    assert cli("access", "approve", "1", "--actor", "eve@canary.test").code == 2  # refused
    assert cli("access", "approve", "1", "--actor", "hana@canary.test").code == 0
    assert (
        cli("access", "grant", "maya@canary.test", "runbooks", "--because", "ünïcode ✓").code == 0
    )
    return ROWS


def audit_ids(db_url: str) -> list[int]:
    engine = create_engine(normalise_url(db_url))
    try:
        with engine.connect() as c:
            return [
                int(i) for i in c.execute(text("SELECT id FROM audit_log ORDER BY id")).scalars()
            ]
    finally:
        engine.dispose()


def as_owner(db_url: str, *statements: str) -> None:
    """Tamper as whoever owns the table: switch the append-only triggers off, change rows."""
    engine = create_engine(normalise_url(db_url))
    try:
        with engine.begin() as c:
            if c.dialect.name == "postgresql":
                c.execute(text("ALTER TABLE audit_log DISABLE TRIGGER USER"))
            else:
                c.execute(text("DROP TRIGGER IF EXISTS audit_log_no_update"))
                c.execute(text("DROP TRIGGER IF EXISTS audit_log_no_delete"))
            for statement in statements:
                c.execute(text(statement))
            if c.dialect.name == "postgresql":
                c.execute(text("ALTER TABLE audit_log ENABLE TRIGGER USER"))
    finally:
        engine.dispose()


# --- SQLite: REPLACE and UPSERT over an existing id -------------------------------------


COPY_ROW_1 = (
    "(id, at, actor, action, target, subject, reason, details, prev_hash, row_hash) "
    "SELECT id, at, 'mallory', action, target, subject, reason, details, prev_hash, row_hash "
    "FROM audit_log WHERE id = 1"
)


@SQLITE
@pytest.mark.parametrize(
    "statement",
    [
        f"INSERT OR REPLACE INTO audit_log {COPY_ROW_1}",
        f"REPLACE INTO audit_log {COPY_ROW_1}",
        f"INSERT INTO audit_log {COPY_ROW_1} ON CONFLICT (id) DO UPDATE SET actor = 'mallory'",
    ],
    ids=["insert-or-replace", "replace", "upsert"],
)
def test_replace_over_an_existing_audit_id_is_refused(
    cli, workspace, db_url: str, statement: str
) -> None:
    write_real_log(cli, workspace)
    conn = sqlite3.connect(db_url.removeprefix("sqlite:///"))
    try:
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute(statement)
        conn.rollback()
        actor = conn.execute("SELECT actor FROM audit_log WHERE id = 1").fetchone()[0]
    finally:
        conn.close()
    assert actor == "ada@canary.test"
    r = cli("audit", "verify")
    assert r.code == 0 and "chain intact" in r.out


# --- PostgreSQL: the serving role may append, never rewrite ------------------------------


@pytest.fixture
def serve_url(db_url: str) -> Iterator[str]:
    """A login role that is a member of the app role, as an operator runs ``serve``."""
    name = f"concierge_serve_{RUN_ID}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE ROLE "{name}" LOGIN IN ROLE {APP_ROLE}')
    try:
        yield db_url.replace("postgresql://postgres@", f"postgresql://{name}@", 1)
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP ROLE IF EXISTS "{name}"')


@POSTGRES
@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_log SET actor = 'mallory'",
        "DELETE FROM audit_log",
        "TRUNCATE audit_log",
        "ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only",
        "ALTER TABLE audit_log DISABLE TRIGGER ALL",
        "DROP TRIGGER audit_log_append_only ON audit_log",
        "INSERT INTO audit_log (id, at, actor, action, details, prev_hash, row_hash) "
        "SELECT id, at, 'mallory', action, details, prev_hash, row_hash FROM audit_log "
        "ON CONFLICT (id) DO UPDATE SET actor = excluded.actor",
    ],
    ids=[
        "update",
        "delete",
        "truncate",
        "disable-trigger",
        "disable-all",
        "drop-trigger",
        "upsert",
    ],
)
def test_the_serving_role_cannot_rewrite_the_audit_log(
    cli, workspace, db_url: str, serve_url: str, statement: str
) -> None:
    write_real_log(cli, workspace)
    with psycopg.connect(serve_url) as conn:
        with pytest.raises(psycopg.errors.Error):
            conn.execute(statement)
        conn.rollback()
        conn.execute(
            "INSERT INTO exchanges (id, created_at, asker, surface, audience, outcome, sources, "
            "sources_withheld, sources_searched, prompt_name, prompt_version, models_tried, "
            "attempts, input_tokens, output_tokens, tokens_estimated, cost_usd, total_ms) "
            "VALUES (%s, now(), 'eve@canary.test', 'cli', 'private', 'answered', '[]', '[]', "
            "'[]', 'answer', '1', '[]', '[]', 0, 0, false, 0, 0)",
            (str(uuid.uuid4()),),
        )
        conn.execute("UPDATE exchanges SET answer = 'edited'")
        conn.commit()
        actors = [r[0] for r in conn.execute("SELECT actor FROM audit_log ORDER BY id")]
    assert "mallory" not in actors and len(actors) == ROWS
    r = cli("audit", "verify")
    assert r.code == 0 and f"{ROWS} rows, chain intact" in r.out


@POSTGRES
def test_a_login_member_of_the_app_role_can_grant_ask_and_append(
    cli, workspace, db_url: str, serve_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", serve_url)
    write_real_log(cli, workspace)
    asked = cli("ask", EXPENSES, "--as", "eve@canary.test")
    assert asked.code == 0, asked.err
    assert len(audit_ids(serve_url)) == ROWS
    r = cli("audit", "verify")
    assert r.code == 0 and f"{ROWS} rows, chain intact" in r.out, r.out + r.err


# --- the hash chain: audit verify ------------------------------------------------------


def test_audit_verify_passes_on_a_log_written_by_real_operations(
    cli, workspace, db_url: str
) -> None:
    write_real_log(cli, workspace)
    r = cli("audit", "verify")
    assert r.code == 0, r.out + r.err
    assert r.out.startswith(f"audit log verified: {ROWS} rows, chain intact")


def test_a_row_rewritten_behind_the_triggers_is_reported(cli, workspace, db_url: str) -> None:
    write_real_log(cli, workspace)
    victim = audit_ids(db_url)[2]
    as_owner(db_url, f"UPDATE audit_log SET actor = 'mallory' WHERE id = {victim}")
    r = cli("audit", "verify")
    assert r.code == 1
    assert f"row #{victim}: changed" in r.out
    assert "Traceback" not in r.out + r.err


def test_a_rewrite_with_a_recomputed_hash_breaks_the_next_link(cli, workspace, db_url: str) -> None:
    from bot.store.chain import ChainFields, row_hash  # the algorithm is no secret

    write_real_log(cli, workspace)
    victim, after = audit_ids(db_url)[1:3]
    store = Store.open(db_url)
    try:
        with store.session() as s:
            row = next(e for e in repo.audit_rows(s) if e.id == victim)
            fields = ChainFields.of(row)
        forged = row_hash(row.prev_hash or "", fields._replace(reason="nothing to see"))
    finally:
        store.close()
    as_owner(
        db_url,
        f"UPDATE audit_log SET reason = 'nothing to see', row_hash = '{forged}' "
        f"WHERE id = {victim}",
    )
    r = cli("audit", "verify")
    assert r.code == 1
    assert f"row #{after}: broken link" in r.out and f"row #{victim}" in r.out


def test_a_row_deleted_from_the_middle_is_reported(cli, workspace, db_url: str) -> None:
    write_real_log(cli, workspace)
    ids = audit_ids(db_url)
    as_owner(db_url, f"DELETE FROM audit_log WHERE id = {ids[2]}")
    r = cli("audit", "verify")
    assert r.code == 1
    assert f"row #{ids[3]}: row #{ids[2]} missing" in r.out


def test_an_unchained_row_cannot_be_appended(cli, workspace, db_url: str) -> None:
    write_real_log(cli, workspace)
    engine = create_engine(normalise_url(db_url))
    try:
        with pytest.raises(Exception, match=r"(?i)chain|check constraint"), engine.begin() as c:
            c.execute(
                text(
                    "INSERT INTO audit_log (id, at, actor, action, details) "
                    "VALUES (100, '2030-01-01 00:00:00', 'mallory', 'grant', '{}')"
                )
            )
    finally:
        engine.dispose()
    assert cli("audit", "verify").code == 0


def test_two_instances_appending_at_once_keep_one_chain(cli, workspace, db_url: str) -> None:
    """Each append holds its transaction open a moment after writing, as a grant does, so
    that two instances reading the same last hash would fork the chain."""
    stores = [Store.open(db_url), Store.open(db_url)]
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def append(store: Store, who: int) -> None:
        start.wait()
        for n in range(25):
            try:
                with store.session() as s:
                    repo.audit(s, actor=f"instance{who}", action="grant", subject=str(n))
                    time.sleep(0.002)
            except BaseException as exc:  # collected and shown by the assertion below
                errors.append(exc)

    threads = [threading.Thread(target=append, args=(s, i)) for i, s in enumerate(stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for s in stores:
        s.close()
    assert errors == []
    assert audit_ids(db_url) == list(range(1, 51))
    r = cli("audit", "verify")
    assert r.code == 0 and "50 rows, chain intact" in r.out, r.out
