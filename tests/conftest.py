"""Shared fixtures: real SQLite and PostgreSQL databases, Redis with a per-run key prefix,
a workspace with a canary string in every restricted document, and the command line.

PostgreSQL and Redis are real services on 127.0.0.1. Locally a test that needs a missing
service is skipped; in CI (CI=true) it fails, so that a broken machine cannot pass.
"""

from __future__ import annotations

import io
import os
import sys
import textwrap
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bot.cli import run

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
PG_ADMIN_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_TEST_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
RUN_ID = uuid.uuid4().hex[:8]


def service_missing(what: str, exc: BaseException) -> None:
    message = f"{what} is not reachable ({exc.__class__.__name__}: {exc})"
    if IN_CI:
        pytest.fail(message + " — CI requires it", pytrace=False)
    pytest.skip(message)


# --- no secret in any log line of any test ------------------------------------------------


@pytest.fixture(autouse=True)
def _no_secret_in_logs(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Every log record of every test is checked for token patterns (Slack, cloud and
    provider keys, bearer tokens, private keys): a secret in a log is a leak wherever it
    comes from (DESIGN.md invariant 5)."""
    from bot.core.redaction import Redactor

    yield
    secrets = Redactor(("secret",))
    for record in caplog.get_records("call"):
        try:
            text = record.getMessage()
        except Exception:  # a record whose arguments do not format: nothing to scan
            continue
        found = secrets.redact(text)
        assert not found.counts, f"a secret-like token in a log line: {record.name}: {text[:200]}"


# --- PostgreSQL: one migrated template per run, one fresh database per test --------------


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    import psycopg

    from bot.store.db import Store

    name = f"concierge_tpl_{RUN_ID}"
    try:
        admin = psycopg.connect(
            PG_ADMIN_URL.replace("postgresql://", "postgresql://", 1),
            autocommit=True,
            connect_timeout=3,
        )
    except Exception as exc:
        service_missing("PostgreSQL at " + PG_ADMIN_URL, exc)
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = _pg_url(name)
    Store.open(url).close()
    try:
        yield name
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _pg_url(dbname: str) -> str:
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    return f"{base}/{dbname}"


@pytest.fixture
def pg_url(pg_template: str) -> Iterator[str]:
    import psycopg

    name = f"concierge_t_{RUN_ID}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"')
    try:
        yield _pg_url(name)
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'concierge.db'}"
    return str(request.getfixturevalue("pg_url"))


# --- Redis: a key prefix of our own per run ---------------------------------------------


@pytest.fixture
def redis_client() -> Iterator[object]:
    import redis

    client = redis.Redis.from_url(REDIS_TEST_URL, socket_timeout=2)
    try:
        client.ping()
    except Exception as exc:
        service_missing("Redis at " + REDIS_TEST_URL, exc)
    prefix = f"concierge-test:{RUN_ID}:{uuid.uuid4().hex[:6]}:"
    client.test_prefix = prefix  # type: ignore[attr-defined]
    try:
        yield client
    finally:
        keys = list(client.scan_iter(match=prefix + "*"))
        if keys:
            client.delete(*keys)
        client.close()


# --- a workspace with canaries -----------------------------------------------------------

CONFIG = """\
name: Canary Co
admins: [ada@canary.test]
owners: [olu@canary.test]
people:
  - {email: eve@canary.test, groups: [engineering]}
  - {email: sam@canary.test, groups: [engineering, sre]}
  - {email: hana@canary.test, groups: [people-ops]}
  - {email: fin@canary.test, groups: [finance]}
  - {email: maya@canary.test, groups: [sales]}
  - {email: gus@partner.test, groups: [engineering], guest: true}
roles:
  hr: {members: ["group:people-ops"]}
sources:
  - {name: handbook, kind: docs, path: ./handbook, readers: everyone, data_class: public}
  - {name: runbooks, kind: docs, path: ./runbooks, readers: [group:engineering]}
  - name: hr-policies
    kind: docs
    path: ./hr
    readers: [role:hr]
    data_class: confidential
    owner: hana@canary.test
    review: required
  - name: finance-notes
    kind: docs
    path: ./finance
    readers: [group:finance]
    data_class: confidential
limits: {questions_per_minute: 1000}
"""

# (folder, file, title, front-matter readers or None, body). Each restricted body holds a
# canary that must never reach anyone who may not read it.
DOCS = [
    (
        "handbook",
        "pto.md",
        "Paid time off",
        None,
        "Everyone gets 25 days of paid time off each year. You may carry over five days of "
        "unused time off until 31 March. Book holidays in Factorial two weeks ahead.",
    ),
    (
        "handbook",
        "parental.md",
        "Parental leave",
        None,
        "Primary caregivers get sixteen weeks of parental leave. People Ops handles the details "
        "of parental leave top-up pay.",
    ),
    (
        "handbook",
        "expenses.md",
        "Expenses",
        None,
        "Submit expenses in Pleo within thirty days. Managers approve expenses up to 1,000 EUR.",
    ),
    (
        "runbooks",
        "deploy.md",
        "Deploying a service",
        None,
        "To deploy a service, merge to main and Argo CD syncs the release within five minutes. "
        "The deploy freeze codeword for deploying a service is CANARY-RUNBOOK-7F3.",
    ),
    (
        "runbooks",
        "prod-access.md",
        "Production access",
        ["group:sre"],
        "Break-glass production database access needs approval from the SRE lead at vault "
        "path CANARY-SRE-91B.",
    ),
    (
        "hr",
        "topup.md",
        "Parental leave top-up",
        None,
        "Parental leave top-up pay brings salary to 100 percent for sixteen weeks, and payroll "
        "applies it with code CANARY-HR-22C.",
    ),
    (
        "hr",
        "bands.md",
        "Salary bands",
        None,
        "The L3 salary band in Lisbon is 42,000 to 54,000 EUR (review code CANARY-HR-BANDS).",
    ),
    (
        "finance",
        "limits.md",
        "Expense approval limits",
        None,
        "Directors approve expenses up to 10,000 EUR and the CFO approves above that, "
        "recorded in ledger CANARY-FIN-5D1.",
    ),
]

# question -> (source, canary) that answers it
PROBES = {
    "What is the deploy freeze codeword for deploying a service?": (
        "runbooks",
        "CANARY-RUNBOOK-7F3",
    ),
    "How do I get break-glass production database access?": ("runbooks", "CANARY-SRE-91B"),
    "How does parental leave top-up pay work with payroll?": ("hr-policies", "CANARY-HR-22C"),
    "What is the L3 salary band in Lisbon?": ("hr-policies", "CANARY-HR-BANDS"),
    "Who approves expenses above 1,000 EUR, directors or the CFO?": (
        "finance-notes",
        "CANARY-FIN-5D1",
    ),
}
CANARIES = {c: s for s, c in PROBES.values()}


@dataclass
class Workspace:
    root: Path
    config: Path

    def write(self, folder: str, name: str, text: str) -> Path:
        path = self.root / folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return path


def doc_text(title: str, readers: list[str] | None, body: str) -> str:
    front = f"title: {title}\n" + (f"readers: [{', '.join(readers)}]\n" if readers else "")
    return f"---\n{front}---\n\n{body}\n"


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    root = tmp_path / "ws"
    root.mkdir()
    (root / "concierge.yaml").write_text(CONFIG)
    ws = Workspace(root, root / "concierge.yaml")
    for folder, name, title, readers, body in DOCS:
        ws.write(folder, name, doc_text(title, readers, body))
    return ws


@pytest.fixture
def env(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, workspace: Workspace, db_url: str
) -> dict[str, str]:
    """The process environment a real operator would set, pointing at this test's world."""
    values = {
        "CONCIERGE_CONFIG": str(workspace.config),
        "DATABASE_URL": db_url,
        "CONCIERGE_DATA_DIR": str(tmp_path / "data"),
        "LOG_LEVEL": "DEBUG",
        "CONCIERGE_INDEX_REFRESH_S": "0",
    }
    for key in ("REDIS_URL", "SLACK_BOT_TOKEN", "SLACK_APP_TOKEN", "OPENAI_API_KEY"):
        monkeypatch.delenv(key, raising=False)
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    return values


@dataclass
class CliResult:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(env: dict[str, str], monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """Run the command line in this process, as ``python app.py ARGS`` would."""

    def invoke(*argv: str, stdin: str | None = None) -> CliResult:
        out, err = io.StringIO(), io.StringIO()
        if stdin is not None:
            monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        with redirect_stdout(out), redirect_stderr(err):
            code = run(list(argv))
        return CliResult(code, out.getvalue(), err.getvalue())

    return invoke


def dedent(text: str) -> str:
    return textwrap.dedent(text).lstrip()


# --- the Slack app served over HTTP against the Slack Web API stand-in ------------------


@pytest.fixture
async def slack(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Any]:
    import aiohttp

    from bot.settings import Settings
    from bot.slack.app import build_app
    from bot.slack.server import prepare, start_http
    from tests.slack_helpers import SECRET, SlackDriver
    from tests.standins import slack_api
    from tests.standins.slack_api import SlackStandIn

    api = SlackStandIn()
    api.add_user("UEVE", "eve@canary.test")
    api.add_user("UHANA", "hana@canary.test")
    api.add_user("UMAYA", "maya@canary.test")
    api.add_user("UGUS", "gus@partner.test", is_restricted=True)
    api.add_user("UNOMAIL", None)
    api.add_user("UEXT", "eve@canary.test", team_id="T9")  # Slack Connect: another workspace
    api.usergroups = [{"id": "S1", "handle": "finance", "users": ["UMAYA"]}]
    api.channels = {"C1": {"id": "C1", "name": "general"}, "C2": {"id": "C2", "name": "ops"}}
    api_runner = await slack_api.start(api)
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-test-token")
    monkeypatch.setenv("SLACK_SIGNING_SECRET", SECRET)
    monkeypatch.setenv("SLACK_API_URL", api.url.rstrip("/"))
    monkeypatch.setenv("CONCIERGE_SLACK_UPDATES_PER_MIN", "6000")
    monkeypatch.setenv("CONCIERGE_SLACK_APPENDS_PER_MIN", "6000")
    monkeypatch.setenv("CONCIERGE_SLACK_STREAMS_PER_MIN", "6000")
    monkeypatch.setenv("CONCIERGE_SLACK_WRITE_INTERVAL_S", "0")
    runtime, deps = await prepare(Settings())
    runner, port = await start_http(build_app(deps), deps, "127.0.0.1", 0)
    async with aiohttp.ClientSession() as session:
        driver = SlackDriver(f"http://127.0.0.1:{port}", api, deps, session)
        try:
            yield driver
            await driver.settle()
        finally:
            await runner.cleanup()
            await api_runner.cleanup()
            runtime.close()


@pytest.fixture
def proxy(env: dict[str, str], pg_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """PostgreSQL reached through a local TCP proxy (support/standins/tcp_proxy.py) that a test
    switches to refuse, hang or slow connections; ``DATABASE_URL`` points at it. A module
    using it sets ``db_url`` to ``pg_url``."""
    from sqlalchemy.engine import make_url

    from support.standins.tcp_proxy import TcpProxy

    url = make_url(pg_url)
    tcp = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    proxied = url.set(host="127.0.0.1", port=tcp.port).render_as_string(hide_password=False)
    monkeypatch.setenv("DATABASE_URL", proxied)
    try:
        yield tcp
    finally:
        tcp.close()
