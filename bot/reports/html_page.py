"""The owners' report as one self-contained HTML page that reads well in a browser and in an
e-mail: inline styles only (mail clients drop stylesheets), no external resource, no script,
the chart as inline SVG with its legend plus the same numbers as a table (mail clients that
drop SVG still show the table), plain div and table elements (old mail clients ignore the
styles of newer elements). Every piece of text is escaped. A pure function of a Report."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from html import escape

from bot.reports import chart
from bot.reports.gaps import LISTED, Gap
from bot.reports.metrics import Report, plural
from bot.reports.wording import (
    NO_DOCUMENT,
    audience_line,
    gap_counts,
    gap_summary,
    hidden_note,
    more_topics_note,
    ms,
    pct,
    question_text,
)

FONT = "font-family:-apple-system,'Segoe UI',Helvetica,Arial,sans-serif"
INK, MUTED, LINE, PAPER = "#202124", "#5f6368", "#dadce0", "#f8f9fa"
GAP_MARK = "#b06000"  # the content-gap list's topics (not a chart colour)
S = {
    "body": f"margin:0;padding:0;background:{PAPER};{FONT};color:{INK};",
    "main": "max-width:760px;margin:0 auto;padding:24px 16px;",
    "card": f"background:#ffffff;border:1px solid {LINE};border-radius:8px;padding:16px 20px;"
    "margin:0 0 16px 0;",
    "h1": "font-size:24px;line-height:30px;margin:0 0 4px 0;",
    "h2": "font-size:18px;line-height:24px;margin:0 0 12px 0;",
    "h3": "font-size:15px;line-height:21px;margin:0 0 6px 0;",
    "muted": f"color:{MUTED};font-size:13px;line-height:19px;margin:0;",
    "p": "font-size:14px;line-height:21px;margin:0 0 8px 0;",
    "table": "border-collapse:collapse;width:100%;font-size:13px;",
    "th": f"text-align:left;border-bottom:2px solid {LINE};padding:6px 8px;color:{MUTED};",
    "th_num": f"text-align:right;border-bottom:2px solid {LINE};padding:6px 8px;color:{MUTED};",
    "td": f"border-bottom:1px solid {LINE};padding:6px 8px;vertical-align:top;",
    "num": f"border-bottom:1px solid {LINE};padding:6px 8px;text-align:right;",
    "kpi": f"border:1px solid {LINE};border-radius:6px;padding:10px 12px;width:25%;",
    "kpi_value": "font-size:22px;line-height:28px;font-weight:bold;",
    "gap": f"border-left:4px solid {GAP_MARK};padding:4px 0 4px 12px;margin:0 0 16px 0;",
    "quote": "font-size:14px;line-height:21px;margin:0 0 4px 0;",
    "badge": "display:inline-block;background:#fef7e0;color:#b06000;border-radius:10px;"
    "padding:0 8px;font-size:12px;font-weight:bold;",
    "code": "font-family:Menlo,Consolas,monospace;font-size:12px;color:#3c4043;",
}


def _e(text: object) -> str:
    return escape(str(text), quote=True)


def _tag(name: str, body: str, style: str, **attrs: str) -> str:
    extra = "".join(f' {k.replace("_", "-")}="{_e(v)}"' for k, v in attrs.items())
    return f'<{name} style="{S[style]}"{extra}>{body}</{name}>'


def _table(head: Sequence[str], rows: Iterable[Sequence[object]], numeric: set[int]) -> str:
    th = "".join(_tag("th", _e(h), "th_num" if i in numeric else "th") for i, h in enumerate(head))
    body = "".join(
        "<tr>"
        + "".join(_tag("td", _e(c), "num" if i in numeric else "td") for i, c in enumerate(row))
        + "</tr>"
        for row in rows
    )
    if not body:
        body = f'<tr><td style="{S["td"]}" colspan="{len(head)}">none</td></tr>'
    return _tag("table", f"<thead><tr>{th}</tr></thead><tbody>{body}</tbody>", "table")


def _kpis(report: Report) -> str:
    o = report.outcomes
    cells = [
        ("Questions", str(report.questions), f"from {plural(report.askers, 'person')}"),
        (
            "Not answered",
            str(len(report.unanswered)),
            f"{o.get('no_answer', 0)} no answer, "
            f"{len(report.unanswered) - o.get('no_answer', 0)} voted down",
        ),
        ("Satisfaction", pct(report.satisfaction), f"{report.up} up, {report.down} down"),
        ("Cost", f"${report.cost:.4f}", f"first token p50 {ms(report.latency('ttft', 50))}"),
    ]
    tds = "".join(
        _tag(
            "td",
            _tag("p", _e(name), "muted")
            + f'<div style="{S["kpi_value"]}">{_e(value)}</div>'
            + _tag("p", _e(note), "muted"),
            "kpi",
        )
        for name, value, note in cells
    )
    return (
        f'<table role="presentation" style="border-collapse:separate;border-spacing:8px;'
        f'width:100%;margin:0 -8px;"><tr>{tds}</tr></table>'
    )


def _chart(report: Report) -> str:
    per = chart.unit(report.days)
    table = _table(
        [per if per == "day" else "days", *(s.label for s in chart.SERIES)],
        ([b.label, *(b.values[s.key] for s in chart.SERIES)] for b in chart.buckets(report)),
        numeric={1, 2, 3, 4},
    )
    return _tag(
        "div",
        _tag("h2", _e(chart.title(report)), "h2")
        + f'<div style="overflow-x:auto;margin:0 0 12px 0;">{chart.svg(report)}</div>'
        + _tag("p", _e(f"The same numbers per {per}:"), "muted")
        + table,
        "card",
        id="chart",
    )


def _gap(gap: Gap) -> str:
    examples = "".join(
        _tag(
            "li",
            f"“{_e(question_text(r))}” "
            + _tag("span", _e(f"{r.at:%Y-%m-%d} · {r.where} · exchange {r.id}"), "muted"),
            "quote",
        )
        for r in gap.examples
    )
    nearest = "".join(
        _tag(
            "li",
            f"<strong>{_e(d.title)}</strong> " + _tag("span", _e(f"{d.source}: {d.uri}"), "code"),
            "quote",
        )
        for d in gap.nearest
    )
    return _tag(
        "div",
        _tag("h3", _e(gap.topic) + " " + _tag("span", _e(gap.count), "badge"), "h3")
        + _tag("p", _e(gap_counts(gap)), "muted")
        + f'<ul style="margin:6px 0;padding-left:20px;">{examples}</ul>'
        + _tag("p", "<strong>Nearest documents</strong> (where the answer could go)", "p")
        + (
            f'<ul style="margin:0;padding-left:20px;">{nearest}</ul>'
            if nearest
            else _tag("p", _e(NO_DOCUMENT[0].upper() + NO_DOCUMENT[1:] + "."), "muted")
        ),
        "gap",
        data_topic=gap.topic,
        data_count=str(gap.count),
    )


def _gaps(report: Report) -> str:
    body = _tag("p", _e(gap_summary(report)), "p")
    body += "".join(_gap(g) for g in report.gaps[:LISTED])
    for note in (more_topics_note(report), hidden_note(report)):
        if note:
            body += _tag("p", _e(note), "muted")
    return _tag(
        "div",
        _tag("h2", "Questions Concierge could not answer", "h2") + body,
        "card",
        id="content-gaps",
    )


def _worst(report: Report) -> str:
    worst = report.worst()
    rows = [
        [
            f"{r.down} down / {r.up} up",
            question_text(r, 120),
            ("; ".join(r.reasons) or "no reason given") if r.shown else "hidden",
            f"{r.where}, exchange {r.id}",
        ]
        for r in worst
    ]
    body = (
        _table(["votes", "question", "reasons", "where"], rows, numeric=set())
        if rows
        else _tag("p", "No answer was voted down in this period.", "p")
    )
    return _tag("div", _tag("h2", "Worst-rated answers", "h2") + body, "card", id="worst")


def _details(report: Report) -> str:
    sources = _table(
        ["source", "answers", "up", "down"],
        ([s, v["answers"], v["up"], v["down"]] for s, v in report.by_source().items()),
        numeric={1, 2, 3},
    )
    models = _table(
        ["model", "answers", "up", "down", "cost", "p50 total"],
        (
            [
                m,
                f"{v['answers']:.0f}",
                f"{v['up']:.0f}",
                f"{v['down']:.0f}",
                f"${v['cost']:.4f}",
                ms(v["p50_total_ms"]),
            ]
            for m, v in report.by_model().items()
        ),
        numeric={1, 2, 3, 4, 5},
    )
    refusals = ", ".join(f"{k} {v}" for k, v in report.refusals_by_reason().items()) or "none"
    withheld = ", ".join(f"{k} {v}" for k, v in report.withheld_by_source().items()) or "none"
    costs = _table(
        ["channel", "cost"],
        ([c, f"${v:.4f}"] for c, v in report.cost_by_channel().items()),
        numeric={1},
    )
    fallback = pct(report.fallback_rate)
    return _tag(
        "div",
        _tag("h2", "By source", "h2")
        + sources
        + _tag("h2", "By model", "h2").replace("margin:0 0", "margin:16px 0")
        + models
        + _tag(
            "p",
            _e(f"Fallback rate {fallback}; total time p50 ")
            + _e(f"{ms(report.latency('total', 50))}, p95 {ms(report.latency('total', 95))}."),
            "muted",
        )
        + _tag("h2", "Refusals and withheld sources", "h2").replace("margin:0 0", "margin:16px 0")
        + _tag("p", _e(f"Refusals by reason: {refusals}"), "p")
        + _tag("p", _e(f"Sources withheld from a shared audience: {withheld}"), "p")
        + _tag("h2", "Cost by channel", "h2").replace("margin:0 0", "margin:16px 0")
        + costs,
        "card",
        id="details",
    )


def page(report: Report) -> str:
    title = f"Concierge report: {report.period}"
    header = _tag(
        "div",
        _tag("h1", "Concierge report", "h1")
        + _tag("p", _e(report.period), "muted")
        + _tag("p", _e(audience_line(report)), "muted"),
        "card",
    )
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title></head>"
        f'<body style="{S["body"]}"><div style="{S["main"]}">'
        + header
        + _tag("div", _kpis(report), "card", id="summary")
        + _chart(report)
        + _gaps(report)
        + _worst(report)
        + _details(report)
        + _tag("p", "Files beside this page: report.csv (every exchange), chart.png.", "muted")
        + "</div></body></html>\n"
    )
