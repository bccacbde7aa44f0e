"""The http connector against a local JSON search API stand-in (port 0): results mapped to
passages, per-hit readers, credentials from the environment, and every failure closed."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from bot.config import load_config
from connectors.base import AccessDenied, ConnectorContext, SourceUnavailable
from connectors.http import HttpConnector

HITS = [
    {
        "title": "VPN setup",
        "snippet": "Install Tailscale and sign in with Okta to reach the VPN.",
        "url": "https://wiki.x.test/vpn",
        "score": 2.0,
    },
    {
        "title": "Payroll codes",
        "snippet": "Payroll override code CANARY-WIKI-77.",
        "url": "https://wiki.x.test/payroll",
        "readers": ["group:finance"],
        "score": 1.5,
    },
    {"title": "Broken ACL", "snippet": "CANARY-BAD-ACL", "readers": ["not a reader"]},
]


class Wiki:
    def __init__(self) -> None:
        self.mode = "ok"
        self.requests: list[dict[str, Any]] = []

    async def search(self, request: web.Request) -> web.Response:
        self.requests.append({"query": request.query.get("q"), "headers": dict(request.headers)})
        if self.mode == "slow":
            await asyncio.sleep(5)
        if self.mode == "500":
            return web.Response(status=500, text="boom")
        if self.mode == "html":
            return web.Response(text="<html>login</html>", content_type="text/html")
        if self.mode == "shape":
            return web.json_response({"items": []})
        return web.json_response({"results": HITS})


@pytest.fixture
async def wiki() -> AsyncIterator[tuple[Wiki, str]]:
    w = Wiki()
    app = web.Application()
    app.router.add_get("/search", w.search)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield w, f"http://127.0.0.1:{port}/search?q={{query}}&limit={{k}}"
    await runner.cleanup()


def connector(tmp_path, url: str, secrets: dict[str, str] | None = None) -> HttpConnector:  # type: ignore[no-untyped-def]
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "sources:\n  - name: wiki\n    kind: http\n"
        "    readers: [group:engineering, group:finance]\n"
        f"    url: '{url}'\n    timeout_s: 0.5\n    auth_header: Authorization\n"
        "    auth_env: WIKI_TOKEN\n    identity_header: X-Concierge-User\n"
        "    fields: {title: title, text: snippet, uri: url, readers: readers}\n"
    )
    config = load_config(cfg)
    ctx = ConnectorContext(
        config=config,
        index_dir=tmp_path / "idx",
        secrets={"WIKI_TOKEN": "Bearer s3cret"} if secrets is None else secrets,
    )
    return HttpConnector(config.sources[0], ctx)


ENG = frozenset({"everyone", "user:eve@x.test", "group:engineering"})
FIN = frozenset({"everyone", "user:fin@x.test", "group:finance"})


async def test_hits_become_passages_filtered_by_their_own_readers(wiki, tmp_path) -> None:
    w, url = wiki
    conn = connector(tmp_path, url)
    eve = await conn.search(query="vpn payroll", principals=ENG, k=5)
    assert [p.title for p in eve] == ["VPN setup"]
    assert eve[0].uri == "https://wiki.x.test/vpn" and eve[0].source == "wiki"
    fin = await conn.search(query="vpn payroll", principals=FIN, k=5)
    assert [p.title for p in fin] == ["VPN setup", "Payroll codes"]
    assert all("CANARY-BAD-ACL" not in p.text for p in eve + fin)  # unreadable ACL: dropped
    sent = w.requests[-1]
    assert sent["query"] == "vpn payroll"
    assert sent["headers"]["Authorization"] == "Bearer s3cret"
    assert sent["headers"]["X-Concierge-User"] == "fin@x.test"


async def test_never_called_for_someone_who_may_not_read_it(wiki, tmp_path) -> None:
    w, url = wiki
    with pytest.raises(AccessDenied):
        await connector(tmp_path, url).search(query="vpn", principals=frozenset({"everyone"}), k=5)
    assert w.requests == []


@pytest.mark.parametrize("mode", ["slow", "500", "html", "shape"])
async def test_failures_are_closed(wiki, tmp_path, mode: str) -> None:
    w, url = wiki
    w.mode = mode
    with pytest.raises(SourceUnavailable):
        await connector(tmp_path, url).search(query="vpn", principals=FIN, k=5)


async def test_missing_credentials_fail_closed_without_calling(wiki, tmp_path) -> None:
    w, url = wiki
    with pytest.raises(SourceUnavailable, match="credentials"):
        await connector(tmp_path, url, secrets={}).search(query="vpn", principals=FIN, k=5)
    assert w.requests == []


@pytest.fixture
def wiki_in_thread() -> Any:
    """The same API from the standard library's threaded HTTP server, for tests that run the
    (synchronous) command line, which starts its own event loop."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from urllib.parse import parse_qs, urlparse

    w = Wiki()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            query = parse_qs(urlparse(self.path).query)
            w.requests.append({"query": query.get("q", [""])[0], "headers": dict(self.headers)})
            ok = w.mode != "500"
            body = json.dumps({"results": HITS}).encode() if ok else b"boom"
            self.send_response(200 if ok else 500)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield w, f"http://127.0.0.1:{server.server_address[1]}/search?q={{query}}&limit={{k}}"
    server.shutdown()
    thread.join(10)


def test_through_the_cli_with_the_token_from_the_environment(
    wiki_in_thread, cli, workspace, monkeypatch
) -> None:
    w, url = wiki_in_thread
    text = workspace.config.read_text().replace(
        "limits:",
        "  - {name: wiki, kind: http, readers: everyone, url: '" + url + "', "
        "auth_header: Authorization, auth_env: WIKI_TOKEN, "
        "fields: {title: title, text: snippet, uri: url, readers: readers}}\nlimits:",
    )
    workspace.config.write_text(text)
    monkeypatch.setenv("WIKI_TOKEN", "Bearer from-env")
    r = cli("ask", "How do I reach the VPN?", "--as", "maya@canary.test", "--json")
    assert r.code == 0, r.err
    data = json.loads(r.out)
    assert "Tailscale" in data["answer"] and "CANARY-WIKI-77" not in data["answer"]
    assert w.requests[-1]["headers"]["Authorization"] == "Bearer from-env"
    assert "from-env" not in r.out + r.err
    w.mode = "500"
    r2 = json.loads(cli("ask", "How do I reach the VPN?", "--as", "maya@canary.test", "--json").out)
    assert "wiki could not be searched right now" in r2["answer"]
