"""``exchange show ID [--json]``: the whole record of one exchange, as an owner needs it —
who asked and where, the sources used, withheld and why, the prompt version and the text each
model attempt received, every attempt's timings, tokens and cost, the votes and the review."""

from __future__ import annotations

import argparse
import json
from typing import Any

from sqlalchemy import select

from bot.cli.output import out
from bot.core.labels import Labels
from bot.errors import UsageError
from bot.settings import Settings
from bot.store import repo
from bot.store.db import Store
from bot.store.models import Exchange, Feedback, Review


def exchange(settings: Settings, args: argparse.Namespace) -> int:
    store = Store.open(settings.effective_database_url)
    try:
        with store.session() as s:
            row = repo.get_exchange(s, args.exchange_id.strip())
            if row is None:
                raise UsageError(
                    f"there is no exchange {args.exchange_id!r} (ids are printed by "
                    "`ask --json` and listed in the report's CSV)"
                )
            votes = list(s.scalars(select(Feedback).where(Feedback.exchange_id == row.id)))
            reviews = list(s.scalars(select(Review).where(Review.exchange_id == row.id)))
            record = as_record(row, votes, reviews)
    finally:
        store.close()
    out(json.dumps(record, indent=2, default=str) if args.json else as_text(record))
    return 0


def as_record(row: Exchange, votes: list[Feedback], reviews: list[Review]) -> dict[str, Any]:
    labels = Labels.from_json(row.labels) if row.labels is not None else None
    return {
        "exchange_id": row.id,
        "at": repo.as_utc(row.created_at),
        "asker": row.asker,
        "asker_ref": row.asker_ref,
        "surface": row.surface,
        "channel": row.channel,
        "thread": row.thread,
        "audience": row.audience,
        "question": row.question,
        "answer": row.answer,
        "outcome": row.outcome,
        "error": row.error,
        "sources": row.sources or [],
        "sources_searched": row.sources_searched or [],
        "sources_withheld": row.sources_withheld or [],
        "withheld_because": (
            f"only the asker may read them, and the answer was shared with {row.audience}; "
            "they went to the asker's private answer"
            if row.sources_withheld
            else None
        ),
        "labels": labels.to_json() if labels is not None else None,
        "redactions": row.redactions or {},
        "prompt": {"name": row.prompt_name, "version": row.prompt_version},
        "model": row.model,
        "models_tried": row.models_tried or [],
        "attempts": row.attempts or [],
        "input_tokens": row.input_tokens,
        "output_tokens": row.output_tokens,
        "tokens_estimated": row.tokens_estimated,
        "cost_usd": round(row.cost_usd or 0.0, 8),
        "ttft_ms": row.ttft_ms,
        "total_ms": row.total_ms,
        "feedback": [
            {
                "voter": v.voter,
                "vote": "up" if v.vote > 0 else "down",
                "category": v.category,
                "reason": v.reason,
                "at": repo.as_utc(v.updated_at),
            }
            for v in votes
        ],
        "reviews": [
            {
                "id": r.id,
                "kind": r.kind,
                "status": r.status,
                "reviewers": r.reviewers or [],
                "decided_by": r.decided_by,
                "decided_at": repo.as_utc(r.decided_at),
                "reason": r.reason,
                "edited": r.status == "edited",
            }
            for r in reviews
        ],
    }


def _ms(value: Any) -> str:
    return "—" if value is None else f"{float(value):,.0f} ms"


def as_text(r: dict[str, Any]) -> str:
    where = r["channel"] or "terminal"
    lines = [
        f"Exchange {r['exchange_id']}",
        f"  asked     {r['at']:%Y-%m-%d %H:%M:%S} UTC by {r['asker']} via {r['surface']} "
        f"in {where} ({r['audience']})" + (f", thread {r['thread']}" if r["thread"] else ""),
        f"  outcome   {r['outcome']}" + (f" ({r['error']})" if r["error"] else ""),
        f"  timing    first words {_ms(r['ttft_ms'])}, whole answer {_ms(r['total_ms'])}",
        f"  cost      ${r['cost_usd']:.6f} for {r['input_tokens']:,} in / "
        f"{r['output_tokens']:,} out tokens" + (" (estimated)" if r["tokens_estimated"] else ""),
        f"  prompt    {r['prompt']['name']} {r['prompt']['version']}",
    ]
    if r["labels"] is not None:
        classes = ", ".join(r["labels"]["classes"]) or "none"
        lines.append(f"  carries   data classes: {classes}")
    if r["redactions"]:
        found = ", ".join(f"{k} {v}" for k, v in sorted(r["redactions"].items()))
        lines.append(f"  redacted  in the stored question: {found}")
    lines += ["", "Question", _indent(r["question"]), "", "Answer", _indent(r["answer"]), ""]
    lines.append("Sources")
    if r["sources"]:
        for s in r["sources"]:
            lines.append(
                f"  [{s.get('ref', '-')}] {s.get('source')}: {s.get('title')} "
                f"({s.get('location') or s.get('uri')})"
            )
    else:
        lines.append("  none cited")
    lines.append(f"  searched: {', '.join(r['sources_searched']) or 'none'}")
    if r["sources_withheld"]:
        lines.append(f"  withheld: {', '.join(r['sources_withheld'])} ({r['withheld_because']})")
    lines += ["", "Model attempts"]
    if not r["attempts"]:
        lines.append("  none (answered before any model was asked)")
    for n, a in enumerate(r["attempts"], 1):
        lines.append(
            f"  {n}. {a.get('model')}"
            + (" (query rewrite)" if a.get("purpose") == "rewrite" else "")
            + f": {a.get('outcome')}"
            + (f" ({a.get('error')})" if a.get("error") else "")
            + f"; started {_ms(a.get('started_ms'))}, first token {_ms(a.get('first_token_ms'))},"
            f" ended {_ms(a.get('ended_ms'))}; {a.get('input_tokens', 0):,} in / "
            f"{a.get('output_tokens', 0):,} out tokens"
            + (" (estimated)" if a.get("tokens_estimated") else "")
            + f", ${float(a.get('cost_usd') or 0):.6f}"
        )
        for note in a.get("notes") or []:
            lines.append(f"     note: {note}")
        prompt = a.get("prompt") or []
        if not prompt:
            lines.append("     prompt: not kept (skipped before sending, or purged by retention)")
        for m in prompt:
            lines.append(f"     --- {m.get('role')} ---")
            lines.append(_indent(str(m.get("content", "")), "     "))
    lines += ["", "Feedback"]
    lines += [
        f"  {v['vote']} from {v['voter']}"
        + (
            f": {v['category'] or ''} {v['reason'] or ''}".rstrip()
            if v["category"] or v["reason"]
            else ""
        )
        for v in r["feedback"]
    ] or ["  none"]
    lines += ["", "Review"]
    lines += [
        f"  #{rv['id']} {rv['kind']}: {rv['status']}"
        + (
            f" by {rv['decided_by']} at {rv['decided_at']:%Y-%m-%d %H:%M} UTC"
            if rv["decided_by"] and rv["decided_at"]
            else ""
        )
        + (f" — {rv['reason']}" if rv["reason"] else "")
        for rv in r["reviews"]
    ] or ["  none"]
    return "\n".join(lines)


def _indent(text: str | None, prefix: str = "  ") -> str:
    if text is None:
        return prefix + "(removed by retention)"
    return "\n".join(prefix + line for line in text.splitlines()) or prefix
