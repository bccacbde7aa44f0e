"""The ``sql`` connector: named, parameterised, read-only queries against any SQLAlchemy URL.

    - name: tickets
      kind: sql
      readers: [group:engineering]
      url_env: TICKETS_DB_URL          # the URL (and its password) comes from the environment;
      # url: sqlite:///./tickets.db    # or, without secrets, from the config
      max_rows: 50
      timeout_s: 2
      queries:
        - name: my_tickets
          sql: >-
            SELECT id, title, body, url FROM tickets
            WHERE assignee = :asker_email AND (title LIKE :like OR body LIKE :like)
          fields: {title: title, text: body, uri: url}

Only the config's queries run, never text from a question: the asker's words reach the
database as bound parameters (``:query``, ``:like``, ``:k``) and their identity as
``:asker_email``, so a filter can only narrow what a query returns. Each query runs in a
read-only transaction with a statement timeout and a row cap; any error fails closed.
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.exc import SQLAlchemyError

from bot.core.text import content_words
from bot.core.types import Passage
from bot.store.db import normalise_url
from connectors.base import Connector, ConnectorContext, SourceUnavailable

READ_ONLY_START = re.compile(r"^\s*(select|with)\b", re.IGNORECASE)


class SqlConnector(Connector):
    kind = "sql"

    def __init__(self, source: Any, context: ConnectorContext) -> None:
        super().__init__(source, context)
        self._engine: Engine | None = None
        self.queries: list[dict[str, Any]] = list(source.setting("queries", []) or [])
        for q in self.queries:
            sql = str(q.get("sql", ""))
            if not READ_ONLY_START.match(sql) or ";" in sql.strip().rstrip(";"):
                raise SourceUnavailable(f"{self.name}: query {q.get('name')!r} must be one SELECT")

    def _url(self) -> str:
        env = self.source.setting("url_env")
        url = self.context.secrets.get(str(env)) if env else self.source.setting("url")
        if not url:
            raise SourceUnavailable(f"{self.name} has no database URL configured")
        return normalise_url(str(url))

    def engine(self) -> Engine:
        if self._engine is None:
            url = self._url()
            if url.startswith("sqlite"):
                engine = create_engine(url, connect_args={"check_same_thread": False})

                @event.listens_for(engine, "connect")
                def _read_only(dbapi_conn: Any, _record: Any) -> None:
                    dbapi_conn.execute("PRAGMA query_only = ON")

                self._engine = engine
            else:
                self._engine = create_engine(url, pool_pre_ping=True, pool_size=2, max_overflow=2)
        return self._engine

    def _run(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        timeout_ms = int(self.source.timeout_s * 1000)
        max_rows = int(self.source.setting("max_rows", 50))
        rows: list[dict[str, Any]] = []
        engine = self.engine()
        with engine.connect() as conn:
            if engine.dialect.name == "postgresql":
                conn.execute(text("SET TRANSACTION READ ONLY"))
                conn.execute(text(f"SET LOCAL statement_timeout = {timeout_ms}"))
            elif engine.dialect.name == "sqlite":
                deadline = time.monotonic() + self.source.timeout_s
                raw: Any = conn.connection.driver_connection
                raw.set_progress_handler(lambda: int(time.monotonic() > deadline), 10_000)
            for q in self.queries:
                result = conn.execute(text(str(q["sql"])), params)
                fields = q.get("fields") or {}
                for row in result.mappings().fetchmany(max_rows - len(rows)):
                    rows.append({"_fields": fields, "_query": q.get("name"), **dict(row)})
                if len(rows) >= max_rows:
                    break
            conn.rollback()
        return rows

    async def _search(self, *, query: str, principals: frozenset[str], k: int) -> list[Passage]:
        emails = sorted(p[5:] for p in principals if p.startswith("user:"))
        terms = content_words(query)
        key = max(terms, key=len) if terms else ""
        params = {
            "asker_email": emails[0] if emails else "",
            "query": query[:500],
            "like": f"%{key}%",
            "k": k,
        }
        try:
            rows = await asyncio.to_thread(self._run, params)
        except SQLAlchemyError as exc:
            raise SourceUnavailable(
                f"{self.name} query failed ({exc.__class__.__name__})"
            ) from None
        wanted = {t.lower() for t in terms}
        passages = []
        for row in rows:
            f = row["_fields"]
            body = str(row.get(f.get("text", "text")) or "").strip()
            if not body:
                continue
            title = str(row.get(f.get("title", "title")) or row["_query"] or self.name)
            words = set(content_words(f"{title} {body}"))
            passages.append(
                Passage(
                    source=self.name,
                    title=title,
                    uri=str(row.get(f.get("uri", "url")) or ""),
                    text=body[:4000],
                    score=float(len(wanted & words)),
                    location=f"{row['_query']}",
                    data_class=self.source.data_class,
                )
            )
        passages.sort(key=lambda p: p.score, reverse=True)
        return passages[:k]
