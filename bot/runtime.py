"""Builds the running system from settings: config, store, connectors, models, pipeline.

Front ends (the command line, the Slack adapter, tests) call ``build_runtime`` once and pass
the result down; nothing else constructs services or reads the environment.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bot.config import WorkspaceConfig, load_config, unknown_keys
from bot.core.access import AccessPolicy, ActiveGrant
from bot.core.breaker import Breaker, LocalBreaker, RedisBreaker
from bot.core.budgets import Budgets, Ledger, LocalLedger, RedisLedger
from bot.core.embeddings import make_embedder
from bot.core.generate import ModelRouter, RouterTimings
from bot.core.identity import DirectoryResolver, IdentityResolver, UnknownPerson
from bot.core.limits import LocalRateLimiter, RateLimiter, RedisRateLimiter
from bot.core.models import build_registry
from bot.core.pipeline import Pipeline, PipelineDeps
from bot.core.prompts import load_prompt
from bot.core.retrieve import Retriever
from bot.core.review import ReviewDesk
from bot.core.types import Asker, ExchangeResult
from bot.settings import Settings
from bot.store import repo
from bot.store.db import Store
from connectors.base import Connector, ConnectorContext
from connectors.registry import build_connectors

log = logging.getLogger("concierge")


class GrantCache:
    """Active grants, cached behind a lock. Every change to grants (a grant, a revocation, an
    approval, an expiry noted) writes an audit row, so the cache checks the newest audit row id
    on each use -- one indexed lookup, shared by every process and instance on the database --
    and reloads when it moved, when a cached grant reaches its expiry, or after ``ttl_s``."""

    def __init__(self, store: Store, ttl_s: float = 60.0) -> None:
        self.store = store
        self.ttl_s = ttl_s
        self._lock = threading.Lock()
        self._state: tuple[int, float, list[ActiveGrant]] | None = None  # version, until, grants
        self.loads = 0

    async def get(self) -> list[ActiveGrant]:
        return await asyncio.to_thread(self._get)

    def _get(self) -> list[ActiveGrant]:
        with self._lock, self.store.session() as s:
            version = repo.audit_version(s)
            now = time.monotonic()
            if self._state is not None:
                seen, until, grants = self._state
                if seen == version and now < until:
                    return grants
            rows = repo.active_grants(s)
            self.loads += 1
            until = now + self.ttl_s
            wall = datetime.now(UTC)
            for g in rows:
                expires = repo.as_utc(g.expires_at)
                if expires is not None:  # never serve a grant past its expiry
                    until = min(until, now + max(0.0, (expires - wall).total_seconds()))
            grants = [ActiveGrant(g.principal, g.target) for g in rows]
            self._state = (version, until, grants)
            return grants


class _OwnerNotice:
    """Tells the owners something once (a budget reached). Logged always; a front end that can
    reach people (Slack) adds its own delivery with ``deliver``."""

    def __init__(self, owners: tuple[str, ...]) -> None:
        self.owners = owners
        self.deliver: Callable[[str, str], Awaitable[None]] | None = None

    async def __call__(self, text: str) -> None:
        log.warning("owners notified: %s", text)
        if self.deliver is None:
            return
        for owner in self.owners:
            try:
                await self.deliver(owner, text)
            except Exception as exc:  # one unreachable owner must not stop the others
                log.warning("could not notify %s (%s)", owner, exc.__class__.__name__)


@dataclass
class Runtime:
    settings: Settings
    config: WorkspaceConfig
    store: Store
    connectors: dict[str, Connector]
    directory: DirectoryResolver
    policy: AccessPolicy
    pipeline: Pipeline
    warnings: list[str]
    owner_notice: _OwnerNotice
    reviews: ReviewDesk
    grant_cache: GrantCache

    async def grants(self) -> list[ActiveGrant]:
        return await self.grant_cache.get()

    async def principals_of(self, email: str) -> frozenset[str]:
        """What a person named by email holds (the config's directory plus grants): used to
        decide whether someone notified about an item may be shown its text."""
        try:
            asker = self.directory.lookup(email)
        except UnknownPerson:
            asker = Asker(email.strip().lower())
        return self.policy.principals(asker, await self.grants())

    async def record(self, result: ExchangeResult) -> None:
        def write() -> None:
            with self.store.session() as s:
                recorded = repo.record_exchange(s, result)
                if recorded and result.outcome == "refused" and result.error == "no_access":
                    # A question denied for want of access is part of the access trail.
                    repo.audit(
                        s,
                        actor=result.asker,
                        action="denied",
                        target=f"user:{result.asker}",
                        subject="question",
                        reason="no readable source",
                        details={"exchange_id": result.exchange_id, "audience": result.audience},
                    )

        await asyncio.to_thread(write)

    def close(self) -> None:
        self.store.close()


_redis_clients: dict[str, Any] = {}


def make_redis(settings: Settings) -> Any | None:
    """The Redis client for REDIS_URL, if set (shared state for several instances). One
    client, with its connection pool, per URL in a process: limits, budgets, breakers,
    de-duplication and the identity counter share it."""
    if not settings.redis_url:
        return None
    import redis

    url = settings.redis_url
    if url not in _redis_clients:
        _redis_clients[url] = redis.Redis.from_url(url, socket_timeout=2)
    return _redis_clients[url]


def make_breaker(settings: Settings, config: WorkspaceConfig) -> Breaker:
    r = config.routing
    client = make_redis(settings)
    if client is not None:
        return RedisBreaker(client, settings.redis_prefix, r.breaker_failures, r.breaker_cooldown_s)
    return LocalBreaker(r.breaker_failures, r.breaker_cooldown_s)


def make_budgets(
    settings: Settings, config: WorkspaceConfig, store: Store, notify: _OwnerNotice
) -> Budgets:
    client = make_redis(settings)
    ledger: Ledger = (
        RedisLedger(client, settings.redis_prefix) if client is not None else LocalLedger()
    )

    async def seed(since: datetime, asker: str | None) -> float:
        def read() -> float:
            with store.session() as s:
                return repo.cost_since(s, since, asker)

        return await asyncio.to_thread(read)

    return Budgets(config.limits, ledger, seed, notify)


def make_limiter(settings: Settings, config: WorkspaceConfig) -> RateLimiter:
    per_minute = config.limits.questions_per_minute
    client = make_redis(settings)
    if client is not None:
        return RedisRateLimiter(client, settings.redis_prefix, per_minute)
    return LocalRateLimiter(per_minute)


async def build_runtime(
    settings: Settings,
    *,
    config: WorkspaceConfig | None = None,
    identity: IdentityResolver | None = None,
    prepare: bool = True,
) -> Runtime:
    """Everything the pipeline needs. Raises ConfigError / StoreError with a readable message."""
    config = config or load_config(settings.concierge_config)
    store = await asyncio.to_thread(Store.open, settings.effective_database_url)
    embedder = await asyncio.to_thread(
        make_embedder,
        config.embeddings,
        api_key=settings.openai_api_key.get_secret_value() if settings.openai_api_key else None,
        base_url=settings.openai_base_url,
    )
    context = ConnectorContext(
        config=config,
        embedder=embedder,
        index_dir=settings.index_dir.resolve(),
        refresh_interval_s=settings.index_refresh_s,
        secrets=settings.secrets_named(
            [
                str(s.setting(key))
                for s in config.sources
                for key in ("auth_env", "url_env")
                if s.setting(key)
            ]
        ),
    )
    connectors = build_connectors(context)
    warnings: list[str] = [
        f"config file {config.path}: '{key}' is not a known setting and is ignored"
        for key in unknown_keys(config)
    ]
    if prepare:
        for found in await asyncio.gather(*(c.prepare() for c in connectors.values())):
            warnings.extend(found)
    directory = DirectoryResolver(config)
    policy = AccessPolicy(config)
    registry = build_registry(config, settings)
    timings = RouterTimings(
        first_token_timeout_s=config.routing.first_token_timeout_s,
        hedge_after_s=config.routing.hedge_after_s,
        total_timeout_s=config.routing.total_timeout_s,
    )
    breaker = make_breaker(settings, config)
    router = ModelRouter([registry[name] for name in config.chain], timings, breaker)
    cheaper = ModelRouter([registry[name] for name in config.step_down_chain], timings, breaker)
    owner_notice = _OwnerNotice(config.owners)
    budgets = make_budgets(settings, config, store, owner_notice)
    runtime = Runtime(
        settings=settings,
        config=config,
        store=store,
        connectors=connectors,
        directory=directory,
        policy=policy,
        pipeline=None,  # type: ignore[arg-type]
        warnings=warnings,
        owner_notice=owner_notice,
        reviews=ReviewDesk(store, config, connectors),  # principals_of: set below
        grant_cache=GrantCache(store, ttl_s=settings.access_cache_s),
    )
    runtime.reviews.principals_of = runtime.principals_of
    runtime.pipeline = Pipeline(
        PipelineDeps(
            config=config,
            identity=identity or directory,
            limiter=make_limiter(settings, config),
            policy=policy,
            grants=runtime.grants,
            retriever=Retriever(connectors, embedder),
            prompt=load_prompt("answer"),
            router=router,
            recorder=runtime.record,
            budgets=budgets,
            step_down_router=cheaper,
            reviews=runtime.reviews,
        )
    )
    return runtime
