"""Rendering the owners' report: Markdown or HTML (bot.reports.html_page), a CSV of exchanges,
a PNG chart (bot.reports.chart). Pure functions of a Report, apart from writing the files
asked for. Question text and vote reasons appear only where ``Row.shown`` says every reader
of the report may read them."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

from bot.reports import chart, html_page
from bot.reports.gaps import LISTED
from bot.reports.metrics import Report
from bot.reports.wording import (
    HIDDEN,
    NO_DOCUMENT,
    OUTCOMES,
    audience_line,
    gap_heading,
    gap_summary,
    hidden_note,
    more_topics_note,
    ms,
    pct,
    question_text,
)

# Characters that make Markdown markup: a question, a reason or a document title is shown
# as the text it is, never as a link, an image (which a viewer would fetch) or HTML.
MD_ACTIVE = re.compile(r"([\\`*_\[\]<>~!|])")


def md(text: str) -> str:
    return MD_ACTIVE.sub(r"\\\1", text)


CSV_COLUMNS = (
    "exchange_id",
    "created_at",
    "asker",
    "channel",
    "thread",
    "outcome",
    "model",
    "models_tried",
    "sources",
    "up",
    "down",
    "reasons",
    "cost_usd",
    "ttft_ms",
    "total_ms",
    "question",
    "topic",
)


def gap_lines(report: Report) -> list[str]:
    """The content-gap list as Markdown lines."""
    lines = [gap_summary(report), ""]
    for gap in report.gaps[:LISTED]:
        lines += [f"### {md(gap_heading(gap))}", ""]
        for r in gap.examples:
            lines.append(
                f"- “{md(question_text(r))}” ({r.at:%Y-%m-%d}, {md(r.where)}, exchange {r.id})"
            )
        near = "; ".join(md(f"{d.title} ({d.source}: {d.uri})") for d in gap.nearest)
        lines += ["", f"Nearest documents: {near or NO_DOCUMENT}", ""]
    for note in (more_topics_note(report), hidden_note(report)):
        if note:
            lines += [note, ""]
    return lines


def markdown(report: Report) -> str:
    o = report.outcomes
    lines = [
        f"# Concierge report: {report.period}",
        "",
        audience_line(report),
        "",
        f"- Questions: {report.questions}",
        f"- Distinct askers: {report.askers}",
        "- Outcomes: " + ", ".join(f"{k} {o.get(k, 0)}" for k in OUTCOMES),
        f"- Satisfaction: {pct(report.satisfaction)} ({report.up} up, {report.down} down)",
        f"- Feedback rate: {pct(report.feedback_rate)}",
        f"- Time to first token: p50 {ms(report.latency('ttft', 50))}, "
        f"p95 {ms(report.latency('ttft', 95))}",
        f"- Total time: p50 {ms(report.latency('total', 50))}, "
        f"p95 {ms(report.latency('total', 95))}",
        f"- Fallback rate: {pct(report.fallback_rate)}",
        f"- Cost: ${report.cost:.4f}",
        "",
        "## Questions Concierge could not answer",
        "",
        *gap_lines(report),
        "## Worst-rated answers",
        "",
    ]
    worst = report.worst()
    if not worst:
        lines.append("No answer was voted down in this period.")
    for r in worst:
        reasons = ("; ".join(r.reasons) or "no reason given") if r.shown else "reason hidden"
        lines.append(
            f"- {r.down} down / {r.up} up — “{md(question_text(r, 120))}” ({md(r.where)}, "
            f"exchange {r.id}): {md(reasons)}"
        )
    lines += [
        "",
        "## By source",
        "",
        "| source | answers | up | down |",
        "| --- | --- | --- | --- |",
    ]
    lines += [
        f"| {s} | {v['answers']} | {v['up']} | {v['down']} |" for s, v in report.by_source().items()
    ]
    lines += [
        "",
        "## By model",
        "",
        "| model | answers | up | down | cost | p50 total |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    lines += [
        f"| {m} | {v['answers']:.0f} | {v['up']:.0f} | {v['down']:.0f} | ${v['cost']:.4f} | "
        f"{ms(v['p50_total_ms'])} |"
        for m, v in report.by_model().items()
    ]
    lines += ["", "## Refusals and withheld sources", ""]
    refusals = report.refusals_by_reason()
    lines.append(
        "- Refusals by reason: " + (", ".join(f"{k} {v}" for k, v in refusals.items()) or "none")
    )
    withheld = report.withheld_by_source()
    lines.append(
        "- Sources withheld from a shared audience: "
        + (", ".join(f"{k} {v}" for k, v in withheld.items()) or "none")
    )
    lines += ["", "## Cost by channel", ""]
    lines += [f"- {c}: ${v:.4f}" for c, v in report.cost_by_channel().items()] or ["- none"]
    lines += ["", f"![{chart.title(report)}](chart.png)", ""]
    return "\n".join(lines)


def csv_text(report: Report) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(CSV_COLUMNS)
    topic = {r.id: g.topic for g in report.gaps for r in g.rows}
    for r in report.rows:
        writer.writerow(
            [
                r.id,
                r.at.isoformat(),
                r.asker,
                r.channel or "",
                r.thread or "",
                r.outcome,
                r.model or "",
                " ".join(r.models_tried),
                " ".join(sorted(set(r.sources))),
                r.up,
                r.down,
                " | ".join(r.reasons) if r.shown else "",
                f"{r.cost:.8f}",
                "" if r.ttft_ms is None else f"{r.ttft_ms:.1f}",
                f"{r.total_ms:.1f}",
                (r.question or "") if r.shown else HIDDEN,
                topic.get(r.id, ""),
            ]
        )
    return buf.getvalue()


def chart_png(report: Report, *, width_px: int = 1000, height_px: int = 500) -> bytes:
    return chart.png(report, width_px=width_px, height_px=height_px)


def write(report: Report, out: Path, *, fmt: str = "md") -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    page = out / ("report.html" if fmt == "html" else "report.md")
    page.write_text(html_page.page(report) if fmt == "html" else markdown(report), encoding="utf-8")
    data = out / "report.csv"
    data.write_text(csv_text(report), encoding="utf-8", newline="")
    chart = out / "chart.png"
    chart.write_bytes(chart_png(report))
    return [page, data, chart]
