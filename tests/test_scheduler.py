"""Scheduled jobs: exactly one run per trigger across instances sharing a database, missed
runs caught up once, and the jobs themselves through ``app.py jobs``."""

from __future__ import annotations

import itertools
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import select

from bot.jobs.scheduler import JobHost, Scheduler, latest_slot, slots_between
from bot.store.db import Store
from bot.store.models import JobRun

ROOT = Path(__file__).resolve().parent.parent


def test_two_instances_on_one_database_run_each_trigger_once(db_url: str, tmp_path: Path) -> None:
    Store.open(db_url).close()  # migrate once, before both start
    out = tmp_path / "ticks.txt"
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.jobs_instance", db_url, "6", str(out), name],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("instance-a", "instance-b")
    ]
    for p in procs:
        _, err = p.communicate(timeout=60)
        assert p.returncode == 0, err[-2000:]
    store = Store.open(db_url)
    with store.session() as s:
        runs = list(s.scalars(select(JobRun).where(JobRun.job == "tick").order_by(JobRun.slot)))
    store.close()
    ticks = out.read_text().split()
    slots = [r.slot for r in runs]
    assert len(runs) >= 3
    assert len(set(slots)) == len(slots)  # one row per trigger time
    assert len(ticks) == len(runs)  # and the job body ran once per row, not once per instance
    assert Counter(ticks) == Counter(r.instance for r in runs)
    assert all(r.status == "ok" for r in runs)
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(slots)]
    assert sum(1 for g in gaps if g > 1.0) <= 1  # no trigger lost (one allowed at start-up)


async def test_a_missed_run_is_caught_up_once_and_recorded(db_url: str) -> None:
    store = Store.open(db_url)
    ran: list[str] = []
    from bot.jobs import scheduler as sched

    async def work(host: JobHost) -> str:
        ran.append("x")
        return "done"

    sched.JOBS["test_hourly"] = work
    trigger = CronTrigger.from_crontab("0 * * * *", timezone=UTC)
    now = datetime.now(UTC)
    last = latest_slot(trigger, now)
    assert last is not None and last <= now and now - last < timedelta(hours=1)
    with store.session() as s:  # the last run was three hours before the latest slot
        s.add(JobRun(job="test_hourly", slot=last - timedelta(hours=3), instance="old"))
    one = Scheduler(JobHost(store), {"test_hourly": trigger}, instance="one")
    two = Scheduler(JobHost(store), {"test_hourly": trigger}, instance="two")
    assert await one.catch_up(now) == ["test_hourly"]
    assert await two.catch_up(now) == []  # another instance starting does not repeat it
    assert await one.catch_up(now) == []
    assert ran == ["x"]
    with store.session() as s:
        row = s.scalars(select(JobRun).where(JobRun.slot == last)).one()
    assert row.missed == 2 and "caught up" in (row.detail or "") and row.status == "ok"
    del sched.JOBS["test_hourly"]
    store.close()


def test_slots_of_cron_and_interval_triggers() -> None:
    at = datetime(2026, 11, 25, 10, 17, 30, tzinfo=UTC)
    weekly = CronTrigger.from_crontab("0 9 * * mon", timezone=UTC)
    assert latest_slot(weekly, at) == datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    minutely = CronTrigger.from_crontab("* * * * *", timezone=UTC)
    assert latest_slot(minutely, at) == datetime(2026, 11, 25, 10, 17, tzinfo=UTC)
    every = IntervalTrigger(seconds=10, start_date=datetime(2026, 1, 1, tzinfo=UTC))
    assert latest_slot(every, at) == datetime(2026, 11, 25, 10, 17, 30, tzinfo=UTC)
    assert slots_between(minutely, at - timedelta(minutes=5), at) == 5
    assert latest_slot(CronTrigger.from_crontab("0 0 1 1 *", timezone=UTC), at) == datetime(
        2026, 1, 1, tzinfo=UTC
    )


def test_grant_expiry_and_retention_jobs_from_the_command_line(cli, env) -> None:
    from bot.store.models import AuditEvent, Exchange, Feedback, Grant

    assert cli("access", "grant", "eve@canary.test", "finance-notes", "--for", "1d").code == 0
    assert cli("ask", "Where do I submit expenses?", "--as", "eve@canary.test").code == 0
    store = Store.open(env["DATABASE_URL"])
    with store.session() as s:
        grant = s.scalars(select(Grant)).one()
        grant.expires_at = datetime.now(UTC) - timedelta(minutes=1)  # it has just expired
        exchange = s.scalars(select(Exchange)).one()
        exchange.created_at = datetime.now(UTC) - timedelta(days=400)
        s.add(Feedback(exchange_id=exchange.id, voter="eve@canary.test", vote=-1, reason="old"))
        cost, outcome = exchange.cost_usd, exchange.outcome
    first = cli("jobs", "run", "grant_expiry")
    assert (
        first.code == 0 and "1 grant(s) expired: user:eve@canary.test -> finance-notes" in first.out
    )
    again = cli("jobs", "run", "grant_expiry")
    assert "0 grant(s) expired" in again.out  # one audit row per expiry, not per run
    assert "retention.days is not set" in cli("jobs", "run", "retention_purge").out
    text = Path(env["CONCIERGE_CONFIG"]).read_text() + "retention: {days: 365}\n"
    Path(env["CONCIERGE_CONFIG"]).write_text(text)
    purged = cli("jobs", "run", "retention_purge")
    assert "removed the text of 1 exchange(s) older than 365 days" in purged.out
    with store.session() as s:
        rows = s.scalars(select(AuditEvent).where(AuditEvent.action == "expire")).all()
        assert len(rows) == 1 and rows[0].actor == "system" and rows[0].subject == "finance-notes"
        exchange = s.scalars(select(Exchange)).one()
        assert exchange.question is None and exchange.answer is None
        assert (exchange.cost_usd, exchange.outcome) == (cost, outcome)  # numbers stay
        assert s.scalars(select(Feedback)).one().reason is None
    store.close()
    listed = cli("jobs", "list")
    assert "grant_expiry" in listed.out and "ok" in listed.out and "retention_purge" in listed.out
    assert cli("jobs", "run", "nonsense").code == 2


def test_a_bad_schedule_is_refused_with_the_field(cli, env) -> None:
    text = Path(env["CONCIERGE_CONFIG"]).read_text() + "jobs: {weekly_report: 'every monday'}\n"
    Path(env["CONCIERGE_CONFIG"]).write_text(text)
    result = cli("jobs", "list")
    assert result.code == 2 and "jobs.weekly_report" in result.err and "crontab" in result.err


def test_a_fresh_process_schedules_every_configured_job() -> None:
    code = (
        "from bot.config import Jobs\n"
        "from bot.jobs.scheduler import JobHost, Scheduler\n"
        "s = Scheduler.from_config(JobHost(None), Jobs().schedule(), 'UTC')\n"
        "print(' '.join(sorted(s.triggers)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == sorted(
        [
            "delivery_purge",
            "grant_expiry",
            "reindex",
            "retention_purge",
            "review_reminders",
            "weekly_report",
        ]
    )
