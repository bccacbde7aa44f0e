"""Builds the Bolt AsyncApp: verification, replay protection, listeners."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.authorization import AuthorizeResult
from slack_bolt.listener.async_listener_start_handler import AsyncListenerStartHandler
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse
from slack_sdk.http_retry.builtin_async_handlers import AsyncConnectionErrorRetryHandler

from bot.core.versions import RedisVersion
from bot.errors import ConfigError
from bot.runtime import Runtime, make_redis
from bot.settings import Settings
from bot.slack.arrival import stamp
from bot.slack.channels import ChannelDirectory, ChannelGuests
from bot.slack.dedupe import Deduper, SharedDeduper
from bot.slack.deps import SlackDeps
from bot.slack.identity import SlackIdentityResolver
from bot.slack.listeners import register_all
from bot.slack.metered import MeteredWebClient
from bot.slack.notify import dm
from bot.slack.pacing import Budget, Pacer
from bot.slack.replay import ReplayGuard
from bot.slack.review import post_review
from bot.store.models import Review

log = logging.getLogger("concierge.slack")


def make_client(
    settings: Settings, *, pacer: Pacer | None = None, retry_connections: bool = True
) -> MeteredWebClient:
    """The Web API client. Rate limits are its pacer's (bot/slack/pacing.py): a 429 pauses
    the method for the whole workspace and the call is made again once the pause is over;
    no retry handler of slack_sdk's handles them too. With ``retry_connections`` (every
    caller but the streamer) a failed connection is retried twice; the few calls an answer
    cannot do without also wait out 5xx (bot/slack/calls.py). Without it the client retries
    no failure of its own: the streamer retries its writes' 5xx and transport errors."""
    if settings.slack_bot_token is None:
        raise ConfigError("SLACK_BOT_TOKEN is not set: serve needs the bot token (xoxb-…)")
    client = MeteredWebClient(
        token=settings.slack_bot_token.get_secret_value(),
        base_url=settings.slack_api_url,
        timeout=15,
        pacer=pacer or make_pacer(settings),
    )
    client.retry_handlers = (
        [AsyncConnectionErrorRetryHandler(max_retry_count=2)] if retry_connections else []
    )
    return client


def make_pacer(settings: Settings) -> Pacer:
    """The workspace's write budget (one per bot token: every client shares it)."""
    return Pacer(
        Budget(
            streams_per_minute=settings.slack_streams_per_minute,
            append_per_minute=settings.slack_append_per_minute,
            update_per_minute=settings.slack_update_per_minute,
            write_interval_s=settings.slack_write_interval_s,
        )
    )


def make_deduper(settings: Settings, runtime: Runtime) -> Deduper:
    """Claims in the database, with Redis (when configured) asked first."""
    return SharedDeduper(runtime.store, make_redis(settings), settings.redis_prefix)


