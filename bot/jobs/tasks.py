"""The scheduled jobs. Each takes the JobHost and returns a one-line summary that is kept in
the ``job_runs`` row. Delivery to people (Slack) goes through ``host.delivery``; without it
(no Slack connection) a job that must reach people says so in its summary."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Protocol

from bot.jobs.scheduler import JobHost, job
from bot.store import claims, repo
from bot.store.models import Review, utcnow


class Delivery(Protocol):
    """How jobs reach people; the Slack adapter provides one."""

    async def report_to(self, email: str, days: int) -> bool: ...

    async def remind(self, review: Review) -> bool: ...


@job("weekly_report")
async def weekly_report(host: JobHost) -> str:
    owners = host.runtime.config.owners
    if not owners:
        return "no owners configured"
    if host.delivery is None:
        return "not connected to Slack: run `app.py report` for the report"
    sent = [email for email in owners if await host.delivery.report_to(email, 7)]
    missing = sorted(set(owners) - set(sent))
    return f"sent to {len(sent)} of {len(owners)} owner(s)" + (
        f"; could not reach {', '.join(missing)}" if missing else ""
    )


@job("retention_purge")
async def retention_purge(host: JobHost) -> str:
    days = host.runtime.config.retention.days
    if days is None:
        return "retention.days is not set: text is kept"
    cutoff = utcnow() - timedelta(days=days)

    def purge() -> int:
        with host.store.session() as s:
            return repo.purge_text_before(s, cutoff)

    removed = await asyncio.to_thread(purge)
    return f"removed the text of {removed} exchange(s) older than {days} days"


@job("reindex")
async def reindex(host: JobHost) -> str:
    parts = []
    for name, connector in host.runtime.connectors.items():
        try:
            changed = await connector.refresh()
        except Exception as exc:  # one broken source must not stop the others
            parts.append(f"{name}: failed ({exc.__class__.__name__})")
            continue
        parts.append(f"{name}: {changed} changed")
    return "; ".join(parts) or "no sources"


@job("review_reminders")
async def review_reminders(host: JobHost) -> str:
    after = timedelta(hours=host.runtime.config.review.remind_after_h)
    now = utcnow()

    def due() -> list[Review]:
        with host.store.session() as s:
            return [
                r
                for r in repo.pending_reviews(s)
                if now - (repo.as_utc(r.reminded_at) or repo.as_utc(r.created_at) or now) >= after
            ]

    reviews = await asyncio.to_thread(due)
    if not reviews:
        return "nothing waiting longer than the reminder delay"
    if host.delivery is None:
        return f"{len(reviews)} review(s) waiting; not connected to Slack to remind"
    reminded = 0
    for review in reviews:
        if await host.delivery.remind(review):
            reminded += 1

            def mark(review_id: int = review.id) -> None:
                with host.store.session() as s:
                    row = repo.get_review(s, review_id)
                    if row is not None:
                        row.reminded_at = utcnow()
                        row.reminders += 1

            await asyncio.to_thread(mark)
    return f"reminded {reminded} of {len(reviews)} waiting review(s)"


@job("grant_expiry")
async def grant_expiry(host: JobHost) -> str:
    def expire() -> list[str]:
        with host.store.session() as s:
            return [f"{g.principal} -> {g.target}" for g in repo.expire_grants(s)]

    expired = await asyncio.to_thread(expire)
    return f"{len(expired)} grant(s) expired" + (f": {', '.join(expired)}" if expired else "")


@job("delivery_purge")
async def delivery_purge(host: JobHost) -> str:
    """Expired Slack delivery claims (bot/store/claims.py) deleted; they no longer block."""

    def purge() -> int:
        with host.store.session() as s:
            return claims.purge(s)

    removed = await asyncio.to_thread(purge)
    return f"removed {removed} expired delivery claim(s)"
