"""``/concierge report [7d|30d]`` and the weekly job for owners: a Block Kit summary with
the content-gap list, the chart and the CSV, sent to the owner by DM (the same report as
``app.py report``, written for that owner: questions they may not read are counted only).
``summary_blocks`` and ``gap_blocks`` are pure functions of a Report."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from slack_sdk.models.blocks import ContextBlock, HeaderBlock, MarkdownTextObject, SectionBlock

from bot.errors import UsageError
from bot.reports import render
from bot.reports.build import build
from bot.reports.metrics import Report, plural
from bot.reports.wording import (
    NO_DOCUMENT,
    audience_line,
    gap_counts,
    gap_summary,
    hidden_note,
    pct,
    question_text,
)
from bot.slack.actors import member_email
from bot.slack.deps import SlackDeps
from bot.slack.text import escape, safe_text

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


MAX_GAPS = 5  # topics shown in Slack; the HTML and Markdown reports list them all
SECTION_MAX = 2900  # Slack refuses a section text over 3,000 characters


def _cut(text: str, limit: int = SECTION_MAX) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def gap_blocks(report: Report) -> list[Any]:
    """The content-gap list: one section per topic with examples and nearest documents."""
    blocks: list[Any] = [
        SectionBlock(
            text=MarkdownTextObject(
                text=f"*Questions Concierge could not answer*\n{escape(gap_summary(report))}"
            )
        )
    ]
    for gap in report.gaps[:MAX_GAPS]:
        examples = "\n".join(
            f"> “{safe_text(question_text(r, 150))}”{thread_link(r.channel, r.thread)}"
            for r in gap.examples
        )
        nearest = "; ".join(f"{safe_text(d.title)} (`{safe_text(d.source)}`)" for d in gap.nearest)
        blocks.append(
            SectionBlock(
                text=MarkdownTextObject(
                    text=_cut(
                        f"*{safe_text(gap.topic)}* — {escape(gap_counts(gap))}"
                        f"\n{examples}\n_Nearest documents:_ {nearest or NO_DOCUMENT}"
                    )
                )
            )
        )
    notes = []
    if len(report.gaps) > MAX_GAPS:
        notes.append(f"{plural(len(report.gaps) - MAX_GAPS, 'more topic')} in `app.py report`.")
    if note := hidden_note(report):
        notes.append(note)
    if notes:
        blocks.append(ContextBlock(elements=[MarkdownTextObject(text=escape(" ".join(notes)))]))
    return blocks


def summary_blocks(report: Report, days: int) -> list[dict[str, Any]]:
    o = report.outcomes
    facts = (
        f"*Questions:* {report.questions} from {plural(report.askers, 'person')}\n"
        f"*Outcomes:* {o.get('answered', 0)} answered, {o.get('no_answer', 0)} no answer, "
        f"{o.get('refused', 0)} refused, {o.get('failed', 0) + o.get('incomplete', 0)} failed "
        f"or incomplete\n"
        f"*Votes:* {report.up} 👍, {report.down} 👎 · *Satisfaction:* {pct(report.satisfaction)}, "
        f"feedback on {pct(report.feedback_rate)} of answers\n"
        f"*Fallback rate:* {pct(report.fallback_rate)} · *Cost:* ${report.cost:.4f}"
    )
    worst = report.worst(3)
    lines = [
        f"• {r.down}👎 “{safe_text(question_text(r, 100))}” — "
        f"{safe_text(('; '.join(r.reasons) or 'no reason given') if r.shown else 'reason hidden')}"
        f"{thread_link(r.channel, r.thread)}"
        for r in worst
    ]
    blocks = [
        HeaderBlock(text=f"Concierge report: last {plural(days, 'day')}"),
        SectionBlock(text=MarkdownTextObject(text=facts)),
        *gap_blocks(report),
        SectionBlock(
            text=MarkdownTextObject(
                text=_cut("*Worst-rated answers*\n" + ("\n".join(lines) or "None voted down."))
            )
        ),
        ContextBlock(
            elements=[
                MarkdownTextObject(
                    text=f"{escape(report.period)} · {escape(audience_line(report))} · "
                    "chart and CSV below"
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

    await deliver_report(deps, user_id=user_id, email=email, days=days)
    return "Your report is in your direct messages with me."


async def deliver_report(deps: SlackDeps, *, user_id: str, email: str, days: int) -> None:
    """DM the report for the last ``days`` days to one owner (``email`` is who reads it:
    questions appear only where they may read them): summary, content gaps, chart and CSV."""
    data = await build(deps.runtime, days=days, readers=[email])
    png, csv = await asyncio.to_thread(lambda: (render.chart_png(data), render.csv_text(data)))
    opened = await deps.client.conversations_open(users=user_id)
    channel = opened["channel"]["id"]
    posted = await deps.client.chat_postMessage(
        channel=channel,
        text=f"Concierge report: last {plural(days, 'day')}",
        blocks=summary_blocks(data, days),
        unfurl_links=False,
    )
    await deps.client.files_upload_v2(
        channel=channel,
        thread_ts=posted["ts"],
        file_uploads=[
            {"content": png, "filename": "chart.png", "title": "Questions and votes per day"},
            {"content": csv, "filename": "report.csv", "title": "Exchanges"},
        ],
    )
