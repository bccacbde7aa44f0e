"""The store on SQLite and PostgreSQL: migrations, the append-only audit log, grants."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from bot.store import repo
from bot.store.db import Store, is_current
from bot.store.models import utcnow


@pytest.fixture
def store(db_url: str):  # type: ignore[no-untyped-def]
    s = Store.open(db_url)
    yield s
    s.close()


def test_migrations_are_current_and_idempotent(store: Store, cli) -> None:
    assert is_current(store.engine)
    r = cli("db", "upgrade")
    assert r.code == 0 and "up to date" in r.out
    assert is_current(store.engine)


def test_an_older_release_is_refused_by_a_newer_schema_with_one_line(store: Store, cli) -> None:
    """A rolling upgrade: `db upgrade` ran from the new release; an instance of the previous
    one that restarts cannot move the schema back and says so (no traceback)."""
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    for argv in (("db", "upgrade"), ("jobs", "list")):
        r = cli(*argv)
        assert r.code == 1, r.err
        assert "schema (9999) is newer than this release" in r.err
        assert "Traceback" not in r.err


async def test_a_burst_of_database_work_is_not_taken_for_an_outage(store: Store) -> None:
    """More calls at once than there are threads to run them: waiting for a thread is this
    process's own load, and the bound applies to the database's answer only."""

    def work() -> int:
        with store.session() as s:
            s.execute(text("SELECT 1"))
            time.sleep(0.15)  # a slow statement, well within the bound
        return 1

    results = await asyncio.gather(*(store.call(work, timeout_s=0.6) for _ in range(80)))
    assert results == [1] * 80
    assert not store.health.down


def test_sqlite_runs_in_wal_mode(tmp_path) -> None:
    s = Store.open(f"sqlite:///{tmp_path / 'x.db'}")
    with s.engine.connect() as c:
        assert c.execute(text("PRAGMA journal_mode")).scalar() == "wal"
    s.close()


@pytest.mark.parametrize(
    "statement",
    ["UPDATE audit_log SET actor = 'mallory'", "DELETE FROM audit_log"],
)
def test_the_database_refuses_changes_to_the_audit_log(store: Store, statement: str) -> None:
    with store.session() as s:
        repo.audit(s, actor="cli", action="grant", target="user:eve@x.test", subject="finance")
    with pytest.raises(DBAPIError), store.engine.begin() as c:
        c.execute(text(statement))
    with store.session() as s:
        (row,) = repo.recent_audit(s)
        assert row.actor == "cli"


def test_expired_and_revoked_grants_are_not_active(store: Store) -> None:
    with store.session() as s:
        live = repo.add_grant(
            s,
            principal="user:a@x.test",
            target="hr",
            actor="cli",
            reason=None,
            expires_at=utcnow() + timedelta(hours=1),
        )
        repo.add_grant(
            s,
            principal="user:b@x.test",
            target="hr",
            actor="cli",
            reason=None,
            expires_at=utcnow() - timedelta(seconds=1),
        )
        gone = repo.add_grant(
            s, principal="user:c@x.test", target="hr", actor="cli", reason=None, expires_at=None
        )
        repo.revoke_grant(s, gone, actor="cli")
    with store.session() as s:
        assert [g.id for g in repo.active_grants(s)] == [live.id]


def test_unreachable_database_is_a_clear_error_for_admin_writes(cli, monkeypatch) -> None:
    # Questions are answered and spooled (tests/test_faults_store.py); a grant is refused.
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
    r = cli("access", "grant", "eve@canary.test", "hr-policies")
    assert r.code == 1
    assert "cannot reach the database" in r.err and "Traceback" not in r.err
