"""Why the database cannot be used, said so that a person can fix it.

Drivers report every failure to connect as one exception class (``OperationalError``), so the
cause is read from the driver's message: a database that does not exist, a role or password
the server refuses, nothing listening at the host and port, a host name that does not
resolve, a server that does not answer in time, a SQLite file that cannot be opened. Each
becomes one sentence with the fix. Nothing here prints the password of a URL.
"""

from __future__ import annotations

import re

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError
from sqlalchemy.exc import TimeoutError as PoolTimeout

SUPPORTED = "use postgresql://USER:PASSWORD@HOST:PORT/DATABASE or sqlite:///PATH"

# Causes that mean the server could not be reached (as opposed to reached and refusing).
REACH_PROBLEMS = frozenset({"refused", "unknown_host", "timeout", "full", "not_ready"})

_QUOTED = r'"([^"]+)"'
_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(rf"database {_QUOTED} does not exist", re.I), "unknown_database"),
    (re.compile(rf"role {_QUOTED} does not exist", re.I), "unknown_role"),
    (re.compile(rf"password authentication failed for user {_QUOTED}", re.I), "password"),
    (re.compile(r"no password supplied|fe_sendauth", re.I), "no_password"),
    (re.compile(r"no pg_hba\.conf entry", re.I), "pg_hba"),
    (re.compile(rf"permission denied for database {_QUOTED}", re.I), "no_connect"),
    (re.compile(r"connection refused", re.I), "refused"),
    (
        re.compile(
            r"could not translate host name|failed to resolve host|name or service not known",
            re.I,
        ),
        "unknown_host",
    ),
    (re.compile(r"timeout expired|timed out|statement timeout", re.I), "timeout"),
    (re.compile(r"too many (connections|clients)|remaining connection slots", re.I), "full"),
    (re.compile(r"starting up|shutting down|in recovery mode", re.I), "not_ready"),
    (re.compile(r"unable to open database file", re.I), "sqlite_open"),
    (re.compile(r"readonly database|read-only", re.I), "sqlite_readonly"),
    (re.compile(r"file is not a database|malformed", re.I), "sqlite_corrupt"),
    (re.compile(r"database is locked|busy", re.I), "sqlite_locked"),
)


def _where(url: URL) -> str:
    return f"{url.host or 'localhost'}:{url.port or 5432}"


def _opts(url: URL) -> str:
    """``-h HOST -p PORT`` for the PostgreSQL client tools, matching the URL."""
    return f"-h {url.host or 'localhost'} -p {url.port or 5432}"


def kind_of(exc: BaseException) -> str:
    """A short name for the cause (``unknown_database``, ``refused``, …; ``other``)."""
    if isinstance(exc, PoolTimeout | TimeoutError):
        return "timeout"
    text = str(getattr(exc, "orig", None) or exc)
    for pattern, kind in _RULES:
        if pattern.search(text):
            return kind
    return "other"


def describe(exc: BaseException, url: str | URL | None = None) -> str:
    """The cause of ``exc`` and what to do about it, in one line."""
    parsed = _parse(url)
    text = str(getattr(exc, "orig", None) or exc)
    kind = kind_of(exc)
    name = ""
    for pattern, rule in _RULES:
        found = pattern.search(text) if rule == kind and pattern.groups else None
        if found:
            name = found.group(1)
            break
    if parsed is None or parsed.get_backend_name() != "sqlite":
        where = _where(parsed) if parsed is not None else "the server"
        opts = _opts(parsed) if parsed is not None else ""
        user = (parsed.username if parsed is not None else None) or name
        pg = {
            "unknown_database": (
                f'database "{name}" does not exist on {where}: create it '
                f"(createdb {opts} {name}) or correct the database name in DATABASE_URL"
            ),
            "unknown_role": (
                f'PostgreSQL at {where} has no role "{name}": create it '
                f"(createuser {opts} {name}) or put an existing user in DATABASE_URL "
                "(postgresql://USER:PASSWORD@HOST:PORT/DATABASE)"
            ),
            "password": (
                f'PostgreSQL at {where} refused the password for user "{name}": '
                "correct the user and password in DATABASE_URL"
            ),
            "no_password": (
                f"PostgreSQL at {where} asks for a password and DATABASE_URL has none: "
                "add it (postgresql://USER:PASSWORD@HOST:PORT/DATABASE)"
            ),
            "pg_hba": (
                f"PostgreSQL at {where} does not accept this user from this machine "
                "(no pg_hba.conf entry): ask its administrator, or use another user"
            ),
            "no_connect": (
                f'user "{user}" may not connect to database "{name}" on {where}: '
                f"GRANT CONNECT ON DATABASE {name} TO {user}, or use another user"
            ),
            "refused": (
                f"nothing accepts connections at {where} (connection refused): start "
                "PostgreSQL there, or correct the host and port in DATABASE_URL "
                "(PostgreSQL's default port is 5432)"
            ),
            "unknown_host": (
                f"the host {parsed.host if parsed is not None else ''!r} in DATABASE_URL "
                "cannot be found: correct its spelling"
            ),
            "timeout": (
                f"the database at {where} did not answer in time: check the host and port "
                "in DATABASE_URL and that no firewall drops the connection "
                "(CONCIERGE_DB_CONNECT_TIMEOUT_S sets how long to wait)"
            ),
            "full": f"PostgreSQL at {where} has no connection slots left: try again shortly",
            "not_ready": f"PostgreSQL at {where} is starting or stopping: try again shortly",
        }
        if kind in pg:
            return pg[kind]
    else:
        path = parsed.database or ""
        lite = {
            "sqlite_open": (
                f"the SQLite file {path} cannot be opened: make sure its folder exists and "
                "is writable (CONCIERGE_DATA_DIR, or the path in DATABASE_URL)"
            ),
            "sqlite_readonly": (
                f"the SQLite file {path} is read-only: make it and its folder writable"
            ),
            "sqlite_corrupt": f"{path} is not a SQLite database: point DATABASE_URL elsewhere",
            "sqlite_locked": (
                f"the SQLite file {path} is locked by another process: try again shortly"
            ),
            "timeout": f"the SQLite file {path} stayed locked too long: try again shortly",
        }
        if kind in lite:
            return lite[kind]
    first = text.strip().splitlines()[0] if text.strip() else ""
    return f"{exc.__class__.__name__}: {first}" if first else exc.__class__.__name__


def describe_url_problem(url: str, exc: BaseException) -> str:
    """A DATABASE_URL that cannot be used at all: not a URL, or a driver we do not ship."""
    if isinstance(exc, ArgumentError) and _parse(url) is None:
        return f"DATABASE_URL is not a database URL: {SUPPORTED}"
    parsed = _parse(url)
    scheme = parsed.drivername if parsed is not None else url.split(":", 1)[0]
    if parsed is not None and parsed.get_backend_name() == "postgresql":
        return (
            f"DATABASE_URL names the driver {parsed.get_driver_name()!r} ({scheme}://), which "
            "is not installed: use postgresql:// (psycopg 3, installed with Concierge)"
        )
    if isinstance(exc, NoSuchModuleError | ImportError):
        return (
            f"DATABASE_URL uses {scheme}://, which Concierge does not support (its driver is "
            f"not installed): {SUPPORTED}"
        )
    return f"DATABASE_URL cannot be used ({exc.__class__.__name__}): {SUPPORTED}"


def _parse(url: str | URL | None) -> URL | None:
    if url is None or isinstance(url, URL):
        return url
    try:
        return make_url(url)
    except ArgumentError:
        return None
