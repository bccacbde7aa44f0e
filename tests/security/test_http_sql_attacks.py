"""Attacks typed as questions against the http and sql connectors, through their public
``search``: path traversal and parameter injection into the URL, redirects that would carry
the credentials elsewhere, rows fetched as one person, and LIKE wildcards.

The http stand-ins are local servers on port 0 that record every request; the sql tests run
on real SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
import yaml
from aiohttp import web
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine, text

from bot.config import load_config
from bot.store.db import normalise_url
from connectors.base import ConnectorContext, SourceUnavailable
from connectors.http import HttpConnector
from connectors.sql import SqlConnector

EVE = frozenset({"everyone", "user:eve@x.test", "group:engineering"})
HITS = [{"title": "VPN setup", "snippet": "Install Tailscale to reach the VPN.", "url": "u"}]
TOKEN = "Bearer s3cret-token"


class Stand:
    """A JSON search API stand-in: records each request; answers a redirect for the paths
    in ``redirects`` and the hits for any other path."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.redirects: dict[str, str] = {}

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(
            {
                "path": request.rel_url.raw_path,
                "params": list(request.query.items()),
                "headers": dict(request.headers),
            }
        )
        if request.rel_url.raw_path in self.redirects:
            raise web.HTTPFound(self.redirects[request.rel_url.raw_path])
        return web.json_response({"results": HITS})


Serve = Callable[[], Awaitable[tuple[Stand, str]]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """Starts stand-ins on port 0; each call gives one (recorder, http://127.0.0.1:PORT)."""
    runners: list[web.AppRunner] = []

    async def start() -> tuple[Stand, str]:
        stand = Stand()
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", stand.handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return stand, f"http://127.0.0.1:{port}"

    yield start
    for runner in runners:
        await runner.cleanup()


def http_source(tmp_path: Path, url: str, **settings: Any) -> HttpConnector:
    entry = {
        "name": "wiki",
        "kind": "http",
        "readers": ["group:engineering"],
        "url": url,
        "timeout_s": 2,
        "auth_header": "Authorization",
        "auth_env": "WIKI_TOKEN",
        "fields": {"title": "title", "text": "snippet", "uri": "url"},
        **settings,
    }
    cfg = tmp_path / "http.yaml"
    cfg.write_text(yaml.safe_dump({"sources": [entry]}))
    config = load_config(cfg)
    ctx = ConnectorContext(config=config, index_dir=tmp_path / "idx", secrets={"WIKI_TOKEN": TOKEN})
    return HttpConnector(config.sources[0], ctx)


# --- the question in the URL -------------------------------------------------------------


@pytest.mark.parametrize("template", ["/api/{query}/search", "/api/search/{query}"])
async def test_path_traversal_question_never_reaches_another_path(
    serve: Serve, tmp_path: Path, template: str
) -> None:
    stand, base = await serve()
    conn = http_source(tmp_path, base + template)
    found = await conn.search(query="../../admin/secrets", principals=EVE, k=5)
    assert [p.title for p in found] == ["VPN setup"]
    [sent] = stand.requests
    assert not sent["path"].startswith("/admin") and sent["path"].startswith("/api/")
    assert "..%2F..%2Fadmin%2Fsecrets" in sent["path"]


@pytest.mark.parametrize("question", ["..", "."])
async def test_dot_segment_question_fails_closed_without_a_request(
    serve: Serve, tmp_path: Path, question: str
) -> None:
    stand, base = await serve()
    conn = http_source(tmp_path, base + "/api/search/{query}")
    with pytest.raises(SourceUnavailable, match="cannot be asked"):
        await conn.search(query=question, principals=EVE, k=5)
    assert stand.requests == []


async def test_query_string_injection_cannot_add_parameters(serve: Serve, tmp_path: Path) -> None:
    stand, base = await serve()
    conn = http_source(tmp_path, base + "/search?q={query}&limit={k}")
    question = "x&limit=1000&admin=1#frag"
    await conn.search(query=question, principals=EVE, k=5)
    [sent] = stand.requests
    assert sent["params"] == [("q", question), ("limit", "5")]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://{query}.wiki.test/search", "never in its host"),
        ("http://wiki.test:{k}/search?q={query}", "never in its host"),
        ("http://wiki.test/search#{query}", "never in its host"),
        ("http://bot:pw@wiki.test/search?q={query}", "must not hold credentials"),
    ],
)
def test_url_letting_the_question_pick_the_host_is_refused_at_load(
    tmp_path: Path, url: str, message: str
) -> None:
    from bot.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        http_source(tmp_path, url)


