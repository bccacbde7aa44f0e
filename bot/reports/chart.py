"""The report's chart: questions, unanswered questions and votes per day, with a legend and
the counts on the bars. The same series as a PNG (matplotlib; Slack and the Markdown report)
and as inline SVG (the HTML report: no external file, no script). Pure functions of a Report."""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from datetime import date
from html import escape
from typing import Any

from bot.reports.metrics import Report, plural


@dataclass(frozen=True)
class Series:
    key: str
    label: str
    color: str


SERIES = (
    Series("questions", "Questions", "#1a73e8"),
    Series("unanswered", "Not answered", "#f29900"),
    Series("up", "Thumbs up", "#188038"),
    Series("down", "Thumbs down", "#d93025"),
)
TITLE = "Questions and votes per day"
COUNTS_UP_TO = 14  # days; beyond, the counts on the bars would overlap


def day_label(day: date) -> str:
    return day.strftime("%a %d %b")  # Wed 02 Dec


def label_step(days: int) -> int:
    """Every how many days a date is written under the axis (at most about 14 dates)."""
    return max(1, math.ceil(days / 14))


def legend_labels(report: Report) -> list[str]:
    """Each series with its total over the period: "Questions (12)"."""
    totals = _totals(report.daily())
    return [f"{s.label} ({totals[s.key]})" for s in SERIES]


def _totals(days: list[dict[str, Any]]) -> dict[str, int]:
    return {s.key: sum(int(d[s.key]) for d in days) for s in SERIES}


def png(report: Report, *, width_px: int = 1000, height_px: int = 500) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    days = report.daily()
    n, width = len(days), 0.8 / len(SERIES)
    fig, ax = plt.subplots(figsize=(width_px / 100, height_px / 100), dpi=100)
    for k, (s, label) in enumerate(zip(SERIES, legend_labels(report), strict=True)):
        xs = [i - 0.4 + width * (k + 0.5) for i in range(n)]
        values = [int(d[s.key]) for d in days]
        bars = ax.bar(xs, values, width=width, color=s.color, label=label)
        if n <= COUNTS_UP_TO:  # counts on the bars while they stay readable
            ax.bar_label(bars, labels=[str(v) if v else "" for v in values], fontsize=8)
    step = label_step(n)
    ax.set_xticks(list(range(0, n, step)))
    ax.set_xticklabels([day_label(days[i]["day"]) for i in range(0, n, step)])
    ax.tick_params(axis="x", labelrotation=45 if n > 7 else 0)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("count")
    ax.set_ylim(0, max(1, *(int(d[s.key]) for d in days for s in SERIES)) * 1.15)
    ax.set_title(f"Concierge: {TITLE.lower()} ({report.period})")
    ax.legend(loc="upper left", ncols=len(SERIES), frameon=False, fontsize=9)
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def _ticks(top: int) -> list[int]:
    step = max(1, math.ceil(top / 5))
    return list(range(0, top + step, step))


def svg(report: Report, *, width: int = 680, height: int = 300) -> str:
    """An inline SVG of the chart, with a title, a legend, counts and one date per day."""
    days = report.daily()
    n = len(days)
    left, right, top, bottom = 36, 8, 56, 44
    plot_w, plot_h = width - left - right, height - top - bottom
    highest = max(1, *(int(d[s.key]) for d in days for s in SERIES))
    ticks = _ticks(highest)
    scale = plot_h / ticks[-1]
    slot = plot_w / n
    bar = slot * 0.8 / len(SERIES)
    font = 'font-family="Helvetica,Arial,sans-serif"'
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" {font} '
        'style="max-width:100%;height:auto;" '
        f'aria-labelledby="chart-title" data-chart="daily">',
        f'<title id="chart-title">{escape(TITLE)}, {escape(report.period)}</title>',
        f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
    ]
    # The legend, inside the chart so that it travels with it.
    x = left
    for s, label in zip(SERIES, legend_labels(report), strict=True):
        parts.append(
            f'<g data-legend="{s.key}"><rect x="{x}" y="14" width="14" height="14" rx="2" '
            f'fill="{s.color}"/><text x="{x + 20}" y="26" font-size="13" fill="#202124">'
            f"{escape(label)}</text></g>"
        )
        x += 20 + 8 * len(label) + 24
    for t in ticks:
        y = top + plot_h - t * scale
        parts.append(
            f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" '
            f'stroke="#e0e0e0"/><text x="{left - 6}" y="{y + 4:.1f}" font-size="11" '
            f'text-anchor="end" fill="#5f6368">{t}</text>'
        )
    step = label_step(n)
    for i, d in enumerate(days):
        x0 = left + i * slot + slot * 0.1
        for k, s in enumerate(SERIES):
            v = int(d[s.key])
            h = v * scale
            bx = x0 + k * bar
            parts.append(
                f'<rect data-series="{s.key}" x="{bx:.1f}" y="{top + plot_h - h:.1f}" '
                f'width="{max(bar - 1, 1):.1f}" height="{h:.1f}" fill="{s.color}">'
                f"<title>{escape(s.label)}, {escape(day_label(d['day']))}: {v}</title></rect>"
            )
            if v and n <= COUNTS_UP_TO:
                parts.append(
                    f'<text x="{bx + bar / 2:.1f}" y="{top + plot_h - h - 3:.1f}" '
                    f'font-size="10" text-anchor="middle" fill="#202124">{v}</text>'
                )
        if i % step == 0:
            parts.append(
                f'<text data-day="{d["day"]:%Y-%m-%d}" x="{left + (i + 0.5) * slot:.1f}" '
                f'y="{top + plot_h + 18}" font-size="11" text-anchor="middle" '
                f'fill="#3c4043">{escape(day_label(d["day"]))}</text>'
            )
    parts.append(
        f'<text x="{left}" y="{height - 6}" font-size="11" fill="#5f6368">'
        f"{escape(plural(n, 'day'))}, UTC</text></svg>"
    )
    return "".join(parts)
