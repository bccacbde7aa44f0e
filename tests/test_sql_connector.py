"""The sql connector on SQLite and PostgreSQL: rows bound to the asker, read-only, capped,
timed out, and failing closed."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from bot.config import load_config
from bot.store.db import normalise_url
from connectors.base import ConnectorContext, SourceUnavailable
from connectors.sql import SqlConnector

EVE = frozenset({"everyone", "user:eve@x.test", "group:engineering"})
SAM = frozenset({"everyone", "user:sam@x.test", "group:engineering"})
MINE = (
    "SELECT title, body, url FROM tickets WHERE assignee = :asker_email "
    "AND (title LIKE :like OR body LIKE :like)"
)


@pytest.fixture
def tickets_url(db_url: str) -> str:
    engine = create_engine(normalise_url(db_url))
    with engine.begin() as c:
        c.execute(
            text(
                "CREATE TABLE tickets (id INTEGER PRIMARY KEY, assignee VARCHAR(100), "
                "title VARCHAR(200), body TEXT, url VARCHAR(200))"
            )
        )
        c.execute(
            text(
                "INSERT INTO tickets (id, assignee, title, body, url) VALUES "
                "(1, 'eve@x.test', 'VPN broken', 'The VPN drops every hour CANARY-SQL-EVE', 'https://t/1'),"
                "(2, 'sam@x.test', 'VPN slow', 'The VPN is slow in Berlin CANARY-SQL-SAM', 'https://t/2'),"
                "(3, 'eve@x.test', 'Laptop', 'Keyboard sticks', 'https://t/3')"
            )
        )
    engine.dispose()
    return db_url


def connector(tmp_path: Path, url: str, sql: str = MINE, **extra: object) -> SqlConnector:
    settings = "".join(f"    {k}: {v}\n" for k, v in extra.items())
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "sources:\n  - name: tickets\n    kind: sql\n    readers: [group:engineering]\n"
        "    url_env: TICKETS_URL\n"
        + settings
        + f'    queries:\n      - name: mine\n        sql: "{sql}"\n'
        "        fields: {title: title, text: body, uri: url}\n"
    )
    config = load_config(cfg)
    ctx = ConnectorContext(config=config, index_dir=tmp_path / "i", secrets={"TICKETS_URL": url})
    return SqlConnector(config.sources[0], ctx)


async def test_rows_are_bound_to_the_asker(tickets_url, tmp_path) -> None:
    conn = connector(tmp_path, tickets_url)
    eve = await conn.search(query="why does the VPN drop?", principals=EVE, k=5)
    assert [p.title for p in eve] == ["VPN broken"] and "CANARY-SQL-SAM" not in eve[0].text
    assert eve[0].uri == "https://t/1" and eve[0].source == "tickets"
    sam = await conn.search(query="why is the VPN slow?", principals=SAM, k=5)
    assert [p.title for p in sam] == ["VPN slow"]


async def test_question_text_is_only_ever_a_bound_parameter(tickets_url, tmp_path) -> None:
    conn = connector(tmp_path, tickets_url)
    evil = "VPN' OR '1'='1'; DROP TABLE tickets; --"
    found = await conn.search(query=evil, principals=EVE, k=5)
    assert all("CANARY-SQL-SAM" not in p.text for p in found)
    engine = create_engine(normalise_url(tickets_url))
    with engine.connect() as c:
        assert c.execute(text("SELECT count(*) FROM tickets")).scalar() == 3
    engine.dispose()


async def test_writes_are_refused_and_fail_closed(tickets_url, tmp_path) -> None:
    from bot.errors import ConfigError

    with pytest.raises(ConfigError, match="single SELECT"):
        connector(tmp_path, tickets_url, sql="DELETE FROM tickets")
    sneaky = "WITH gone AS (DELETE FROM tickets RETURNING title, body, url) SELECT * FROM gone"
    if tickets_url.startswith("sqlite"):
        sneaky = "SELECT title, body, url FROM tickets WHERE 0 = (SELECT count(*) FROM (SELECT 1))"
    conn = connector(tmp_path, tickets_url, sql=sneaky)
    if not tickets_url.startswith("sqlite"):
        with pytest.raises(SourceUnavailable):
            await conn.search(query="vpn", principals=EVE, k=5)
    engine = create_engine(normalise_url(tickets_url))
    with engine.connect() as c:
        assert c.execute(text("SELECT count(*) FROM tickets")).scalar() == 3
    engine.dispose()


async def test_row_cap_and_statement_timeout(tickets_url, tmp_path) -> None:
    capped = connector(
        tmp_path, tickets_url, sql="SELECT title, body, url FROM tickets", max_rows=2
    )
    assert len(await capped.search(query="vpn laptop", principals=EVE, k=10)) == 2
    slow = (
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 50000000) "
        "SELECT 'x' AS title, 'y' AS body, 'z' AS url FROM n WHERE i = 49999999"
    )
    if not tickets_url.startswith("sqlite"):
        slow = "SELECT 'x' AS title, 'y' AS body, 'z' AS url FROM pg_sleep(5)"
    conn = connector(tmp_path, tickets_url, sql=slow, timeout_s=0.3)
    with pytest.raises(SourceUnavailable):
        await conn.search(query="x", principals=EVE, k=5)


async def test_no_url_fails_closed(tmp_path) -> None:
    conn = connector(tmp_path, "")
    with pytest.raises(SourceUnavailable, match="no database URL"):
        await conn.search(query="vpn", principals=EVE, k=5)
