"""Engine, sessions and migrations.

SQLite (the embedded default) runs in WAL mode with a busy timeout so that a chat, an ``ask``
and a server can share one file. PostgreSQL comes through DATABASE_URL. Database calls are
synchronous and short; async callers run them with ``asyncio.to_thread`` (or ``Store.call``,
which also bounds the wait on the client side).

Every call is bounded: a connect timeout, a statement and lock timeout on the server, and a
client-side bound for a server that does not answer at all. When the database cannot be
reached, ``Store.health`` remembers it and calls fail at once (``StoreUnavailable``) for a
short, growing while, so that an outage costs a question nothing and a hung server cannot
take every worker thread. Records of what happened meanwhile go to the spool
(bot/store/spool.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import math
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import (
    ArgumentError,
    DBAPIError,
    InterfaceError,
    NoSuchModuleError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session, sessionmaker

from bot.errors import ConciergeError, UsageError
from bot.outage import Outage
from bot.store.diagnose import REACH_PROBLEMS, describe, describe_url_problem, kind_of

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
_migrate_lock = threading.Lock()
log = logging.getLogger("concierge.store")
T = TypeVar("T")

# SQLite errors that mean "not now" (another writer, a file that cannot be opened) rather
# than a broken schema or a bug.
_SQLITE_TRANSIENT = ("locked", "busy", "unable to open", "disk i/o")


class StoreError(ConciergeError):
    """The database cannot be reached or used."""


# Threads for ``Store.call``: at least a few (SQLite), at most what a pool serves at once.
DB_THREADS_MIN = 4
DB_THREADS_MAX = 32
# How often a call still waiting for a thread checks whether the database was found down.
QUEUED_POLL_S = 0.1


class StoreUnavailable(StoreError):
    """The database cannot be reached now (refused, dropped, timed out, locked)."""


class DatabaseUrlError(StoreError, UsageError):
    """DATABASE_URL cannot be used at all: not a URL, or a database Concierge does not
    support or whose driver is not installed (a usage error: exit code 2)."""


# The databases Concierge is built and tested for (migrations, locking, the job store).
SUPPORTED_BACKENDS = ("sqlite", "postgresql")


@dataclass(frozen=True)
class Timeouts:
    """How long a database call may take (settings: CONCIERGE_DB_CONNECT_TIMEOUT_S,
    CONCIERGE_DB_TIMEOUT_S)."""

    connect_s: float = 3.0
    statement_s: float = 5.0

    @property
    def call_s(self) -> float:
        """The client-side bound on one unit of work run through ``Store.call``."""
        return max(self.connect_s, self.statement_s) + 0.5


def is_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` says the database cannot be reached now (worth spooling and retrying),
    as opposed to a bug or a constraint."""
    if isinstance(exc, PoolTimeout | StoreUnavailable):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, OperationalError | InterfaceError):
        if "sqlite" in type(getattr(exc, "orig", None)).__module__:
            return any(word in str(exc.orig).lower() for word in _SQLITE_TRANSIENT)
        return True
    return False


class Health(Outage):
    """Whether the database answered lately: after a failure, calls fail at once until a
    retry time that backs off from 1 s to 15 s; the first success clears it."""

    def __init__(self, what: str) -> None:
        self.what = what
        super().__init__(
            log,
            f"the database ({what}) cannot be used: %s; questions are still answered and "
            "their records spooled until it can",
            f"the database ({what}) is reachable again after %.1f s",
        )


