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

``:like`` is ``%WORD%`` for the question's longest content word, where ``%``, ``_`` and backslash
split words, so no LIKE wildcard or escape ever comes from a person and the pattern means the
same with or without an ``ESCAPE`` clause. A question with no such word runs no query that uses
``:like`` (an empty word would match every row). ``:query`` is the raw question, for full-text
functions; a query must never build a LIKE pattern from it.

Rows of a query that uses ``:asker_email`` are that person's own: they are marked
``personal``, and such a source needs exactly one asker identity (otherwise it fails closed).
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
from connectors.asker import sole_asker_email
from connectors.base import Connector, ConnectorContext, SourceUnavailable

READ_ONLY_START = re.compile(r"^\s*(select|with)\b", re.IGNORECASE)
LIKE_SPECIAL = re.compile(r"[%_\\]+")


def bound_names(sql: str) -> frozenset[str]:
    """The parameters SQLAlchemy will bind in ``sql`` — the same parser that runs it, so a
    ``:asker_email`` it would bind is never missed (one inside a string literal counts too:
    over-marking a row as personal is the safe side)."""
    return frozenset(text(sql).compile().params)


def like_word(query: str) -> str | None:
    """The question's longest content word with LIKE's ``%``, ``_`` and ``\\`` treated as
    word breaks (``snake_case`` gives ``snake``), or None when nothing is left."""
    terms = content_words(LIKE_SPECIAL.sub(" ", query))
    return max(terms, key=len) if terms else None


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
        self._params = [bound_names(str(q.get("sql", ""))) for q in self.queries]
        self.personal = any("asker_email" in names for names in self._params)

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
            for q, names in zip(self.queries, self._params, strict=True):
                if "like" in names and params["like"] is None:
                    continue  # no word to look for: an empty pattern would match every row
                result = conn.execute(text(str(q["sql"])), params)
                fields = q.get("fields") or {}
                personal = params["asker_email"] if "asker_email" in names else None
                for row in result.mappings().fetchmany(max_rows - len(rows)):
                    # Our own keys last: a column cannot pose as them (say, ``_personal``).
                    meta = {"_fields": fields, "_query": q.get("name"), "_personal": personal}
                    rows.append(dict(row) | meta)
                if len(rows) >= max_rows:
                    break
            conn.rollback()
        return rows

    async def _search(self, *, query: str, principals: frozenset[str], k: int) -> list[Passage]:
        terms = content_words(query)
        word = like_word(query)
        params = {
            "asker_email": sole_asker_email(self.name, principals) if self.personal else None,
            "query": query[:500],
            "like": None if word is None else f"%{word}%",
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
                    personal=row["_personal"],
                )
            )
        passages.sort(key=lambda p: p.score, reverse=True)
        return passages[:k]