# --- redirects -----------------------------------------------------------------------------


@pytest.mark.parametrize("auth_header", ["Authorization", "X-Api-Key"])
async def test_redirect_to_another_origin_gets_no_credentials(
    serve: Serve, tmp_path: Path, caplog: pytest.LogCaptureFixture, auth_header: str
) -> None:
    wiki, base = await serve()
    other, other_base = await serve()
    wiki.redirects["/search"] = other_base + "/search?q=vpn"
    conn = http_source(
        tmp_path,
        base + "/search?q={query}",
        auth_header=auth_header,
        identity_header="X-Concierge-User",
    )
    with caplog.at_level(logging.WARNING), pytest.raises(SourceUnavailable, match="another"):
        await conn.search(query="vpn", principals=EVE, k=5)
    assert wiki.requests[0]["headers"][auth_header] == TOKEN
    assert other.requests == []  # nothing at all reaches the other origin
    assert "another origin" in caplog.text and "s3cret" not in caplog.text


async def test_same_origin_redirect_is_followed_a_few_hops_only(
    serve: Serve, tmp_path: Path
) -> None:
    wiki, base = await serve()
    wiki.redirects["/old"] = "/search?q=moved"
    conn = http_source(tmp_path, base + "/old?q={query}")
    found = await conn.search(query="vpn", principals=EVE, k=5)
    assert [p.title for p in found] == ["VPN setup"]
    assert [r["path"] for r in wiki.requests] == ["/old", "/search"]
    assert wiki.requests[1]["headers"]["Authorization"] == TOKEN
    wiki.requests.clear()
    wiki.redirects["/loop"] = "/loop"
    loop = http_source(tmp_path, base + "/loop?q={query}")
    with pytest.raises(SourceUnavailable):
        await loop.search(query="vpn", principals=EVE, k=5)
    assert len(wiki.requests) == 4  # the request and at most three redirects


# --- rows fetched as one person ------------------------------------------------------------


async def test_identity_header_hits_are_marked_personal_to_the_asker(
    serve: Serve, tmp_path: Path
) -> None:
    wiki, base = await serve()
    mine = http_source(tmp_path, base + "/search?q={query}", identity_header="X-Concierge-User")
    found = await mine.search(query="vpn", principals=EVE, k=5)
    assert found and all(p.personal == "eve@x.test" for p in found)
    assert wiki.requests[-1]["headers"]["X-Concierge-User"] == "eve@x.test"
    shared = http_source(tmp_path, base + "/search?q={query}")
    assert all(p.personal is None for p in await shared.search(query="v", principals=EVE, k=5))


@pytest.mark.parametrize(
    "principals",
    [
        EVE | {"user:mallory@x.test"},  # two identities: which one would the rows be for?
        EVE - {"user:eve@x.test"},  # none: the header would be sent empty
    ],
)
async def test_identity_source_fails_closed_without_exactly_one_asker(
    serve: Serve, tmp_path: Path, principals: frozenset[str]
) -> None:
    wiki, base = await serve()
    conn = http_source(tmp_path, base + "/search?q={query}", identity_header="X-Concierge-User")
    with pytest.raises(SourceUnavailable, match="exactly one asker"):
        await conn.search(query="vpn", principals=principals, k=5)
    assert wiki.requests == []


@pytest.fixture
def notes_url(db_url: str) -> str:
    engine = create_engine(normalise_url(db_url))
    with engine.begin() as c:
        c.execute(
            text(
                "CREATE TABLE notes (id INTEGER PRIMARY KEY, owner VARCHAR(100), "
                "title VARCHAR(200), body TEXT, url VARCHAR(200))"
            )
        )
        c.execute(
            text(
                "INSERT INTO notes (id, owner, title, body, url) VALUES "
                "(1, 'eve@x.test', 'Quarterly plan', 'quarterly numbers for eve', 'n/1'),"
                "(2, 'sam@x.test', 'Salary review', 'CANARY-LIKE-SAM salary of sam', 'n/2'),"
                "(3, 'sam@x.test', 'Naming', 'we use snake_case names', 'n/3')"
            )
        )
    engine.dispose()
    return db_url


