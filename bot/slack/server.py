"""``app.py serve``: Socket Mode when SLACK_APP_TOKEN is set, else the Events API over HTTP.

HTTP mode runs on aiohttp's production server (not Bolt's development server): POST
/slack/events for events, commands and interactivity, GET /healthz. On SIGTERM/SIGINT the
server first stops taking work (HTTP: the listener is closed and a request on a connection
still open gets 503; Socket Mode: the socket is disconnected, so Slack sends new envelopes
elsewhere), then waits up to CONCIERGE_SHUTDOWN_GRACE_S for answers in flight. What still
runs at the deadline is cancelled: the pipeline closes its stream with a note and records it
as incomplete (bot/core/pipeline.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot import ops_http
from bot.health import readiness
from bot.runtime import Runtime, build_runtime
from bot.settings import Settings
from bot.slack.app import build_app, build_deps, make_client
from bot.slack.arrival import stamp
from bot.slack.deps import SlackDeps

log = logging.getLogger("concierge.slack.server")
MAX_BODY = 1_000_000
# Connections waiting to be accepted. aiohttp's default (128) can overflow when a burst opens
# hundreds at once while the loop is busy: the kernel drops the excess handshakes and clients
# retry them after 1 s, then 3 s, an ack late by seconds whatever the loop does next. The
# kernel caps this at net.core.somaxconn.
LISTEN_BACKLOG = 2048


ALWAYS_ANSWERED = frozenset({"/healthz", "/metrics"})
CLOSING_S = 10.0  # after the grace period, the longest cancelled answers take to close

ASSISTANT_EVENTS = ("assistant_thread_started", "assistant_thread_context_changed")


def malformed(body: Any) -> bool:
    """A body whose shape Bolt itself cannot take (its own middleware would raise, and answer
    500 with a traceback in the log): an event_callback whose event or authorizations are
    not objects, or an assistant event without its thread. Refused before any work, so
    whether it is signed does not matter."""
    if not isinstance(body, dict):
        return True
    if body.get("type") != "event_callback":
        return False
    event = body.get("event")
    if not isinstance(event, dict):
        return True
    auths = body.get("authorizations")
    if auths is not None and not (
        isinstance(auths, list) and all(isinstance(a, dict) for a in auths)
    ):
        return True
    if "assistant_thread" in event and not isinstance(event["assistant_thread"], dict):
        return True
    if event.get("type") in ASSISTANT_EVENTS:
        thread = event.get("assistant_thread")
        placed = isinstance(thread, dict) and thread.get("channel_id") and thread.get("thread_ts")
        return not (placed or (event.get("channel") and event.get("thread_ts")))
    return False


def socket_handler(bolt: AsyncApp, app_token: str, client: AsyncWebClient) -> Any:
    """Bolt's Socket Mode handler with the HTTP endpoint's boundary check: an envelope whose
    body Bolt cannot take is acknowledged (so Slack does not send it again and again) and
    dropped with one log line, never dispatched into a listener or a traceback."""
    from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
    from slack_sdk.socket_mode.response import SocketModeResponse

    class Guarded(AsyncSocketModeHandler):
        async def handle(self, socket: Any, req: Any) -> None:
            if malformed(req.payload):
                log.info("dropped a malformed Socket Mode envelope (%s)", req.type)
                await socket.send_socket_mode_response(
                    SocketModeResponse(envelope_id=req.envelope_id)
                )
                return
            try:
                await super().handle(socket, req)
            except Exception as exc:  # Bolt could not read it: acked and logged, not retried
                log.info("dropped a Socket Mode envelope Bolt cannot read (%s)", type(exc).__name__)
                await socket.send_socket_mode_response(
                    SocketModeResponse(envelope_id=req.envelope_id)
                )

    return Guarded(bolt, app_token, web_client=client)


def http_app(bolt: AsyncApp, deps: SlackDeps) -> web.Application:
    async def events(request: web.Request) -> web.Response:
        received_at = time.perf_counter()  # before reading the body: the person's wait begins
        refused = web.json_response({"ok": False, "error": "malformed body"}, status=400)
        try:
            # Reading the body runs Bolt's field extraction, which raises on shapes Slack
            # never sends: that is bad input (nothing has run yet), not an error of ours.
            bolt_request = await to_bolt_request(request)
        except Exception as exc:
            log.info("refused a request to /slack/events Bolt cannot read (%s)", type(exc).__name__)
            return refused
        if malformed(bolt_request.body):
            log.info("refused a malformed request to /slack/events")
            return refused
        stamp(bolt_request.context, received_at)
        try:
            response = await bolt.async_dispatch(bolt_request)
        except Exception:
            log.exception("could not handle a request to /slack/events")
            return web.json_response({"ok": False, "error": "bad request"}, status=400)
        return await to_aiohttp_response(response)

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response(deps.health())

    async def readyz(_: web.Request) -> web.Response:
        ready, body = await readiness(deps.runtime)
        return web.json_response(body, status=200 if ready else 503)

    @web.middleware
    async def refuse_while_stopping(request: web.Request, handler: Any) -> web.StreamResponse:
        """During shutdown only liveness is answered: new work (and readiness) get 503."""
        if deps.stopping and request.path not in ALWAYS_ANSWERED:
            return web.json_response({"ok": False, "error": "shutting down"}, status=503)
        response: web.StreamResponse = await handler(request)
        return response

    app = web.Application(client_max_size=MAX_BODY, middlewares=[refuse_while_stopping])
    app.router.add_post("/slack/events", events)
    app.router.add_get("/healthz", healthz)
    ops_http.add_routes(app)
    app.router.add_get("/readyz", readyz)
    return app


async def start_http(
    bolt: AsyncApp, deps: SlackDeps, host: str, port: int
) -> tuple[web.AppRunner, int]:
    """Start serving; returns the runner and the bound port (port 0 picks a free one)."""
    runner = web.AppRunner(http_app(bolt, deps), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=LISTEN_BACKLOG)
    await site.start()
    server: Any = site._server
    bound = server.sockets[0].getsockname()[1] if server and server.sockets else port
    return runner, int(bound)


async def stop_accepting(runner: web.AppRunner) -> None:
    """Close the listening sockets: new connections are refused from now on."""
    for site in list(runner.sites):
        await site.stop()


async def drain(deps: SlackDeps, grace_s: float, closing_s: float = CLOSING_S) -> None:
    """Wait up to ``grace_s`` for the work in flight (and work it starts), then cancel what is
    left and give it ``closing_s`` to close its streams and record itself."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace_s
    if deps.tasks:
        log.warning("waiting up to %.0f s for %d answer(s) in flight", grace_s, len(deps.tasks))
    while deps.tasks and (left := deadline - loop.time()) > 0:
        await asyncio.wait(set(deps.tasks), timeout=left)
    pending = set(deps.tasks)
    if not pending:
        return
    log.warning("%d answer(s) still running at the deadline: closing them", len(pending))
    for task in pending:
        task.cancel()
    _, stuck = await asyncio.wait(pending, timeout=closing_s)
    if stuck:
        log.error("%d answer(s) did not close in time", len(stuck))