def build_app(deps: SlackDeps, *, socket_mode: bool = False) -> AsyncApp:
    settings = deps.settings
    secret = settings.slack_signing_secret
    if secret is None and not socket_mode:
        raise ConfigError("SLACK_SIGNING_SECRET is not set: HTTP mode verifies every request")
    app = AsyncApp(
        client=deps.client,
        signing_secret=secret.get_secret_value() if secret else "socket-mode",
        request_verification_enabled=not socket_mode,
        process_before_response=False,
        # Our own authorize: the bot's ids come from the auth.test made at start-up, so no
        # request's ack ever waits for Bolt's own first-request auth.test.
        authorize=make_authorize(deps),
    )
    # Bolt runs each listener after the ack in a task of its own (process_before_response is
    # off), outside deps.spawn: the task is handed to deps as it starts, so shutdown and tests
    # wait for a listener's inline work (a vote written, a modal opened) as for an answer.
    app.listener_runner.listener_start_handler = AdoptListenerTask(deps)
    replays = ReplayGuard(deps.deduper)

    @app.middleware
    async def note_arrival(
        req: AsyncBoltRequest, resp: BoltResponse, next: Callable[[], Awaitable[BoltResponse]]
    ) -> BoltResponse:
        """Socket Mode requests are stamped here (HTTP ones earlier, in bot/slack/server.py)."""
        stamp(req.context)
        return await next()

    @app.middleware
    async def exactly_once(
        req: AsyncBoltRequest, resp: BoltResponse, next: Callable[[], Awaitable[BoltResponse]]
    ) -> BoltResponse:
        """Replayed commands and clicks do nothing twice (bot/slack/replay.py: the ack waits
        for the shared claim a few milliseconds at most). Events are de-duplicated by their
        listener after the ack (on event_id and on channel+ts)."""
        body: dict[str, Any] = req.body or {}
        if body.get("type") in ("event_callback", "url_verification"):
            return await next()
        values = req.headers.get("x-slack-signature") or []
        signature = values[0] if values else None
        if not signature:
            return await next()
        if not await replays.admit(f"sig:{signature}", req.context):
            log.info("dropped a repeated delivery (sig)")
            return BoltResponse(status=200, body="")
        return await next()

    register_all(app, deps)

    @app.error
    async def on_error(error: Exception, body: dict[str, Any]) -> None:
        log.error("unhandled error in a listener: %s", error.__class__.__name__, exc_info=error)

    return app


class AdoptListenerTask(AsyncListenerStartHandler):
    """Bolt's hook at the start of every listener run: the running task joins ``deps.tasks``.
    It runs before the ack's response can reach Slack (the task is scheduled before the
    response is written), so no work is ever unseen between the ack and its start."""

    def __init__(self, deps: SlackDeps) -> None:
        self.deps = deps

    async def handle(self, request: AsyncBoltRequest, response: BoltResponse | None) -> None:
        task = asyncio.current_task()
        if task is not None:
            self.deps.adopt(task)


def make_authorize(deps: SlackDeps) -> Callable[..., Awaitable[AuthorizeResult]]:
    """Bolt's authorize from what start-up learned (auth.test in ``prepare``): no network.
    While auth.test has not succeeded the bot's own ids are unknown; the next try runs in
    the background (identity.team() backs off), never in front of an ack."""
    token = deps.client.token

    async def authorize(
        enterprise_id: str | None, team_id: str | None, user_id: str | None
    ) -> AuthorizeResult:
        identity = deps.identity
        if identity.team_id is None:
            deps.spawn(identity.team())
        return AuthorizeResult(
            enterprise_id=enterprise_id,
            team_id=team_id,
            user_id=user_id,
            bot_token=token,
            bot_user_id=identity.bot_user_id,
            bot_id=identity.bot_id,
        )

    return authorize


def build_deps(settings: Settings, runtime: Runtime, client: MeteredWebClient) -> SlackDeps:
    redis = make_redis(settings)

    def shared(name: str) -> RedisVersion | None:
        """A change counter every instance sees (in-process without Redis)."""
        return RedisVersion(redis, f"{settings.redis_prefix}{name}") if redis is not None else None

    identity = SlackIdentityResolver(client, runtime.config, version=shared("identity:version"))
    offline = frozenset(
        name
        for name in runtime.config.chain
        if (spec := runtime.config.model_spec(name)) is None or spec.provider == "offline"
    )
    deps = SlackDeps(
        runtime=runtime,
        settings=settings,
        client=client,
        identity=identity,
        pacer=client.pacer,
        stream_client=make_client(settings, pacer=client.pacer, retry_connections=False),
        deduper=make_deduper(settings, runtime),
        offline_models=offline,
        channel_guests=ChannelGuests(shared("channels:version")),
        channels=ChannelDirectory(client),
    )

    async def tell(email: str, text: str) -> None:
        await dm(deps, email, text=text)

    runtime.owner_notice.deliver = tell

    async def announce(review: Review) -> None:
        await post_review(deps, review)

    runtime.reviews.listeners.append(announce)
    return deps
