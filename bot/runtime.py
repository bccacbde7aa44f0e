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
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bot.config import WorkspaceConfig, load_config, unknown_key_warnings
from bot.core.access import AccessPolicy, ActiveGrant
from bot.core.breaker import Breaker, LocalBreaker, RedisBreaker
from bot.core.budgets import Budgets, Ledger, LocalLedger, RedisLedger, SpendUnknown
from bot.core.embeddings import make_embedder
from bot.core.generate import ModelRouter, RouterTimings
from bot.core.hedging import FirstTokenWindow
from bot.core.identity import DirectoryResolver, IdentityResolver, UnknownPerson
from bot.core.limits import LocalRateLimiter, RateLimiter, RedisRateLimiter
from bot.core.models import (
    RegisteredModel,
    build_chat_model,
    build_registry,
    embeddings_unusable,
    model_notes,
    unusable_reason,
)
from bot.core.pipeline import Pipeline, PipelineDeps
from bot.core.prompts import load_prompt
from bot.core.retrieve import Retriever
from bot.core.review import ReviewDesk, feedback_handler
from bot.core.rewrite import QueryRewriter
from bot.core.synonyms import synonyms_for
from bot.core.types import Asker, ExchangeResult
from bot.settings import Settings
from bot.store import repo
from bot.store.db import Store, StoreUnavailable, Timeouts
from bot.store.models import Review
from bot.store.replay import replay_now, replay_when_possible
from bot.store.spool import Spool
from connectors.base import Connector, ConnectorContext
from connectors.registry import build_connectors

log = logging.getLogger("concierge")


