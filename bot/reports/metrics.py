"""The owners' report for a period, computed from exchanges and feedback (pure functions of
the rows; the store is read by ``load``)."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.store.models import Exchange, Feedback


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * p // 100))  # ceil
    return ordered[int(rank) - 1]


@dataclass
class Row:
    """One exchange with its votes, as the report sees it."""

    id: str
    at: datetime
    asker: str
    channel: str | None
    thread: str | None
    question: str | None
    answer: str | None
    outcome: str
    model: str | None
    models_tried: list[str]
    sources: list[str]
    withheld: list[str]
    cost: float
    ttft_ms: float | None
    total_ms: float
    error: str | None
    up: int = 0
    down: int = 0
    reasons: list[str] = field(default_factory=list)


@dataclass
class Report:
    start: datetime
    end: datetime
    rows: list[Row]

    @property
    def questions(self) -> int:
        return len(self.rows)

    @property
    def askers(self) -> int:
        return len({r.asker for r in self.rows})

    @property
    def outcomes(self) -> Counter[str]:
        return Counter(r.outcome for r in self.rows)

    @property
    def up(self) -> int:
        return sum(r.up for r in self.rows)

    @property
    def down(self) -> int:
        return sum(r.down for r in self.rows)

    @property
    def satisfaction(self) -> float | None:
        votes = self.up + self.down
        return self.up / votes if votes else None

    @property
    def feedback_rate(self) -> float | None:
        return sum(1 for r in self.rows if r.up or r.down) / self.questions if self.rows else None

    def latency(self, which: str, p: float) -> float | None:
        values = [
            v
            for r in self.rows
            if (v := (r.ttft_ms if which == "ttft" else r.total_ms)) is not None
        ]
        return percentile(values, p)

    @property
    def fallback_rate(self) -> float | None:
        answered = [r for r in self.rows if r.model]
        if not answered:
            return None
        return sum(1 for r in answered if len(r.models_tried) > 1) / len(answered)

    @property
    def cost(self) -> float:
        return sum(r.cost for r in self.rows)

    def cost_by_channel(self) -> dict[str, float]:
        out: dict[str, float] = defaultdict(float)
        for r in self.rows:
            out[r.channel or "(terminal)"] += r.cost
        return dict(sorted(out.items(), key=lambda kv: -kv[1]))

    def by_source(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = defaultdict(lambda: {"answers": 0, "up": 0, "down": 0})
        for r in self.rows:
            for s in set(r.sources):
                out[s]["answers"] += 1
                out[s]["up"] += r.up
                out[s]["down"] += r.down
        return dict(sorted(out.items()))

    def by_model(self) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = {}
        for name in sorted({r.model for r in self.rows if r.model}):
            mine = [r for r in self.rows if r.model == name]
            out[name] = {
                "answers": len(mine),
                "up": sum(r.up for r in mine),
                "down": sum(r.down for r in mine),
                "cost": sum(r.cost for r in mine),
                "p50_total_ms": percentile([r.total_ms for r in mine], 50) or 0.0,
            }
        return out

    def withheld_by_source(self) -> Counter[str]:
        return Counter(s for r in self.rows for s in set(r.withheld))

    def refusals_by_reason(self) -> Counter[str]:
        return Counter(r.error or "refused" for r in self.rows if r.outcome == "refused")

    def worst(self, n: int = 5) -> list[Row]:
        rated = [r for r in self.rows if r.down]
        return sorted(rated, key=lambda r: (-(r.down - r.up), -r.down, r.at))[:n]

    def daily(self) -> list[dict[str, Any]]:
        days: dict[date, dict[str, Any]] = {}
        day = self.start.date()
        while day <= self.end.date():
            days[day] = {"day": day, "questions": 0, "up": 0, "down": 0}
            day += timedelta(days=1)
        for r in self.rows:
            d = days.setdefault(
                r.at.date(), {"day": r.at.date(), "questions": 0, "up": 0, "down": 0}
            )
            d["questions"] += 1
            d["up"] += r.up
            d["down"] += r.down
        for d in days.values():
            votes = d["up"] + d["down"]
            d["satisfaction"] = d["up"] / votes if votes else None
        return [days[k] for k in sorted(days)]


def load(session: Session, *, days: int, now: datetime | None = None) -> Report:
    end = now or datetime.now(UTC)
    start = end - timedelta(days=days)
    exchanges = session.scalars(
        select(Exchange).where(Exchange.created_at >= start).order_by(Exchange.created_at)
    ).all()
    # SQLite keeps datetimes without zones; compare in UTC in Python as well.
    exchanges = [e for e in exchanges if start <= _aware(e.created_at) <= end]
    ids = [e.id for e in exchanges]
    votes: dict[str, list[Feedback]] = defaultdict(list)
    for chunk in range(0, len(ids), 500):
        for f in session.scalars(
            select(Feedback).where(Feedback.exchange_id.in_(ids[chunk : chunk + 500]))
        ):
            votes[f.exchange_id].append(f)
    rows = []
    for e in exchanges:
        mine = votes.get(e.id, [])
        rows.append(
            Row(
                id=e.id,
                at=_aware(e.created_at),
                asker=e.asker,
                channel=e.channel,
                thread=e.thread,
                question=e.question,
                answer=e.answer,
                outcome=e.outcome,
                model=e.model,
                models_tried=list(e.models_tried or []),
                sources=[str(s.get("source")) for s in (e.sources or []) if isinstance(s, dict)],
                withheld=list(e.sources_withheld or []),
                cost=e.cost_usd or 0.0,
                ttft_ms=e.ttft_ms,
                total_ms=e.total_ms or 0.0,
                error=e.error,
                up=sum(1 for f in mine if f.vote > 0),
                down=sum(1 for f in mine if f.vote < 0),
                reasons=[
                    " — ".join(x for x in (f.category, f.reason) if x)
                    for f in mine
                    if f.vote < 0 and (f.category or f.reason)
                ],
            )
        )
    return Report(start, end, rows)