IO_THREADS = 32


def use_io_threads() -> None:
    """Database, Redis and index calls run in the loop's default executor (``to_thread``).
    Python's default has cpu_count + 4 threads, six on a two-core machine: with ten questions
    in flight, each making several database round trips before its model call, the seventh
    call waits for a thread while the database idles (the engine's pool allows 30
    connections). The threads mostly wait on sockets, so more of them cost little CPU."""
    loop = asyncio.get_running_loop()
    loop.set_default_executor(
        ThreadPoolExecutor(max_workers=IO_THREADS, thread_name_prefix="concierge-io")
    )


async def prepare(settings: Settings) -> tuple[Runtime, SlackDeps]:
    use_io_threads()
    runtime = await build_runtime(settings)
    client = make_client(settings)
    deps = build_deps(settings, runtime, client)
    # Our own team decides who is a member. If auth.test fails now, nobody is one (fail
    # closed) until a later request asks again and it succeeds (identity.team()).
    await deps.identity.team()
    runtime.pipeline.deps.identity = deps.identity
    return runtime, deps


async def start_scheduler(settings: Settings, runtime: Runtime, deps: SlackDeps) -> Any:
    """The scheduled jobs of this instance (each job runs once across all instances)."""
    if not settings.scheduler:
        return None
    from bot.jobs.scheduler import JobHost, Scheduler
    from bot.slack.delivery import SlackDelivery

    jobs = runtime.config.jobs
    scheduler = Scheduler.from_config(
        JobHost(runtime.store, runtime, delivery=SlackDelivery(deps)),
        jobs.schedule(),
        jobs.timezone,
    )
    try:
        await scheduler.start()
    except Exception as exc:  # answering questions matters more than the jobs
        log.error("scheduled jobs are not running: %s", exc)
        return None
    return scheduler


async def serve(settings: Settings, ready: asyncio.Event | None = None) -> int:
    runtime, deps = await prepare(settings)
    for warning in runtime.warnings:
        log.warning("%s", warning)
    scheduler = await start_scheduler(settings, runtime, deps)
    replayer = runtime.replay_spool_forever()  # spooled records, once the database is back
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        if settings.slack_app_token is not None:
            bolt = build_app(deps, socket_mode=True)
            handler = socket_handler(bolt, settings.slack_app_token.get_secret_value(), deps.client)
            await handler.connect_async()
            metrics_runner = None
            if settings.metrics_port is not None:
                metrics_runner = await ops_http.start_metrics_server(
                    settings.host,
                    settings.metrics_port,
                    deps.health,
                    lambda: readiness(deps.runtime, stopping=deps.stopping),
                )
            log.warning("Concierge is connected to Slack in Socket Mode")
            if ready:
                ready.set()
            await stop.wait()
            deps.stopping = True
            await handler.close_async()  # no new envelopes: Slack sends them elsewhere
            await drain(deps, settings.shutdown_grace_s)
            if metrics_runner is not None:
                await metrics_runner.cleanup()
        else:
            bolt = build_app(deps)
            runner, port = await start_http(bolt, deps, settings.host, settings.port)
            log.warning(
                "Concierge is listening on %s:%d (/slack/events, /healthz, /metrics)",
                settings.host,
                port,
            )
            if ready:
                ready.set()
            await stop.wait()
            deps.stopping = True
            await stop_accepting(runner)
            await drain(deps, settings.shutdown_grace_s)
            await runner.cleanup()
        return 0
    finally:
        replayer.cancel()
        if scheduler is not None:
            await scheduler.stop()
        deps.stopping = True
        await drain(deps, 0)
        runtime.close()
