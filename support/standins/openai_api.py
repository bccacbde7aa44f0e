"""A local OpenAI-compatible chat completions server (real HTTP, port 0, server-sent events),
with injectable faults: a first-token delay, a per-token delay, an HTTP status, a hang, a
connection dropped after K tokens, a stream that goes silent (open) after K tokens, and a
stream held after K tokens until the test releases it. Usage is reported in the final chunk
when asked for."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import ClientConnectionResetError, web


@dataclass
class OpenAIStandIn:
    reply: str = "Submit expenses in Pleo within thirty days. [1]"
    first_token_s: float = 0.0
    token_s: float = 0.0
    status: int = 200
    retry_after: float | None = None
    hang: bool = False
    drop_after: int | None = None
    stall_after: int | None = None  # send K tokens, then nothing (the connection stays open)
    stall_times: int | None = None  # the stall applies to the first N requests only
    prompt_tokens: int = 321
    fail_times: int | None = None  # the status applies to the first N requests only
    max_prompt_chars: int | None = None  # longer prompts get a context-length error
    refuse: bool = False  # finish with the content filter instead of an answer
    requests: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""
    embedding_requests: list[dict[str, Any]] = field(default_factory=list)
    embedding_dims: int = 32
    embeddings_status: int = 200
    # Send this many tokens, then wait until ``release()`` (a test sees the answer part-way).
    hold_after: int | None = None
    _gate: asyncio.Event | None = None
    _loop: asyncio.AbstractEventLoop | None = None

    def release(self) -> None:
        """Let a held stream go on (from any thread)."""
        self.hold_after = None
        if self._loop is not None and self._gate is not None:
            self._loop.call_soon_threadsafe(self._gate.set)

    finished: list[float] = field(default_factory=list)  # time.monotonic() of each last token

    async def embeddings(self, request: web.Request) -> web.Response:
        """``/v1/embeddings``: a deterministic vector per text (hashed words, so texts that
        share words are near each other) and token usage, as the real endpoint answers."""
        body = await request.json()
        self.embedding_requests.append({"body": body, "auth": request.headers.get("Authorization")})
        if self.embeddings_status != 200:
            return web.json_response(
                {"error": {"message": "stand-in failure", "type": "server"}},
                status=self.embeddings_status,
            )
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        dims = int(body.get("dimensions") or self.embedding_dims)
        data = [
            {"object": "embedding", "index": i, "embedding": hashed_vector(t, dims)}
            for i, t in enumerate(texts)
        ]
        tokens = sum(len(t.split()) for t in texts)
        return web.json_response(
            {
                "object": "list",
                "data": data,
                "model": body.get("model"),
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )

    def tokens(self) -> list[str]:
        words = self.reply.split(" ")
        return [w + (" " if i < len(words) - 1 else "") for i, w in enumerate(words)]

    async def completions(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(
            {"body": body, "auth": request.headers.get("Authorization"), "at": time.monotonic()}
        )
        prompt_chars = sum(len(str(m.get("content", ""))) for m in body.get("messages", []))
        if self.max_prompt_chars is not None and prompt_chars > self.max_prompt_chars:
            return web.json_response(
                {
                    "error": {
                        "message": f"This model's maximum context length is "
                        f"{self.max_prompt_chars} characters; you sent {prompt_chars}.",
                        "type": "invalid_request_error",
                        "code": "context_length_exceeded",
                    }
                },
                status=400,
            )
        failing = self.fail_times is None or len(self.requests) <= self.fail_times
        if self.status != 200 and failing:
            headers = {"Retry-After": str(self.retry_after)} if self.retry_after else {}
            return web.json_response(
                {"error": {"message": "stand-in failure", "type": "server"}},
                status=self.status,
                headers=headers,
            )
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        if self.hang:
            await asyncio.sleep(3600)
        model = body.get("model", "m")
        # The client may give up (a deadline, a lost hedge): normal for a stand-in.
        with contextlib.suppress(
            ConnectionResetError, ClientConnectionResetError, asyncio.CancelledError
        ):
            await self._stream(request, resp, body, model)
        return resp

    async def _stream(
        self, request: web.Request, resp: web.StreamResponse, body: dict[str, Any], model: str
    ) -> None:
        await asyncio.sleep(self.first_token_s)

        async def send(payload: dict[str, Any]) -> None:
            await resp.write(f"data: {json.dumps(payload)}\n\n".encode())

        tokens = self.tokens()
        stalls = self.stall_times is None or len(self.requests) <= self.stall_times
        if self.refuse:
            await send(
                {
                    "id": "c1",
                    "object": "chat.completion.chunk",
                    "created": 0,
                    "model": model,
                    "choices": [{"index": 0, "delta": {}, "finish_reason": "content_filter"}],
                }
            )
            await resp.write(b"data: [DONE]\n\n")
            return
        for i, tok in enumerate(tokens):
            if self.drop_after is not None and i >= self.drop_after:
                request.transport.close()  # type: ignore[union-attr]
                return
            if self.stall_after is not None and stalls and i >= self.stall_after:
                await asyncio.sleep(3600)
            if i:
                await asyncio.sleep(self.token_s)
            if self.hold_after is not None and i == self.hold_after:
                self._loop, self._gate = asyncio.get_running_loop(), asyncio.Event()
                if self.hold_after is not None:  # not released meanwhile
                    await self._gate.wait()
            await send(
                {
                    "id": "c1",
                    "object": "chat.completion.chunk",
                    "created": 0,
                    "model": model,
                    "choices": [{"index": 0, "delta": {"content": tok}, "finish_reason": None}],
                }
            )
        self.finished.append(time.monotonic())
        await send(
            {
                "id": "c1",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": model,
                "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
            }
        )
        if (body.get("stream_options") or {}).get("include_usage"):
            await send(
                {
                    "id": "c1",
                    "object": "chat.completion.chunk",
                    "created": 0,
                    "model": model,
                    "choices": [],
                    "usage": {
                        "prompt_tokens": self.prompt_tokens,
                        "completion_tokens": len(tokens),
                        "total_tokens": self.prompt_tokens + len(tokens),
                    },
                }
            )
        await resp.write(b"data: [DONE]\n\n")


def hashed_vector(text: str, dims: int) -> list[float]:
    """Each lower-cased word adds one to a bucket chosen by a stable hash."""
    vec = [0.0] * dims
    for word in text.lower().split():
        digest = hashlib.sha256(word.strip(".,?!:;()").encode()).digest()
        vec[int.from_bytes(digest[:4], "big") % dims] += 1.0
    return vec


def primary_config(url: str, routing: str) -> str:
    """Config lines for a priced ``primary`` model at ``url`` before the offline one, and a
    routing line with ``routing``'s settings (for a test workspace's YAML)."""
    return (
        "models:\n"
        "  - name: primary\n    provider: openai\n    model: stand-in-1\n"
        f"    base_url: {url}\n    price: {{input: 1.0, output: 2.0}}\n"
        "  - {name: offline, provider: offline}\n"
        f"routing: {{chain: [primary, offline], {routing}}}\n"
    )


async def start(standin: OpenAIStandIn) -> web.AppRunner:
    app = web.Application()
    app.router.add_post("/v1/chat/completions", standin.completions)
    app.router.add_post("/v1/embeddings", standin.embeddings)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    standin.url = f"http://127.0.0.1:{port}/v1"
    return runner


@contextlib.contextmanager
def in_thread(standin: OpenAIStandIn) -> Iterator[OpenAIStandIn]:
    """The stand-in on its own event loop in a background thread, for code under test that
    runs its own loop (the command line's ``asyncio.run``). Stops when the block ends."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    holder: dict[str, web.AppRunner] = {}

    def serve() -> None:
        asyncio.set_event_loop(loop)
        holder["runner"] = loop.run_until_complete(start(standin))
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    if not ready.wait(10):
        raise RuntimeError("the OpenAI stand-in did not start")
    try:
        yield standin
    finally:
        asyncio.run_coroutine_threadsafe(holder["runner"].cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
