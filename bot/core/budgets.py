"""Cost budgets for the limits step: a daily budget per person and a monthly one for the
workspace, in USD, from config.

Spending is kept in a ledger: Redis when REDIS_URL is set (every instance adds to the same
keys), else a dict in this process. A ledger key is seeded once from the store (the recorded
exchanges of the period), so a restart or a new instance starts from what was really spent.
Near the soft limit the pipeline steps down to a cheaper chain; at the hard limit the person
is told when they can ask again, and the owners are told once per period.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol

from bot.config import Limits
from bot.core.shared import guard_for

Scope = Literal["person", "workspace"]
# Spent in the store since a moment (UTC), for one person or (None) for everyone.
Seed = Callable[[datetime, str | None], Awaitable[float]]
Notify = Callable[[str], Awaitable[None]]


class SpendUnknown(Exception):
    """A seed cannot read what was spent (the database is unreachable): nothing is cached,
    and the question is answered on the cheaper chain until it can be read again."""


@dataclass(frozen=True)
class Period:
    scope: Scope
    key: str  # the ledger key, period included
    start: datetime
    end: datetime
    limit: float


@dataclass(frozen=True)
class BudgetDecision:
    allowed: bool = True
    step_down: bool = False
    reason: str | None = None  # budget_person_daily | budget_workspace_monthly
    resets_at: datetime | None = None
    spent: float = 0.0
    limit: float = 0.0


class Ledger(Protocol):
    async def spent(self, key: str, seed: Callable[[], Awaitable[float]], ttl_s: int) -> float: ...

    async def add(self, key: str, usd: float, ttl_s: int) -> None: ...

    async def once(self, key: str, ttl_s: int) -> bool:
        """True for the first caller only (per key, until it expires)."""


class LocalLedger:
    def __init__(self) -> None:
        self._spent: dict[str, float] = {}
        self._flags: set[str] = set()
        self._lock = threading.Lock()

    async def spent(self, key: str, seed: Callable[[], Awaitable[float]], ttl_s: int) -> float:
        with self._lock:
            if key in self._spent:
                return self._spent[key]
        value = await seed()
        with self._lock:
            return self._spent.setdefault(key, value)

    async def add(self, key: str, usd: float, ttl_s: int) -> None:
        with self._lock:
            if key in self._spent:  # unseeded keys are seeded from the store, which has it
                self._spent[key] += usd

    async def once(self, key: str, ttl_s: int) -> bool:
        with self._lock:
            if key in self._flags:
                return False
            self._flags.add(key)
            return True


class RedisLedger:
    """Shared by every instance using the same Redis and key prefix; while Redis is
    unreachable, this process keeps its own ledger (seeded from the store like LocalLedger)."""

    def __init__(self, client: Any, prefix: str) -> None:
        self.client = client
        self.prefix = prefix
        self.guard = guard_for(client)
        self.local = LocalLedger()

    async def spent(self, key: str, seed: Callable[[], Awaitable[float]], ttl_s: int) -> float:
        return await self.guard.run(
            lambda: self._spent(key, seed, ttl_s), lambda: self.local.spent(key, seed, ttl_s)
        )

    async def add(self, key: str, usd: float, ttl_s: int) -> None:
        await self.guard.run(
            lambda: self._add(key, usd, ttl_s), lambda: self.local.add(key, usd, ttl_s)
        )

    async def once(self, key: str, ttl_s: int) -> bool:
        return await self.guard.run(
            lambda: self._once(key, ttl_s), lambda: self.local.once(key, ttl_s)
        )

    async def _spent(self, key: str, seed: Callable[[], Awaitable[float]], ttl_s: int) -> float:
        name = f"{self.prefix}budget:{key}"
        value = await asyncio.to_thread(self.client.get, name)
        if value is not None:
            return float(value)
        seeded = await seed()
        # Only the first seeder wins; everyone then reads the shared value.
        await asyncio.to_thread(lambda: self.client.set(name, repr(seeded), nx=True, ex=ttl_s))
        return float(await asyncio.to_thread(self.client.get, name) or 0.0)

    async def _add(self, key: str, usd: float, ttl_s: int) -> None:
        name = f"{self.prefix}budget:{key}"

        def write() -> None:
            if self.client.exists(name):
                self.client.incrbyfloat(name, usd)

        await asyncio.to_thread(write)

    async def _once(self, key: str, ttl_s: int) -> bool:
        name = f"{self.prefix}budget-told:{key}"
        return bool(await asyncio.to_thread(self.client.set, name, "1", nx=True, ex=ttl_s))


def periods(limits: Limits, person: str, now: datetime) -> list[Period]:
    found = []
    if limits.person_daily_usd is not None:
        start = now.replace(hour=0, minute=0, second=0, microsecond=0)
        found.append(
            Period(
                "person",
                f"person:{person}:{start:%Y-%m-%d}",
                start,
                start + timedelta(days=1),
                limits.person_daily_usd,
            )
        )
    if limits.workspace_monthly_usd is not None:
        start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        end = (start + timedelta(days=32)).replace(day=1)
        found.append(
            Period(
                "workspace",
                f"workspace:{start:%Y-%m}",
                start,
                end,
                limits.workspace_monthly_usd,
            )
        )
    return found


class Budgets:
    def __init__(
        self,
        limits: Limits,
        ledger: Ledger,
        seed: Seed,
        notify: Notify | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.limits = limits
        self.ledger = ledger
        self.seed = seed
        self.notify = notify
        self.clock = clock

    @property
    def enabled(self) -> bool:
        return self.limits.person_daily_usd is not None or (
            self.limits.workspace_monthly_usd is not None
        )

    @staticmethod
    def _ttl(period: Period) -> int:
        return int((period.end - period.start).total_seconds()) + 3600

    async def _spent(self, period: Period, person: str) -> float:
        who = person if period.scope == "person" else None
        return await self.ledger.spent(
            period.key, lambda: self.seed(period.start, who), self._ttl(period)
        )

    async def check(self, person: str) -> BudgetDecision:
        if not self.enabled:
            return BudgetDecision()
        # The most used of the budgets decides (a person's day, the workspace's month).
        decision, used = BudgetDecision(), -1.0
        for period in periods(self.limits, person, self.clock()):
            try:
                spent = await self._spent(period, person)
            except SpendUnknown:
                return BudgetDecision(True, True)
            if spent >= period.limit:
                span = "daily" if period.scope == "person" else "monthly"
                await self._tell_owners(period, person, spent)
                return BudgetDecision(
                    False, False, f"budget_{period.scope}_{span}", period.end, spent, period.limit
                )
            share = spent / period.limit if period.limit else 1.0
            if share > used:
                soft = share >= self.limits.budget_soft_fraction
                decision = BudgetDecision(True, soft, None, period.end, spent, period.limit)
                used = share
        return decision

    async def charge(self, person: str, usd: float) -> None:
        if not self.enabled or usd <= 0:
            return
        for period in periods(self.limits, person, self.clock()):
            await self.ledger.add(period.key, usd, self._ttl(period))

    async def _tell_owners(self, period: Period, person: str, spent: float) -> None:
        if self.notify is None or not await self.ledger.once(period.key, self._ttl(period)):
            return
        if period.scope == "person":
            text = (
                f"{person} has reached their daily Concierge budget (${spent:.2f} of "
                f"${period.limit:.2f}); their questions are paused until {period.end:%H:%M} UTC."
            )
        else:
            text = (
                f"The workspace has reached its monthly Concierge budget (${spent:.2f} of "
                f"${period.limit:.2f}); questions are paused until {period.end:%d %B %Y} (UTC). "
                "Raise limits.workspace_monthly_usd in the config to resume sooner."
            )
        await self.notify(text)


def refusal_message(decision: BudgetDecision, now: datetime) -> str:
    """What the person reads at a hard limit: which budget, and when they can ask again."""
    when = decision.resets_at or now
    wait = when - now
    hours, minutes = divmod(max(1, int(wait.total_seconds() // 60)), 60)
    span = f"{hours} h {minutes} min" if hours else f"{minutes} min"
    if decision.reason == "budget_person_daily":
        return (
            f"You've used today's question budget (${decision.spent:.2f} of "
            f"${decision.limit:.2f}). You can ask again after {when:%H:%M} UTC (in {span})."
        )
    return (
        f"This workspace has used its monthly budget for answers (${decision.spent:.2f} of "
        f"${decision.limit:.2f}). Questions resume on {when:%d %B} (UTC); the owners have "
        "been told."
    )
