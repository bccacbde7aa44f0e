"""The embedded SQLite store while another process holds its write lock: the question is
answered within the short busy timeout, its record spooled, and written once after."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import pytest


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'concierge.db'}"


def test_a_held_sqlite_write_lock_delays_nobody_and_loses_nothing(
    cli, env: dict[str, str], db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert cli("ask", "Where do I submit expenses?", "--as", "eve@canary.test").code == 0
    monkeypatch.setenv("CONCIERGE_DB_TIMEOUT_S", "1")
    path = db_url.removeprefix("sqlite:///")
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process writing, for as long as it likes
    try:
        started = time.monotonic()
        r = cli("ask", "Where do I submit expenses?", "--as", "eve@canary.test", "--json")
        assert r.code == 0, r.err
        assert json.loads(r.out)["outcome"] == "answered"
        assert time.monotonic() - started < 8
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    spool = Path(env["CONCIERGE_DATA_DIR"]) / "spool" / "spool.jsonl"
    assert spool.exists()
    assert cli("access", "list").code == 0  # the next command writes what waited
    assert not spool.exists()
    with sqlite3.connect(path) as conn:
        (rows,) = conn.execute("SELECT count(*) FROM exchanges").fetchone()
    assert rows == 2