class GrantCache:
    """Active grants, cached behind a lock. Every change to grants (a grant, a revocation, an
    approval, an expiry noted) writes an audit row, so the cache checks the newest audit row id
    on each use -- one indexed lookup, shared by every process and instance on the database --
    and reloads when it moved, when a cached grant reaches its expiry, or after ``ttl_s``.

    While the database cannot be reached, the grants last read keep serving for ``stale_s``
    (none past its expiry); after that, none at all (only the config's readers count: fail
    closed). Each is logged once per outage."""

    def __init__(self, store: Store, ttl_s: float = 60.0, stale_s: float = 300.0) -> None:
        self.store = store
        self.ttl_s = ttl_s
        self.stale_s = stale_s
        self._lock = threading.Lock()
        self._state: tuple[int, float, list[ActiveGrant]] | None = None  # version, until, grants
        self._last: tuple[float, list[tuple[ActiveGrant, datetime | None]]] = (0.0, [])
        self._told: str | None = None  # what the log was last told during this outage
        self.loads = 0

    async def get(self) -> list[ActiveGrant]:
        try:
            return await self.store.call(self._get)
        except StoreUnavailable:
            return self._stale()

    def _stale(self) -> list[ActiveGrant]:
        """The grants last read, while they are recent enough; else none (fail closed)."""
        read_at, grants = self._last
        age = time.monotonic() - read_at
        if not grants or age > self.stale_s:
            self._tell(
                "closed",
                "the database is unreachable: no grants are in force until it "
                "returns (only the config's readers count)",
            )
            return []
        self._tell(
            "stale",
            f"the database is unreachable: serving the grants read {age:.0f} s "
            f"ago for up to {self.stale_s:.0f} s",
        )
        wall = datetime.now(UTC)
        return [g for g, expires in grants if expires is None or expires > wall]

    def _tell(self, state: str, message: str) -> None:
        if self._told != state:
            self._told = state
            log.error("%s", message)

    def _get(self) -> list[ActiveGrant]:
        """The grants, checked against the newest audit row id. The usual case (nothing
        changed) takes no lock, so questions check concurrently; only a reload is done
        by one thread at a time, the others waiting for it and then reusing it."""
        with self.store.session() as s:
            fresh = self._fresh(repo.audit_version(s))
        if fresh is not None:
            return fresh
        # Never wait long behind a reload the database is not answering: fall back instead.
        if not self._lock.acquire(timeout=self.store.timeouts.call_s):
            raise StoreUnavailable("the grant cache is waiting for the database")
        try:
            with self.store.session() as s:
                return self._read(s)
        finally:
            self._lock.release()

    def _fresh(self, version: int) -> list[ActiveGrant] | None:
        """The cached grants when ``version`` is the one they were read at and they have not
        reached their end; else None."""
        state, now = self._state, time.monotonic()
        if state is None:
            return None
        seen, until, grants = state
        if seen != version or now >= until:
            return None
        self._told = None
        self._last = (now, self._last[1])
        return grants

    def _read(self, s: Any) -> list[ActiveGrant]:
        version = repo.audit_version(s)
        fresh = self._fresh(version)  # another thread may have reloaded meanwhile
        if fresh is not None:
            return fresh
        now = time.monotonic()
        self._told = None
        rows = repo.active_grants(s)
        self.loads += 1
        until = now + self.ttl_s
        wall = datetime.now(UTC)
        for g in rows:
            expires = repo.as_utc(g.expires_at)
            if expires is not None:  # never serve a grant past its expiry
                until = min(until, now + max(0.0, (expires - wall).total_seconds()))
        grants = [ActiveGrant(g.principal, g.target) for g in rows]
        self._last = (
            now,
            [(ActiveGrant(g.principal, g.target), repo.as_utc(g.expires_at)) for g in rows],
        )
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
    spool: Spool
    # Held drafts and thumbs-down items written from the spool while the runtime was built,
    # before any front end could tell their reviewers: ``serve`` announces them first.
    unannounced: list[Review] = field(default_factory=list)

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
        """Record the exchange once; while the database cannot be reached (or does not answer
        in time), spool it durably for replay. Replay is idempotent on the exchange id, so a
        write that did land before its failure was noticed is not recorded twice."""
        row = repo.exchange_row(result)
        denial: dict[str, Any] | None = None
        if result.outcome == "refused" and result.error == "no_access":
            # A question denied for want of access is part of the access trail.
            denial = {
                "actor": result.asker,
                "action": "denied",
                "target": f"user:{result.asker}",
                "subject": "question",
                "reason": "no readable source",
                "details": {"exchange_id": result.exchange_id, "audience": result.audience},
            }

        def write() -> None:
            with self.store.session() as s:
                if repo.insert_exchange(s, row) and denial is not None:
                    repo.audit(s, **denial)

        try:
            await self.store.call(write)
        except StoreUnavailable:
            await asyncio.to_thread(self.spool.append, "exchange", {"row": row, "audit": denial})

    async def vote(
        self,
        *,
        exchange_id: str,
        voter: str,
        vote: int,
        reason: str | None = None,
        category: str | None = None,
    ) -> None:
        """Store a vote (one per person per exchange), or spool it while the database is
        unreachable; a spooled vote never replaces a newer one."""
        data: dict[str, Any] = {
            "exchange_id": exchange_id,
            "voter": voter,
            "vote": vote,
            "reason": reason,
            "category": category,
        }
        cast_at = datetime.now(UTC)

        def write() -> None:
            with self.store.session() as s:
                repo.set_vote(s, **data, at=cast_at)

        try:
            await self.store.call(write)
        except StoreUnavailable:
            await asyncio.to_thread(self.spool.append, "vote", data)

    def replay_spool_forever(self) -> asyncio.Task[None]:
        """The background task of ``serve``: tells reviewers of items written from the spool at
        start-up, then replays spooled records whenever the database is back."""

        async def run() -> None:
            while self.unannounced:
                await self.reviews.announce(self.unannounced.pop(0))
            await replay_when_possible(
                self.store,
                self.spool,
                self.reviews.announce,
                handlers={"feedback": feedback_handler(self.reviews.config)},
            )

        return asyncio.create_task(run())

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
        # Short timeouts: Redis is on the request path, and when it does not answer, local
        # state does (bot/core/shared.py).
        _redis_clients[url] = redis.Redis.from_url(
            url,
            socket_timeout=settings.redis_timeout_s,
            socket_connect_timeout=settings.redis_timeout_s,
        )
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

        try:
            return await store.call(read)
        except StoreUnavailable as exc:
            raise SpendUnknown(str(exc)) from exc

    return Budgets(config.limits, ledger, seed, notify)


