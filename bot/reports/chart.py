"""The report's chart: questions, unanswered questions and votes per day (per week over a
longer period), with a legend and the counts on the bars. The same series as a PNG
(matplotlib; Slack and the Markdown report) and as inline SVG (the HTML report: no external
file, no script). Pure functions of a Report."""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from datetime import date
from html import escape

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
COUNTS_UP_TO = 14  # bars; beyond, the counts on them would overlap
DAILY_UP_TO = 31  # days charted one by one; a longer period is charted by week
WEEKLY_UP_TO = 366  # and beyond a year, by 30 days


@dataclass(frozen=True)
class Bucket:
    """One bar group: a day, or several days together."""

    first: date
    last: date
    values: dict[str, int]

    @property
    def label(self) -> str:
        if self.first == self.last:
            return day_label(self.first)
        return f"{day_label(self.first)} – {day_label(self.last)}"

    @property
    def short(self) -> str:
        """Under the axis: the first day only."""
        return day_label(self.first)


def day_label(day: date) -> str:
    return day.strftime("%a %d %b")  # Wed 02 Dec


def bucket_days(days: int) -> int:
    return 1 if days <= DAILY_UP_TO else 7 if days <= WEEKLY_UP_TO else 30


def unit(days: int) -> str:
    return {1: "day", 7: "week"}.get(bucket_days(days), "30 days")


def title(report: Report) -> str:
    return f"Questions and votes per {unit(report.days)}"


def buckets(report: Report) -> list[Bucket]:
    """The period's days (exactly ``report.days``), grouped into bars."""
    days = report.daily()
    size = bucket_days(len(days))
    out = []
    for i in range(0, len(days), size):
        part = days[i : i + size]
        values = {s.key: sum(int(d[s.key]) for d in part) for s in SERIES}
        out.append(Bucket(part[0]["day"], part[-1]["day"], values))
    return out


def label_step(n: int) -> int:
    """Every how many bars a date is written under the axis (at most about 14 dates)."""
    return max(1, math.ceil(n / 14))


def legend_labels(report: Report) -> list[str]:
    """Each series with its total over the period: "Questions (12)"."""
    totals = {s.key: sum(b.values[s.key] for b in buckets(report)) for s in SERIES}
    return [f"{s.label} ({totals[s.key]})" for s in SERIES]


def png(report: Report, *, width_px: int = 1000, height_px: int = 500) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    bars = buckets(report)
    n, width = len(bars), 0.8 / len(SERIES)
    fig, ax = plt.subplots(figsize=(width_px / 100, height_px / 100), dpi=100)
    for k, (s, label) in enumerate(zip(SERIES, legend_labels(report), strict=True)):
        xs = [i - 0.4 + width * (k + 0.5) for i in range(n)]
        values = [b.values[s.key] for b in bars]
        drawn = ax.bar(xs, values, width=width, color=s.color, label=label)
        if n <= COUNTS_UP_TO:  # counts on the bars while they stay readable
            ax.bar_label(drawn, labels=[str(v) if v else "" for v in values], fontsize=8)
    step = label_step(n)
    ax.set_xticks(list(range(0, n, step)))
    ax.set_xticklabels([bars[i].short for i in range(0, n, step)])
    ax.tick_params(axis="x", labelrotation=45 if n > 7 else 0)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("count")
    ax.set_ylim(0, max(1, *(b.values[s.key] for b in bars for s in SERIES)) * 1.15)
    ax.set_title(f"Concierge: {title(report).lower()} ({report.period})")
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
    """An inline SVG of the chart, with a title, a legend, counts and one date per bar
    (``data-day`` marks each bar group's first day)."""
    bars = buckets(report)
    n = len(bars)
    left, right, top, bottom = 36, 8, 56, 44
    plot_w, plot_h = width - left - right, height - top - bottom
    ticks = _ticks(max(1, *(b.values[s.key] for b in bars for s in SERIES)))
    scale = plot_h / ticks[-1]
    slot = plot_w / n
    bar = slot * 0.8 / len(SERIES)
    font = 'font-family="Helvetica,Arial,sans-serif"'
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" {font} '
        'style="max-width:100%;height:auto;" '
        f'aria-labelledby="chart-title" data-chart="{unit(report.days)}">',
        f'<title id="chart-title">{escape(title(report))}, {escape(report.period)}</title>',
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
    for i, b in enumerate(bars):
        x0 = left + i * slot + slot * 0.1
        for k, s in enumerate(SERIES):
            v = b.values[s.key]
            if not v:
                continue
            h = v * scale
            bx = x0 + k * bar
            parts.append(
                f'<rect data-series="{s.key}" x="{bx:.1f}" y="{top + plot_h - h:.1f}" '
                f'width="{max(bar - 1, 1):.1f}" height="{h:.1f}" fill="{s.color}">'
                f"<title>{escape(s.label)}, {escape(b.label)}: {v}</title></rect>"
            )
            if n <= COUNTS_UP_TO:
                parts.append(
                    f'<text x="{bx + bar / 2:.1f}" y="{top + plot_h - h - 3:.1f}" '
                    f'font-size="10" text-anchor="middle" fill="#202124">{v}</text>'
                )
        if i % step == 0:
            parts.append(
                f'<text data-day="{b.first:%Y-%m-%d}" x="{left + (i + 0.5) * slot:.1f}" '
                f'y="{top + plot_h + 18}" font-size="11" text-anchor="middle" '
                f'fill="#3c4043">{escape(b.short)}</text>'
            )
    parts.append(
        f'<text x="{left}" y="{height - 6}" font-size="11" fill="#5f6368">'
        f"{escape(plural(report.days, 'day'))}, UTC</text></svg>"
    )
    return "".join(parts)
