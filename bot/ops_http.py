"""Operator endpoints: ``/metrics`` (Prometheus text format). Served on the Events API port
in HTTP mode, and on ``METRICS_PORT`` beside the Socket Mode connection (with ``/healthz`` and
``/readyz``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest


async def metrics(_: web.Request) -> web.Response:
    body = generate_latest()
    response = web.Response(body=body)
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return response


def add_routes(app: web.Application) -> None:
    app.router.add_get("/metrics", metrics)


async def start_metrics_server(
    host: str,
    port: int,
    health: Callable[[], dict[str, object]],
    ready: Callable[[], Awaitable[tuple[bool, dict[str, Any]]]],
) -> web.AppRunner:
    """A small listener for Socket Mode, where there is no HTTP server of our own."""

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response(health())

    async def readyz(_: web.Request) -> web.Response:
        ok, body = await ready()
        return web.json_response(body, status=200 if ok else 503)

    app = web.Application()
    add_routes(app)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