def sql_source(tmp_path: Path, url: str, queries: dict[str, str]) -> SqlConnector:
    entry = {
        "name": "notes",
        "kind": "sql",
        "readers": ["group:engineering"],
        "url_env": "NOTES_URL",
        "queries": [
            {"name": name, "sql": sql, "fields": {"title": "title", "text": "body", "uri": "url"}}
            for name, sql in queries.items()
        ],
    }
    cfg = tmp_path / "sql.yaml"
    cfg.write_text(yaml.safe_dump({"sources": [entry]}))
    config = load_config(cfg)
    ctx = ConnectorContext(config=config, index_dir=tmp_path / "i", secrets={"NOTES_URL": url})
    return SqlConnector(config.sources[0], ctx)


MINE = "SELECT title, body, url FROM notes WHERE owner = :asker_email"
PUBLIC = "SELECT title, body, url FROM notes WHERE id = 3"


async def test_sql_rows_fetched_as_the_asker_are_marked_personal(
    notes_url: str, tmp_path: Path
) -> None:
    conn = sql_source(tmp_path, notes_url, {"mine": MINE, "naming": PUBLIC})
    found = {p.title: p.personal for p in await conn.search(query="x", principals=EVE, k=5)}
    assert found == {"Quarterly plan": "eve@x.test", "Naming": None}


async def test_sql_asker_query_fails_closed_without_exactly_one_asker(
    notes_url: str, tmp_path: Path
) -> None:
    conn = sql_source(tmp_path, notes_url, {"mine": MINE})
    for principals in (EVE | {"user:sam@x.test"}, EVE - {"user:eve@x.test"}):
        with pytest.raises(SourceUnavailable, match="exactly one asker"):
            await conn.search(query="salary", principals=principals, k=5)


# --- LIKE wildcards ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "where", ["body LIKE :like", "body LIKE :like ESCAPE '\\'"], ids=["plain", "escape"]
)
async def test_like_wildcards_from_the_question_match_nothing(
    notes_url: str, tmp_path: Path, where: str
) -> None:
    conn = sql_source(
        tmp_path, notes_url, {"search": f"SELECT title, body, url FROM notes WHERE {where}"}
    )
    for question in ("%", "___", "%_%", "what about ____ ?", "\\%"):
        found = await conn.search(query=question, principals=EVE, k=5)
        assert found == [], question
    found = await conn.search(query="quarterly numbers?", principals=EVE, k=5)
    assert [p.title for p in found] == ["Quarterly plan"]
    found = await conn.search(query="why snake_case?", principals=EVE, k=5)
    assert [p.title for p in found] == ["Naming"]


# --- property: no question changes the URL beyond its own value ---------------------------


class _Recorder(BaseHTTPRequestHandler):
    requests: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        type(self).requests.append(self.path)
        body = json.dumps({"results": []}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        return


@pytest.fixture(scope="module")
def threaded_stand() -> Iterator[str]:
    """One stand-in for every example (a threaded server: each example runs its own loop)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    thread.join(10)


PIECES = st.sampled_from(
    ["/", "..", ".", "%2e", "%2E%2e", "%2f", "?", "#", "&", "=", "+", "%", "\n", "\r\n", ";", "@"]
)
QUESTIONS = st.lists(st.one_of(st.text(max_size=6), PIECES), max_size=8).map("".join)


def _split(raw: str) -> tuple[str, list[tuple[str, str]]]:
    path, _, query = raw.partition("?")
    return path, urllib.parse.parse_qsl(query, keep_blank_values=True)


@pytest.mark.parametrize(
    "template", ["/api/{query}/search?limit={k}", "/api/search/{query}", "/s?q={query}&limit={k}"]
)
@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(question=QUESTIONS)
@example(question="../../admin/secrets")
@example(question="x&limit=1000&admin=1")
@example(question="..")
def test_no_question_changes_the_url_beyond_its_own_value(
    threaded_stand: str, tmp_path: Path, template: str, question: str
) -> None:
    conn = http_source(tmp_path, threaded_stand + template)
    _Recorder.requests = []
    try:
        asyncio.run(conn.search(query=question, principals=EVE, k=5))
    except SourceUnavailable:
        assert _Recorder.requests == []  # refused: nothing was sent
        return
    [raw] = _Recorder.requests  # the request reached this host and port, once
    path, params = _split(raw)
    if template.startswith("/s?"):
        assert path == "/s" and params == [("q", question), ("limit", "5")]
        return
    assert ".." not in [urllib.parse.unquote(s) for s in path.split("/")]
    if template.startswith("/api/{query}"):
        assert path.startswith("/api/") and path.endswith("/search")
        assert urllib.parse.unquote(path[len("/api/") : -len("/search")]) == question
        assert params == [("limit", "5")]
    else:
        assert path.startswith("/api/search/") and params == []
        assert urllib.parse.unquote(path[len("/api/search/") :]) == question