def normalise_url(url: str) -> str:
    """Use psycopg 3 for plain ``postgresql://`` URLs (the driver we install)."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def make_engine(url: str, timeouts: Timeouts | None = None) -> Engine:
    """The engine for ``url``; raises DatabaseUrlError (never a traceback) for a URL that is
    not one, a database we do not support, or a driver that is not installed."""
    original = url
    try:
        return _make_engine(normalise_url(url), timeouts or Timeouts())
    except (ArgumentError, NoSuchModuleError, ImportError) as exc:
        raise DatabaseUrlError(describe_url_problem(original, exc)) from None


def _make_engine(url: str, timeouts: Timeouts) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() not in SUPPORTED_BACKENDS:
        raise NoSuchModuleError(parsed.drivername)
    busy_ms = int(timeouts.statement_s * 1000)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            folder = Path(parsed.database).parent
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(
                    f"the SQLite file's folder {folder} cannot be created ({exc.strerror}): "
                    "choose a writable place with CONCIERGE_DATA_DIR or DATABASE_URL"
                ) from None
        engine = create_engine(
            url, connect_args={"timeout": timeouts.statement_s, "check_same_thread": False}
        )

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute(f"PRAGMA busy_timeout={busy_ms}")
            cur.close()

        return engine
    # libpq counts whole seconds (and at least 2); the server cancels a statement, or a wait
    # for a lock, that takes longer than the statement timeout.
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=10,
        max_overflow=20,
        pool_timeout=timeouts.connect_s,
        connect_args={
            "connect_timeout": max(2, math.ceil(timeouts.connect_s)),
            "options": f"-c statement_timeout={busy_ms} -c lock_timeout={busy_ms}",
        },
    )


def _alembic_config(engine: Engine) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


def _where(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)


def current_revisions(engine: Engine) -> tuple[str, ...]:
    """The schema's revisions as the database records them (empty: no schema yet)."""
    with engine.connect() as conn:
        return tuple(sorted(MigrationContext.configure(conn).get_current_heads()))


def is_current(engine: Engine) -> bool:
    script = ScriptDirectory.from_config(_alembic_config(engine))
    return set(current_revisions(engine)) == set(script.get_heads())


@dataclass(frozen=True)
class Migration:
    """What ``upgrade`` did: the revisions before and after."""

    before: tuple[str, ...]
    after: tuple[str, ...]

    @property
    def summary(self) -> str:
        after = ", ".join(self.after) or "none"
        if not self.before:
            return f"created the schema at revision {after}"
        if self.before == self.after:
            return f"already up to date at revision {after}"
        return f"upgraded the schema from revision {', '.join(self.before)} to {after}"


def upgrade(engine: Engine) -> Migration:
    """Apply all migrations (``app.py db upgrade``; also done on start when behind)."""
    with _migrate_lock:
        try:
            before = current_revisions(engine)
            _refuse_newer_schema(engine)
            command.upgrade(_alembic_config(engine), "head")
            done = Migration(before, current_revisions(engine))
        except SQLAlchemyError as exc:
            hint = ""
            if getattr(getattr(exc, "orig", None), "sqlstate", None) == "42501":
                # e.g. serve runs as the app role (revision 0006), which may not change tables
                hint = " (this role may not change the schema: run `app.py db upgrade` as the "
                hint += "role that owns the tables)"
            raise StoreError(
                f"cannot migrate the database ({_where(engine)}): {describe(exc, engine.url)}{hint}"
            ) from exc
    if done.before != done.after:
        log.info("database %s: %s", _where(engine), done.summary)
    return done


def ensure_schema(engine: Engine) -> None:
    """Migrate when the database is behind; cheap when it is current."""
    try:
        current = is_current(engine)
    except SQLAlchemyError as exc:
        verb = "reach" if kind_of(exc) in REACH_PROBLEMS else "use"
        raise StoreError(
            f"cannot {verb} the database ({_where(engine)}): {describe(exc, engine.url)}"
        ) from exc
    if not current:
        upgrade(engine)


def _refuse_newer_schema(engine: Engine) -> None:
    """An older release (an instance restarted during a rolling upgrade) cannot move the
    schema back and must not guess at tables it does not know: say so, no traceback."""
    script = ScriptDirectory.from_config(_alembic_config(engine))
    known = {rev.revision for rev in script.walk_revisions()}
    with engine.connect() as conn:
        heads = set(MigrationContext.configure(conn).get_current_heads())
    unknown = sorted(heads - known)
    if unknown:
        raise StoreError(
            f"the database schema ({', '.join(unknown)}) is newer than this release: "
            "run the release that migrated it"
        )


