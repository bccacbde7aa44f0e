"""How scheduled jobs reach people through Slack (bot.jobs.tasks.Delivery)."""

from __future__ import annotations

import logging

from bot.slack.deps import SlackDeps
from bot.slack.notify import member_user_id
from bot.slack.report import deliver_report
from bot.slack.review import post_review
from bot.store.models import Review

log = logging.getLogger("concierge.slack.delivery")


class SlackDelivery:
    def __init__(self, deps: SlackDeps) -> None:
        self.deps = deps

    async def report_to(self, email: str, days: int) -> bool:
        user_id = await member_user_id(self.deps, email)
        if user_id is None:
            return False
        try:
            await deliver_report(self.deps, user_id=user_id, email=email, days=days)
            return True
        except Exception as exc:
            log.warning("could not send the report to %s (%s)", email, exc.__class__.__name__)
            return False

    async def remind(self, review: Review) -> bool:
        return await post_review(self.deps, review, reminder=True)
