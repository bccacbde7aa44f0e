"""Phrases shared by the report's renderings (Markdown, HTML, Slack)."""

from __future__ import annotations

from bot.reports.gaps import LISTED, Gap
from bot.reports.metrics import Report, Row, plural


def pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.0f}%"


def ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f} ms"


NO_DOCUMENT = "none near this topic: it needs a new document"
HIDDEN = "(hidden: it carries sources a reader of this report may not read)"
OUTCOMES = ("answered", "no_answer", "refused", "incomplete", "failed", "pending_review")


def question_text(row: Row, limit: int = 160) -> str:
    """The stored (redacted) question, cut to ``limit``; never when a reader may not read it."""
    if not row.shown:
        return HIDDEN
    text = " ".join((row.question or "").split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def audience_line(report: Report) -> str:
    if report.readers:
        return (
            "Written for "
            + ", ".join(report.readers)
            + ": question text appears only where every one of them may read it."
        )
    return "Written for no one in particular: only question text everyone may read appears."


def gap_summary(report: Report) -> str:
    """``5 questions went unanswered or were voted down (4 with no answer), in 2 topics.``"""
    if not report.unanswered:
        return "Every question in this period was answered, and no answer was voted down."
    return (
        f"{plural(len(report.unanswered), 'question')} went unanswered or were voted down "
        f"({report.outcomes.get('no_answer', 0)} with no answer), "
        f"in {plural(len(report.gaps), 'topic')}."
    )


def gap_counts(gap: Gap) -> str:
    """``3 questions from 2 people (2 no answer, 1 voted down)``."""
    split = f" ({gap.no_answer} no answer, {gap.voted_down} voted down)" if gap.voted_down else ""
    return f"{plural(gap.count, 'question')} from {plural(gap.askers, 'person')}{split}"


def gap_heading(gap: Gap) -> str:
    return f"{gap.topic} — {gap_counts(gap)}"


def more_topics_note(report: Report, listed: int = LISTED) -> str | None:
    """The topics past the ones listed, summed up (report.csv names every question's topic)."""
    rest = report.gaps[listed:]
    if not rest:
        return None
    n = sum(g.count for g in rest)
    return (
        f"{plural(len(rest), 'more topic')} with {plural(n, 'question')} "
        f"(at most {max(g.count for g in rest)} each): see the topic column of report.csv."
    )


def hidden_note(report: Report) -> str | None:
    n = report.unanswered_hidden
    if not n:
        return None
    return (
        f"{plural(n, 'more question')} {'is' if n == 1 else 'are'} counted but not shown: "
        f"{'it carries' if n == 1 else 'they carry'} sources a reader of this report may not read."
    )
