"""``/concierge report [7d|30d]`` for owners: a Block Kit summary with the trend chart and
the CSV, sent to the owner by DM (the same numbers as ``app.py report``)."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from slack_sdk.models.blocks import ContextBlock, HeaderBlock, MarkdownTextObject, SectionBlock

from bot.errors import UsageError
from bot.reports import metrics, render
from bot.reports.metrics import Report
from bot.slack.actors import member_email
from bot.slack.deps import SlackDeps
from bot.slack.text import escape

PERIOD_RE = re.compile(r"^(\d{1,3})d$")


def parse_period(text: str) -> int:
    value = text.strip().lower() or "7d"
    m = PERIOD_RE.match(value)
    if not m or not 1 <= int(m.group(1)) <= 366:
        raise UsageError("Usage: `/concierge report [7d|30d]` (a number of days, up to 366d)")
    return int(m.group(1))


SLACK_ID = re.compile(r"^[CDG][A-Z0-9]{2,}$")
TS = re.compile(r"^\d+\.\d+$")


def thread_link(channel: str | None, thread: str | None) -> str:
    """A link to the Slack thread of an exchange (Slack resolves it for a signed-in reader)."""
    if not channel or not thread or not SLACK_ID.match(channel) or not TS.match(thread):
        return ""
    return f" <https://slack.com/archives/{channel}/p{thread.replace('.', '')}|thread>"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.0f}%"


def summary_blocks(report: Report, days: int) -> list[dict[str, Any]]:
    o = report.outcomes
    facts = (
        f"*Questions:* {report.questions} from {report.askers} people\n"
        f"*Outcomes:* {o.get('answered', 0)} answered, {o.get('no_answer', 0)} no answer, "
        f"{o.get('refused', 0)} refused, {o.get('failed', 0) + o.get('incomplete', 0)} failed "
        f"or incomplete\n"
        f"*Satisfaction:* {_pct(report.satisfaction)} ({report.up} 👍, {report.down} 👎), "
        f"feedback on {_pct(report.feedback_rate)} of answers\n"
        f"*Fallback rate:* {_pct(report.fallback_rate)} · *Cost:* ${report.cost:.4f}"
    )
    worst = report.worst(3)
    lines = [
        f"• {r.down}👎 “{escape((r.question or '')[:100])}” — "
        f"{escape('; '.join(r.reasons) or 'no reason given')}{thread_link(r.channel, r.thread)}"
        for r in worst
    ]
    blocks = [
        HeaderBlock(text=f"Concierge report: last {days} days"),
        SectionBlock(text=MarkdownTextObject(text=facts)),
        SectionBlock(
            text=MarkdownTextObject(
                text="*Worst-rated answers*\n" + ("\n".join(lines) or "None voted down.")
            )
        ),
        ContextBlock(
            elements=[
                MarkdownTextObject(
                    text=f"{report.start:%Y-%m-%d} to {report.end:%Y-%m-%d} · chart and CSV below"
                )
            ]
        ),
    ]
    return [b.to_dict() for b in blocks]


async def send_report(deps: SlackDeps, *, user_id: str, text: str) -> str:
    """Build the report and DM it to an owner; returns the ephemeral reply."""
    days = parse_period(text)
    email = await member_email(deps, user_id, "run the report")
    if email not in deps.runtime.config.owners:
        raise UsageError("Only the bot's owners can run reports.")

    await deliver_report(deps, user_id=user_id, days=days)
    return "Your report is in your direct messages with me."


async def deliver_report(deps: SlackDeps, *, user_id: str, days: int) -> None:
    """DM the report for the last ``days`` days to a Slack user: summary, chart and CSV."""

    def build() -> tuple[Report, bytes, str]:
        with deps.runtime.store.session() as s:
            data = metrics.load(s, days=days)
        return data, render.chart_png(data), render.csv_text(data)

    data, png, csv = await asyncio.to_thread(build)
    opened = await deps.client.conversations_open(users=user_id)
    channel = opened["channel"]["id"]
    posted = await deps.client.chat_postMessage(
        channel=channel,
        text=f"Concierge report: last {days} days",
        blocks=summary_blocks(data, days),
        unfurl_links=False,
    )
    await deps.client.files_upload_v2(
        channel=channel,
        thread_ts=posted["ts"],
        file_uploads=[
            {"content": png, "filename": "chart.png", "title": "Questions and satisfaction"},
            {"content": csv, "filename": "report.csv", "title": "Exchanges"},
        ],
    )
