"""Rendering the owners' report: Markdown or HTML, a CSV of exchanges, a PNG trend chart.
Pure functions of a Report, apart from writing the files asked for."""

from __future__ import annotations

import csv
import html
import io
from pathlib import Path

from bot.reports.metrics import Report

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
)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.0f}%"


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f} ms"


def markdown(report: Report) -> str:
    o = report.outcomes
    lines = [
        f"# Concierge report: {report.start:%Y-%m-%d} to {report.end:%Y-%m-%d}",
        "",
        f"- Questions: {report.questions}",
        f"- Distinct askers: {report.askers}",
        "- Outcomes: "
        + ", ".join(
            f"{k} {o.get(k, 0)}"
            for k in ("answered", "no_answer", "refused", "incomplete", "failed", "pending_review")
        ),
        f"- Satisfaction: {_pct(report.satisfaction)} ({report.up} up, {report.down} down)",
        f"- Feedback rate: {_pct(report.feedback_rate)}",
        f"- Time to first token: p50 {_ms(report.latency('ttft', 50))}, "
        f"p95 {_ms(report.latency('ttft', 95))}",
        f"- Total time: p50 {_ms(report.latency('total', 50))}, "
        f"p95 {_ms(report.latency('total', 95))}",
        f"- Fallback rate: {_pct(report.fallback_rate)}",
        f"- Cost: ${report.cost:.4f}",
        "",
        "## Worst-rated answers",
        "",
    ]
    worst = report.worst()
    if not worst:
        lines.append("No answer was voted down in this period.")
    for r in worst:
        where = f"{r.channel or 'terminal'}" + (f" thread {r.thread}" if r.thread else "")
        reasons = "; ".join(r.reasons) or "no reason given"
        lines.append(
            f"- {r.down} down / {r.up} up — “{(r.question or '')[:120]}” ({where}, "
            f"exchange {r.id}): {reasons}"
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
        f"{_ms(v['p50_total_ms'])} |"
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
    lines += ["", "![Volume and satisfaction per day](chart.png)", ""]
    return "\n".join(lines)


def to_html(md: str) -> str:
    """A plain HTML page of the Markdown (headings, lists, tables), escaped."""
    out = ["<!doctype html><meta charset=utf-8><title>Concierge report</title><body>"]
    in_list = False
    for line in md.split("\n"):
        if line.startswith("- ") and not in_list:
            out.append("<ul>")
            in_list = True
        if not line.startswith("- ") and in_list:
            out.append("</ul>")
            in_list = False
        if line.startswith("# "):
            out.append(f"<h1>{html.escape(line[2:])}</h1>")
        elif line.startswith("## "):
            out.append(f"<h2>{html.escape(line[3:])}</h2>")
        elif line.startswith("- "):
            out.append(f"<li>{html.escape(line[2:])}</li>")
        elif line.startswith("| ---"):
            continue
        elif line.startswith("|"):
            cells = [html.escape(c.strip()) for c in line.strip("|").split("|")]
            out.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
        elif line.startswith("!["):
            out.append('<img src="chart.png" alt="Volume and satisfaction per day">')
        elif line:
            out.append(f"<p>{html.escape(line)}</p>")
    return "\n".join(out) + "</body>"


def csv_text(report: Report) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(CSV_COLUMNS)
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
                " | ".join(r.reasons),
                f"{r.cost:.8f}",
                "" if r.ttft_ms is None else f"{r.ttft_ms:.1f}",
                f"{r.total_ms:.1f}",
                r.question or "",
            ]
        )
    return buf.getvalue()


def chart_png(report: Report, *, width_px: int = 1000, height_px: int = 500) -> bytes:
    """Questions per day (bars) and satisfaction per day (line), as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    days = report.daily()
    labels = [d["day"].strftime("%m-%d") for d in days]
    fig, ax = plt.subplots(figsize=(width_px / 100, height_px / 100), dpi=100)
    ax.bar(labels, [d["questions"] for d in days], color="#8ab4f8", label="questions")
    ax.set_ylabel("questions")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax2 = ax.twinx()
    sat = [d["satisfaction"] * 100 if d["satisfaction"] is not None else None for d in days]
    ax2.plot(
        labels,
        [s if s is not None else float("nan") for s in sat],
        color="#188038",
        marker="o",
        label="satisfaction %",
    )
    ax2.set_ylim(0, 100)
    ax2.set_ylabel("satisfaction %")
    ax.set_title("Concierge: questions and satisfaction per day")
    ax.tick_params(axis="x", labelrotation=45)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def write(report: Report, out: Path, *, fmt: str = "md") -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    md = markdown(report)
    page = out / ("report.html" if fmt == "html" else "report.md")
    page.write_text(to_html(md) if fmt == "html" else md, encoding="utf-8")
    data = out / "report.csv"
    data.write_text(csv_text(report), encoding="utf-8", newline="")
    chart = out / "chart.png"
    chart.write_bytes(chart_png(report))
    return [page, data, chart]
