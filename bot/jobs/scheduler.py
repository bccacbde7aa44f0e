"""Scheduled jobs: APScheduler 3 with its SQLAlchemy job store, run exactly once per trigger
even when several instances share the database.

APScheduler 3 alone does not guarantee that: every instance polls the shared job store and may
fire the same job. So each run first *claims* its trigger time ("slot"): it inserts a
``job_runs`` row, and the database's unique (job, slot) constraint lets exactly one instance
succeed. The others see the conflict and do nothing. The row then records how the run went.

A run missed while every instance was down is caught up once at start (coalesced: one run for
the latest missed slot), recorded with how many slots were missed.

Jobs are registered by name in ``JOBS``; the job store keeps a textual reference to ``fire``
with the job's name, so each process runs its own registered function.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from bot.store.db import Store
from bot.store.models import JobRun, utcnow

log = logging.getLogger("concierge.jobs")

# A job gets the running JobHost and returns a one-line summary for the job_runs row.
JobFunc = Callable[["JobHost"], Awaitable[str]]

WINDOWS = (
    timedelta(minutes=2),
    timedelta(hours=2),
    timedelta(days=2),
    timedelta(days=33),
    timedelta(days=400),
)
CLOCK_TOLERANCE = timedelta(seconds=1)


def latest_slot(trigger: BaseTrigger, now: datetime) -> datetime | None:
    """The trigger's latest fire time at or before ``now`` (None if it never fired).

    Searched in growing windows, so a per-minute trigger costs a few steps, not thousands.
    """
    limit = now + CLOCK_TOLERANCE
    for window in WINDOWS:
        fire = trigger.get_next_fire_time(None, now - window)
        if fire is None or fire > limit:
            continue
        for _ in range(10_000):  # bounded: a window holds few fires of the trigger
            following = trigger.get_next_fire_time(fire, fire + timedelta(microseconds=1))
            if following is None or following > limit:
                return fire
            fire = following
        return fire
    return None


def slots_between(trigger: BaseTrigger, after: datetime, until: datetime, cap: int = 10_000) -> int:
    """How many fire times fall in (after, until), capped."""
    count = 0
    fire = trigger.get_next_fire_time(after, after + timedelta(microseconds=1))
    while fire is not None and fire < until and count < cap:
        count += 1
        fire = trigger.get_next_fire_time(fire, fire + timedelta(microseconds=1))
    return count


@dataclass
class JobHost:
    """What jobs run against: the store, the runtime, and optional delivery (Slack)."""

    store: Store
    runtime: Any = None  # bot.runtime.Runtime (Any: the scheduler does not need its type)
    delivery: Any = None  # bot.jobs.tasks.Delivery when connected to Slack
    extra: dict[str, Any] = field(default_factory=dict)


JOBS: dict[str, JobFunc] = {}


def job(name: str) -> Callable[[JobFunc], JobFunc]:
    def register(func: JobFunc) -> JobFunc:
        JOBS[name] = func
        return func

    return register


_active: Scheduler | None = None


async def fire(name: str) -> None:
    """The function the job store references: run job ``name`` in this process's scheduler."""
    if _active is None:
        log.warning("job %s fired with no scheduler running", name)
        return
    await _active.run(name)


