"""Engine, sessions and migrations.

SQLite (the embedded default) runs in WAL mode with a busy timeout so that a chat, an ``ask``
and a server can share one file. PostgreSQL comes through DATABASE_URL. Database calls are
synchronous and short; async callers run them with ``asyncio.to_thread``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from bot.errors import ConciergeError

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
_migrate_lock = threading.Lock()


class StoreError(ConciergeError):
    """The database cannot be reached or used."""


def normalise_url(url: str) -> str:
    """Use psycopg 3 for plain ``postgresql://`` URLs (the driver we install)."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def make_engine(url: str) -> Engine:
    url = normalise_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


def _alembic_config(engine: Engine) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


def is_current(engine: Engine) -> bool:
    script = ScriptDirectory.from_config(_alembic_config(engine))
    with engine.connect() as conn:
        current = MigrationContext.configure(conn).get_current_heads()
    return set(current) == set(script.get_heads())


def upgrade(engine: Engine) -> None:
    """Apply all migrations (``app.py db upgrade``; also done on start when behind)."""
    with _migrate_lock:
        try:
            command.upgrade(_alembic_config(engine), "head")
        except SQLAlchemyError as exc:
            hint = ""
            if getattr(getattr(exc, "orig", None), "sqlstate", None) == "42501":
                # e.g. serve runs as the app role (revision 0006), which may not change tables
                hint = " (this role may not change the schema: run `app.py db upgrade` as the "
                hint += "role that owns the tables)"
            raise StoreError(
                f"cannot migrate the database: {exc.__class__.__name__}{hint}"
            ) from exc


def ensure_schema(engine: Engine) -> None:
    """Migrate when the database is behind; cheap when it is current."""
    try:
        current = is_current(engine)
    except SQLAlchemyError as exc:
        raise StoreError(
            f"cannot reach the database ({engine.url.render_as_string(hide_password=True)}): "
            f"{exc.__class__.__name__}"
        ) from exc
    if not current:
        upgrade(engine)


class Store:
    """The engine plus a session factory; passed to whatever needs the database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @classmethod
    def open(cls, url: str, *, migrate: bool = True) -> Store:
        engine = make_engine(url)
        if migrate:
            ensure_schema(engine)
        return cls(engine)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session per unit of work: committed on success, rolled back on error."""
        with self._sessions() as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    def close(self) -> None:
        self.engine.dispose()
