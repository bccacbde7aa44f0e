"""A local stand-in of the Slack Web API: real HTTP on 127.0.0.1, port 0.

It speaks the wire protocol slack_sdk uses (POST /api/<method>, form or JSON bodies, JSON
answers with ``ok``, HTTP 429 with Retry-After), records every call, keeps the messages it
was sent (including streamed ones) and can be told to fail a method a number of times
(``fail``) or to answer it slowly (``delays``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from aiohttp import WSMsgType, web

BOT_USER = "UBOT"
TEAM = "T1"


# The parsed parameters of a call, kept on the request for the call log.
PARAMS = web.RequestKey("params", dict)


@dataclass
class Message:
    channel: str
    ts: str
    thread_ts: str | None
    text: str = ""
    blocks: list[Any] = field(default_factory=list)
    streaming: bool = False
    stopped: bool = False

    def full_text(self) -> str:
        """What a person sees: the text plus any markdown blocks."""
        parts = [self.text]
        for b in self.blocks:
            if b.get("type") == "markdown":
                parts.append(b.get("text", ""))
            if b.get("type") == "context":
                parts.extend(e.get("text", "") for e in b.get("elements", []))
        return "\n".join(parts)


@dataclass
class SlackStandIn:
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    usergroups: list[dict[str, Any]] = field(default_factory=list)
    channels: dict[str, dict[str, Any]] = field(default_factory=dict)
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    messages: dict[str, Message] = field(default_factory=dict)
    faults: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    native_streaming: bool = True
    url: str = ""
    socket_acks: list[dict[str, Any]] = field(default_factory=list)
    missing: set[str] = field(default_factory=set)  # methods answered with HTTP 404
    uploads: dict[str, dict[str, Any]] = field(default_factory=dict)
    channel_members: dict[str, list[str]] = field(default_factory=dict)
    delays: dict[str, float] = field(default_factory=dict)  # seconds before a method answers
    # The most calls of each method that were being answered at once (concurrency seen).
    peak: dict[str, int] = field(default_factory=dict)
    # (arrival time.monotonic(), method, channel, HTTP status) of every call, once answered
    log: list[tuple[float, str, str, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._ts = itertools.count(1)
        self._open: dict[str, int] = {}
        self.socket_outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.socket_connected = asyncio.Event()

    # -- test helpers ------------------------------------------------------------------
    def add_user(self, uid: str, email: str | None, **flags: Any) -> None:
        profile = {"email": email} if email else {}
        self.users[uid] = {
            "id": uid,
            "team_id": TEAM,
            "real_name": uid,
            "profile": profile,
            **flags,
        }

    def fail(
        self, method: str, *, status: int = 429, retry_after: float = 0.2, times: int = 1
    ) -> None:
        self.faults.setdefault(method, []).extend([(status, retry_after)] * times)

    def called(self, method: str) -> list[dict[str, Any]]:
        return [p for m, p in self.calls if m == method]

    def in_channel(self, channel: str) -> list[Message]:
        return [m for m in self.messages.values() if m.channel == channel]

    def everything_posted(self) -> str:
        return "\n".join(m.full_text() for m in self.messages.values())

    # -- the API -----------------------------------------------------------------------
    async def handle(self, request: web.Request) -> web.Response:
        arrived = time.monotonic()
        response = await self._handle(request)
        params = request.get(PARAMS) or {}
        channel = str(params.get("channel") or params.get("channel_id") or "")
        self.log.append((arrived, request.match_info["method"], channel, response.status))
        return response

    def writes(self, channel: str) -> list[tuple[float, str, int]]:
        """(arrival, method, status) of the chat.* calls made in ``channel``, in order."""
        return [(t, m, s) for t, m, c, s in self.log if c == channel and m.startswith("chat.")]

    async def _handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        raw = await request.text()
        params: dict[str, Any] = dict(request.query)
        if request.content_type == "application/json":
            params.update(json.loads(raw or "{}"))
        elif raw:
            params.update({k: v[0] for k, v in parse_qs(raw).items()})
        for key in ("blocks", "prompts", "view", "chunks"):
            if isinstance(params.get(key), str):
                with contextlib.suppress(ValueError):
                    params[key] = json.loads(params[key])
        self.calls.append((method, params))
        request[PARAMS] = params
        self._open[method] = self._open.get(method, 0) + 1
        self.peak[method] = max(self.peak.get(method, 0), self._open[method])
        try:
            if self.delays.get(method):
                await asyncio.sleep(self.delays[method])
        finally:
            self._open[method] -= 1
        if method in self.missing:
            return web.Response(status=404, text="not found")
        queue = self.faults.get(method)
        if queue:
            status, retry = queue.pop(0)
            # Slack sends whole seconds (slack_sdk's retry handler reads an int).
            after = str(int(retry)) if float(retry).is_integer() else str(retry)
            headers = {"Retry-After": after} if status == 429 else {}
            return web.json_response(
                {"ok": False, "error": "ratelimited" if status == 429 else "fatal_error"},
                status=status,
                headers=headers,
            )
        handler = getattr(self, "api_" + method.replace(".", "_"), None)
        if handler is None:
            return web.json_response({"ok": True})
        return web.json_response({"ok": True, **handler(params)})

    def _new_ts(self) -> str:
        return f"1700000000.{next(self._ts):06d}"

    def api_apps_connections_open(self, p: dict[str, Any]) -> dict[str, Any]:
        return {"url": self.url.replace("http://", "ws://").replace("/api/", "/link")}

    async def socket(self, request: web.Request) -> web.WebSocketResponse:
        """Socket Mode: say hello, send queued envelopes, collect the acks."""
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        await ws.send_json(
            {"type": "hello", "num_connections": 1, "connection_info": {"app_id": "A1"}}
        )
        self.socket_connected.set()

        async def pump() -> None:
            while True:
                await ws.send_json(await self.socket_outbox.get())

        sender = asyncio.create_task(pump())
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    self.socket_acks.append(json.loads(msg.data))
        finally:
            sender.cancel()
        return ws

    def api_auth_test(self, p: dict[str, Any]) -> dict[str, Any]:
        return {
            "user_id": BOT_USER,
            "bot_id": "B1",
            "team_id": TEAM,
            "team": "Acme",
            "url": self.url,
        }

    def api_users_info(self, p: dict[str, Any]) -> dict[str, Any]:
        user = self.users.get(p.get("user", ""))
        return {"user": user} if user else {"ok": False, "error": "user_not_found"}

    def api_users_lookupByEmail(self, p: dict[str, Any]) -> dict[str, Any]:
        for user in self.users.values():
            if (user.get("profile") or {}).get("email") == p.get("email"):
                return {"user": user}
        return {"ok": False, "error": "users_not_found"}

    def api_files_getUploadURLExternal(self, p: dict[str, Any]) -> dict[str, Any]:
        file_id = f"F{len(self.uploads) + 1}"
        self.uploads[file_id] = {"filename": p.get("filename"), "data": b""}
        return {"file_id": file_id, "upload_url": self.url.replace("/api/", f"/upload/{file_id}")}

    async def upload(self, request: web.Request) -> web.Response:
        self.uploads[request.match_info["file_id"]]["data"] = await request.read()
        return web.Response(text="OK")

    def api_files_completeUploadExternal(self, p: dict[str, Any]) -> dict[str, Any]:
        files = p.get("files")
        files = json.loads(files) if isinstance(files, str) else files
        for f in files or []:
            self.uploads[f["id"]].update(channel=p.get("channel_id"), title=f.get("title"))
        return {"files": [{"id": f["id"]} for f in files or []]}

    def api_usergroups_list(self, p: dict[str, Any]) -> dict[str, Any]:
        return {"usergroups": self.usergroups}

    def api_conversations_info(self, p: dict[str, Any]) -> dict[str, Any]:
        cid = p.get("channel", "")
        return {"channel": self.channels.get(cid, {"id": cid, "name": cid.lower()})}

    def api_conversations_members(self, p: dict[str, Any]) -> dict[str, Any]:
        members = self.channel_members.get(p.get("channel", ""), [])
        return {"members": members, "response_metadata": {"next_cursor": ""}}

    def api_users_list(self, p: dict[str, Any]) -> dict[str, Any]:
        return {"members": list(self.users.values()), "response_metadata": {"next_cursor": ""}}

    def api_conversations_open(self, p: dict[str, Any]) -> dict[str, Any]:
        return {"channel": {"id": "D" + str(p.get("users", "")).lstrip("U")}}

    def api_chat_postMessage(self, p: dict[str, Any]) -> dict[str, Any]:
        ts = self._new_ts()
        self.messages[ts] = Message(
            p["channel"], ts, p.get("thread_ts"), p.get("text", ""), p.get("blocks") or []
        )
        return {"ts": ts, "channel": p["channel"]}

    def api_chat_update(self, p: dict[str, Any]) -> dict[str, Any]:
        msg = self.messages[p["ts"]]
        msg.text = p.get("text", msg.text)
        if p.get("blocks") is not None:
            msg.blocks = p["blocks"] or []
        return {"ts": p["ts"], "channel": p["channel"]}

    def api_chat_postEphemeral(self, p: dict[str, Any]) -> dict[str, Any]:
        return {"message_ts": self._new_ts()}

    def api_chat_startStream(self, p: dict[str, Any]) -> dict[str, Any]:
        if not self.native_streaming:
            return {"ok": False, "error": "unknown_method"}
        ts = self._new_ts()
        self.messages[ts] = Message(
            p["channel"], ts, p.get("thread_ts"), p.get("markdown_text", ""), streaming=True
        )
        return {"ts": ts, "channel": p["channel"]}

    def api_chat_appendStream(self, p: dict[str, Any]) -> dict[str, Any]:
        msg = self.messages[p["ts"]]
        assert not msg.stopped, "append after stop"
        msg.text += p.get("markdown_text", "")
        return {"ts": p["ts"]}

    def api_chat_stopStream(self, p: dict[str, Any]) -> dict[str, Any]:
        msg = self.messages[p["ts"]]
        msg.text += p.get("markdown_text", "") or ""
        msg.blocks = p.get("blocks") or []
        msg.stopped = True
        return {"ts": p["ts"]}


async def start(standin: SlackStandIn) -> web.AppRunner:
    app = web.Application()
    app.router.add_post("/api/{method}", standin.handle)
    app.router.add_get("/api/{method}", standin.handle)
    app.router.add_get("/link", standin.socket)
    app.router.add_post("/upload/{file_id}", standin.upload)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    standin.url = f"http://127.0.0.1:{port}/api/"
    return runner
