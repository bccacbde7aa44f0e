"""``eval QUESTIONS --candidate CONFIG [--candidate CONFIG …] [--out DIR] [--json]``."""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import json
from pathlib import Path
from typing import Any

from bot.cli.output import out
from bot.errors import UsageError
from bot.evaluation import CandidateRun, EvalQuestion, evaluate, load_questions
from bot.settings import Settings

COLUMNS = (
    "answered",
    "no_answer",
    "refused",
    "failed",
    "citation_overlap",
    "expect_hits",
    "p50_ms",
    "p95_ms",
    "cost_usd",
)


def eval_command(settings: Settings, args: argparse.Namespace) -> int:
    candidates = [Path(c).expanduser() for c in args.candidate]
    for path in candidates:
        if not path.is_file():
            raise UsageError(f"candidate config {path} does not exist")
    questions = load_questions(args.questions, settings)
    runs = asyncio.run(evaluate(questions, candidates, settings))
    summaries = [run.summary(questions, runs[0]) for run in runs]
    outdir = Path(args.out).expanduser()
    try:
        outdir.mkdir(parents=True, exist_ok=True)
        (outdir / "eval.md").write_text(markdown(questions, runs, summaries), encoding="utf-8")
        (outdir / "eval.csv").write_text(per_question_csv(questions, runs), encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write the report to {outdir}: {exc.strerror or exc}") from None
    if args.json:
        out(json.dumps({"candidates": summaries}, indent=2))
    else:
        out(summary_table(summaries))
        out(f"\nReport: {outdir / 'eval.md'} and {outdir / 'eval.csv'}")
    return 0


def _cell(value: Any) -> str:
    return "n/a" if value is None else str(value)


def summary_table(summaries: list[dict[str, Any]]) -> str:
    head = "| candidate | " + " | ".join(COLUMNS) + " |"
    rule = "| --- " * (len(COLUMNS) + 1) + "|"
    rows = []
    for n, s in enumerate(summaries):
        label = s["config"] + (" (baseline)" if n == 0 else "")
        cells = [_cell(s[c]) for c in COLUMNS]
        if s["expect_total"]:
            cells[COLUMNS.index("expect_hits")] = f"{s['expect_hits']}/{s['expect_total']}"
        rows.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join([head, rule, *rows])


def markdown(
    questions: list[EvalQuestion], runs: list[CandidateRun], summaries: list[dict[str, Any]]
) -> str:
    lines = [
        "# Evaluation",
        "",
        f"{len(questions)} question(s), {len(runs)} candidate(s); each answered in a throwaway "
        "store. `citation_overlap` is the mean Jaccard overlap of cited passages with the "
        "baseline (the first candidate).",
        "",
        summary_table(summaries),
        "",
        "## Where the candidates differ",
        "",
    ]
    differing = 0
    for i, q in enumerate(questions):
        outcomes = [(r.results[i].outcome, r.results[i].model) for r in runs]
        if len(set(outcomes)) == 1:
            continue
        differing += 1
        lines.append(
            f"- “{q.question[:200]}” ({q.asker or 'default person'}): "
            + "; ".join(
                f"{Path(r.config).name}: {o} ({m or 'no model'})"
                for r, (o, m) in zip(runs, outcomes, strict=True)
            )
        )
    if not differing:
        lines.append("No question got a different outcome or model.")
    return "\n".join(lines) + "\n"


def per_question_csv(questions: list[EvalQuestion], runs: list[CandidateRun]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(
        [
            "question",
            "as",
            "expect",
            "candidate",
            "outcome",
            "model",
            "total_ms",
            "cost_usd",
            "sources",
            "answer",
        ]
    )
    for i, q in enumerate(questions):
        for r in runs:
            res = r.results[i]
            writer.writerow(
                [
                    _safe(q.question),
                    q.asker or "",
                    _safe(q.expect or ""),
                    r.config,
                    res.outcome,
                    res.model or "",
                    f"{res.total_ms:.1f}",
                    f"{res.cost_usd:.8f}",
                    " ".join(sorted({str(s.get("source")) for s in res.sources})),
                    _safe(res.answer[:2000]),
                ]
            )
    return buf.getvalue()


def _safe(text: str) -> str:
    """A cell a spreadsheet will not run as a formula."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