def make_limiter(settings: Settings, config: WorkspaceConfig) -> RateLimiter:
    per_minute = config.limits.questions_per_minute
    client = make_redis(settings)
    if client is not None:
        return RedisRateLimiter(client, settings.redis_prefix, per_minute)
    return LocalRateLimiter(per_minute)


def make_rewriter(
    config: WorkspaceConfig, settings: Settings, registry: dict[str, RegisteredModel]
) -> QueryRewriter | None:
    """The optional query rewrite step (``retrieval.rewrite.model``; None when off)."""
    rewrite = config.retrieval.rewrite
    if rewrite.model is None:
        return None
    link = registry.get(rewrite.model)
    if link is None:
        spec = config.model_spec(rewrite.model)
        assert spec is not None  # the config checks that it names a model
        reason = unusable_reason(spec, settings)
        if reason is not None:
            return None  # no key or package: the question is searched as asked
        link = RegisteredModel(spec, build_chat_model(spec, settings))
    if link.unusable is not None:
        return None
    return QueryRewriter(link, rewrite, workspace=config.name)


async def build_runtime(
    settings: Settings,
    *,
    config: WorkspaceConfig | None = None,
    identity: IdentityResolver | None = None,
    prepare: bool = True,
    degraded: bool = True,
) -> Runtime:
    """Everything the pipeline needs. Raises ConfigError / StoreError with a readable message."""
    config = config or load_config(settings.concierge_config)
    timeouts = Timeouts(settings.db_connect_timeout_s, settings.db_timeout_s)
    # Degraded: a database that cannot be reached is marked down and records are spooled
    # (questions are still answered); otherwise its cause is the command's error.
    opener = Store.open_degraded if degraded else Store.open
    store = await asyncio.to_thread(opener, settings.effective_database_url, timeouts=timeouts)
    spool = Spool(settings.spool_dir)
    store.spool = spool
    # What an earlier run could not record is written first, if the database answers.
    unannounced: list[Review] = []
    await replay_now(store, spool, {"feedback": feedback_handler(config)}, unannounced)
    unembedded = embeddings_unusable(config.embeddings, settings)
    embedder = (
        None
        if unembedded
        else await asyncio.to_thread(
            make_embedder,
            config.embeddings,
            api_key=settings.openai_api_key.get_secret_value() if settings.openai_api_key else None,
            base_url=settings.openai_base_url,
        )
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
    warnings: list[str] = unknown_key_warnings(config)
    if unembedded:
        warnings.append(unembedded)
    if prepare:
        for found in await asyncio.gather(*(c.prepare() for c in connectors.values())):
            warnings.extend(found)
    directory = DirectoryResolver(config)
    policy = AccessPolicy(config)
    registry = build_registry(config, settings)
    timings = RouterTimings(
        first_token_timeout_s=config.routing.first_token_timeout_s,
        hedge_after_s=config.routing.hedge_after_s,
        stall_timeout_s=config.routing.stall_timeout_s,
        total_timeout_s=config.routing.total_timeout_s,
    )
    breaker = make_breaker(settings, config)
    window = FirstTokenWindow()  # both chains learn the same models' first-token times
    router = ModelRouter([registry[name] for name in config.chain], timings, breaker, window)
    warnings.extend(model_notes(router.chain))
    cheaper = ModelRouter(
        [registry[name] for name in config.step_down_chain], timings, breaker, window
    )
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
        grant_cache=GrantCache(
            store, ttl_s=settings.access_cache_s, stale_s=settings.grants_stale_s
        ),
        spool=spool,
        unannounced=unannounced,
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
            rewriter=make_rewriter(config, settings, registry),
            synonyms=synonyms_for(
                config.retrieval.synonyms, builtin=config.retrieval.builtin_synonyms
            ),
            reviews=runtime.reviews,
        )
    )
    return runtime