class Scheduler:
    def __init__(
        self,
        host: JobHost,
        triggers: dict[str, BaseTrigger],
        *,
        timezone: str = "UTC",
        instance: str | None = None,
    ) -> None:
        import bot.jobs.tasks  # noqa: F401  (registers the jobs)

        self.host = host
        self.triggers = triggers
        self.timezone = ZoneInfo(timezone)
        self.instance = instance or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._aps: AsyncIOScheduler | None = None
        self._running: set[asyncio.Task[Any]] = set()

    @classmethod
    def from_config(cls, host: JobHost, schedule: dict[str, str], timezone: str) -> Scheduler:
        import bot.jobs.tasks  # noqa: F401  (registers the jobs)

        zone = ZoneInfo(timezone)
        triggers: dict[str, BaseTrigger] = {
            name: CronTrigger.from_crontab(cron, timezone=zone)
            for name, cron in schedule.items()
            if name in JOBS
        }
        return cls(host, triggers, timezone=timezone)

    async def start(self) -> None:
        global _active
        if _active is not None and _active is not self:
            raise RuntimeError("one scheduler per process")
        _active = self
        store = SQLAlchemyJobStore(engine=self.host.store.engine, tablename="apscheduler_jobs")
        self._aps = AsyncIOScheduler(
            jobstores={"default": store},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
            timezone=self.timezone,
        )
        self._aps.start()
        for name, trigger in self.triggers.items():
            # The schedule comes from config, which may have changed: replace what was stored.
            await asyncio.to_thread(
                self._aps.add_job,
                "bot.jobs.scheduler:fire",
                trigger=trigger,
                args=[name],
                id=name,
                name=name,
                replace_existing=True,
            )
        await self.catch_up()
        log.info("scheduler %s started: %s", self.instance, ", ".join(self.triggers) or "no jobs")

    async def stop(self) -> None:
        global _active
        if self._aps is not None:
            self._aps.shutdown(wait=False)
            self._aps = None
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)
        if _active is self:
            _active = None

    async def catch_up(self, now: datetime | None = None) -> list[str]:
        """Run once, now, each job whose latest slot passed while no instance was running."""
        now = now or datetime.now(UTC)
        caught = []
        for name, trigger in self.triggers.items():
            slot = latest_slot(trigger, now)
            last = await asyncio.to_thread(self._last_slot, name)
            if slot is None or last is None or last >= slot:
                continue  # never ran here before (a new install) or already up to date
            missed = slots_between(trigger, last, slot)
            if await self.run(name, slot=slot, missed=missed, now=now):
                caught.append(name)
        return caught

    def _last_slot(self, name: str) -> datetime | None:
        with self.host.store.session() as s:
            value = s.scalar(
                select(JobRun.slot).where(JobRun.job == name).order_by(JobRun.slot.desc()).limit(1)
            )
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value

    async def run(
        self,
        name: str,
        *,
        slot: datetime | None = None,
        missed: int = 0,
        now: datetime | None = None,
    ) -> bool:
        """Claim (name, slot) and run the job; False when another instance has the slot."""
        now = now or datetime.now(UTC)
        trigger = self.triggers.get(name)
        if slot is None:
            slot = (latest_slot(trigger, now) if trigger else None) or now
        run_id = await asyncio.to_thread(self._claim, name, slot, now, missed)
        if run_id is None:
            log.debug("job %s slot %s: taken by another instance", name, slot.isoformat())
            return False
        func = JOBS.get(name)
        status, detail = "ok", ""
        try:
            if func is None:
                raise LookupError(f"no job named {name!r} in this version")
            detail = await func(self.host)
        except Exception as exc:
            log.exception("job %s failed", name)
            status, detail = "failed", f"{exc.__class__.__name__}: {exc}"[:2000]
        if missed:
            detail = f"caught up after downtime ({missed} earlier run(s) missed); {detail}"
        await asyncio.to_thread(self._finish, run_id, status, detail)
        log.info("job %s (%s): %s %s", name, slot.isoformat(), status, detail)
        return True

    def _claim(self, name: str, slot: datetime, now: datetime, missed: int) -> int | None:
        try:
            with self.host.store.session() as s:
                row = JobRun(
                    job=name,
                    slot=slot.astimezone(UTC),
                    instance=self.instance,
                    started_at=now,
                    late_s=max(0.0, (now - slot).total_seconds()),
                    missed=missed,
                )
                s.add(row)
                s.flush()
                return int(row.id)
        except IntegrityError:
            return None

    def _finish(self, run_id: int, status: str, detail: str) -> None:
        with self.host.store.session() as s:
            row = s.get(JobRun, run_id)
            if row is not None:
                row.status = status
                row.detail = detail
                row.finished_at = utcnow()


def recent_runs(store: Store, limit: int = 20) -> list[JobRun]:
    with store.session() as s:
        return list(s.scalars(select(JobRun).order_by(JobRun.started_at.desc()).limit(limit)))