class Store:
    """The engine plus a session factory; passed to whatever needs the database."""

    def __init__(self, engine: Engine, timeouts: Timeouts | None = None) -> None:
        self.engine = engine
        self.timeouts = timeouts or Timeouts()
        self.health = Health(engine.url.render_as_string(hide_password=True))
        # Where records of what already happened wait while the database is away (set by
        # the runtime; a bare Store, as admin commands open, refuses instead).
        self.spool: Any = None
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._threads: ThreadPoolExecutor | None = None
        self._executor_lock = threading.Lock()

    @classmethod
    def open(cls, url: str, *, migrate: bool = True, timeouts: Timeouts | None = None) -> Store:
        engine = make_engine(url, timeouts)
        if migrate:
            ensure_schema(engine)
        return cls(engine, timeouts)

    @classmethod
    def open_degraded(cls, url: str, *, timeouts: Timeouts | None = None) -> Store:
        """Open and migrate when the database answers; when it cannot be reached, open it
        anyway (marked down) so that questions are answered and their records spooled."""
        try:
            return cls.open(url, timeouts=timeouts)
        except StoreError as exc:
            if not is_unavailable(exc.__cause__ or exc):
                raise
            store = cls(make_engine(url, timeouts), timeouts)
            cause = exc.__cause__
            store.health.failed(describe(cause, store.engine.url) if cause else str(exc))
            return store

    def unavailable(self) -> StoreUnavailable:
        return StoreUnavailable(
            "the database cannot be reached right now; nothing was changed, try again shortly"
        )

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session per unit of work: committed on success, rolled back on error. Fails at
        once with ``StoreUnavailable`` while the database is known to be down."""
        if not self.health.should_try():
            raise self.unavailable()
        with self._sessions() as session:
            try:
                yield session
                session.commit()
            except BaseException as exc:
                with contextlib.suppress(Exception):  # a dead connection cannot roll back
                    session.rollback()
                if is_unavailable(exc):
                    self.health.failed(describe(exc, self.engine.url))
                    raise self.unavailable() from exc
                raise
        self.health.ok()

    async def call(
        self, work: Callable[[], T], timeout_s: float | None = None, *, even_if_down: bool = False
    ) -> T:
        """Run ``work`` (synchronous database work) on the store's own threads, waiting at most
        the client-side bound once it has started: a server that accepts connections and then
        says nothing still cannot hold a question. Time spent waiting for a free database
        thread is this process's own load, not the database's silence, so it does not count
        (under a burst it would declare a healthy database down). The thread finishes on its
        own; its late commit is harmless because every spooled record is replayed
        idempotently. ``even_if_down``: run while the database is known to be down (a
        readiness probe looking for its return)."""
        if not even_if_down and not self.health.should_try():
            raise self.unavailable()
        started: list[float] = []
        loop = asyncio.get_running_loop()

        def run() -> T:
            started.append(loop.time())
            if not even_if_down and not self.health.should_try():  # found down meanwhile
                raise self.unavailable()
            return work()

        context = contextvars.copy_context()
        job = asyncio.wrap_future(self._executor().submit(context.run, run))
        bound = timeout_s or self.timeouts.call_s
        try:
            while True:
                if not started and not even_if_down and not self.health.should_try():
                    job.cancel()  # still queued, and the database was found down meanwhile
                    raise self.unavailable()
                left = QUEUED_POLL_S if not started else started[0] + bound - loop.time()
                if left <= 0:
                    job.cancel()  # the thread finishes on its own; its outcome is not wanted
                    self.health.failed("no answer within the timeout")
                    raise self.unavailable()
                done, _ = await asyncio.wait({job}, timeout=left)
                if done:
                    return job.result()
        except asyncio.CancelledError:
            job.cancel()  # not started yet: never runs
            raise

    def _executor(self) -> ThreadPoolExecutor:
        """The threads database work runs on, as many as the connection pool can serve at once
        (created on first use), apart from the event loop's default executor."""
        with self._executor_lock:
            if self._threads is None:
                size = self.engine.pool.size() if hasattr(self.engine.pool, "size") else 0
                overflow = getattr(self.engine.pool, "_max_overflow", 0)
                workers = max(DB_THREADS_MIN, min(DB_THREADS_MAX, size + max(0, overflow)))
                self._threads = ThreadPoolExecutor(workers, thread_name_prefix="concierge-db")
            return self._threads

    def probe(self) -> bool:
        """One ``SELECT 1``, whatever the health says; True (and healthy) when it answered."""
        try:
            with self.engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
        except SQLAlchemyError as exc:
            if is_unavailable(exc):
                self.health.failed(describe(exc, self.engine.url))
                return False
            raise
        self.health.ok()
        return True

    def close(self) -> None:
        if self._threads is not None:
            self._threads.shutdown(wait=False, cancel_futures=True)
        self.engine.dispose()
