"""The owners' report for a period, computed from exchanges and feedback (pure functions of
the rows; the store is read by ``load``).

The period is whole calendar days in UTC ending today: ``days=7`` is today and the six days
before it, so a 7-day chart has exactly seven dates. Question text, and reasons that may quote
the answer, are shown only where every reader of the report may read the exchange's labels
(``Row.shown``); otherwise the report counts them without their words."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.core.labels import Labels
from bot.store.models import Exchange, Feedback

if TYPE_CHECKING:
    from bot.reports.gaps import Gap

MayRead = Callable[[Labels], bool]
TERMINAL_SURFACES = {"cli": "terminal (ask)", "chat": "terminal chat", "eval": "evaluation"}


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
    surface: str = "slack"
    # Whether every reader of the report may read this exchange's text (its labels).
    shown: bool = False

    @property
    def where(self) -> str:
        """Where it was asked, for people. A terminal conversation's thread name is not an
        identity (each ``chat`` session numbers its threads from 1), so it is never shown."""
        if self.surface in TERMINAL_SURFACES:
            return TERMINAL_SURFACES[self.surface]
        if self.channel:
            return self.channel + (f" thread {self.thread}" if self.thread else "")
        return self.surface or "terminal"

    @property
    def unanswered(self) -> bool:
        """Concierge could not answer, or its answer was voted down more than up: a gap in
        the documents, to be shown to their owners."""
        return self.outcome == "no_answer" or self.down > self.up


def plural(n: int, word: str) -> str:
    """``1 day``, ``7 days``; ``1 person``, ``2 people``."""
    if n == 1:
        return f"{n} {word}"
    return f"{n} {IRREGULAR.get(word, word + 's')}"  # "more question" -> "more questions"


IRREGULAR = {"person": "people"}


def period_start(end: datetime, days: int) -> datetime:
    """Midnight UTC of the first of the ``days`` calendar days that end with ``end``'s day."""
    first = _aware(end).astimezone(UTC).date() - timedelta(days=days - 1)
    return datetime(first.year, first.month, first.day, tzinfo=UTC)


@dataclass
class Report:
    start: datetime
    end: datetime
    rows: list[Row]
    days: int = 7
    # Who the report is written for (emails), and its content-gap list (bot.reports.gaps).
    readers: tuple[str, ...] = ()
    gaps: list[Gap] = field(default_factory=list)

    @property
    def period(self) -> str:
        return f"{self.start:%Y-%m-%d} to {self.end:%Y-%m-%d} ({plural(self.days, 'day')}, UTC)"

    @property
    def unanswered(self) -> list[Row]:
        return [r for r in self.rows if r.unanswered]

    @property
    def unanswered_hidden(self) -> int:
        """Unanswered questions whose text some reader of the report may not read."""
        return sum(1 for r in self.unanswered if not r.shown)

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
        """One entry per calendar day of the period (exactly ``days`` of them): questions,
        unanswered ones, thumbs up and down."""
        days: dict[date, dict[str, Any]] = {}
        first = self.end.astimezone(UTC).date() - timedelta(days=self.days - 1)
        for i in range(self.days):
            day = first + timedelta(days=i)
            days[day] = {"day": day, "questions": 0, "unanswered": 0, "up": 0, "down": 0}
        for r in self.rows:
            d = days.get(r.at.astimezone(UTC).date())
            if d is None:
                continue
            d["questions"] += 1
            d["unanswered"] += int(r.unanswered)
            d["up"] += r.up
            d["down"] += r.down
        for d in days.values():
            votes = d["up"] + d["down"]
            d["satisfaction"] = d["up"] / votes if votes else None
        return [days[k] for k in sorted(days)]


def load(
    session: Session, *, days: int, now: datetime | None = None, may_read: MayRead | None = None
) -> Report:
    """The exchanges of the last ``days`` calendar days with their votes. ``may_read`` says
    whether the report's readers may read text with given labels; without it only text for
    everyone is shown (unknown labels never are)."""
    end = _aware(now or datetime.now(UTC))
    start = period_start(end, days)
    may = may_read or (lambda labels: labels.is_public)
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
                surface=e.surface,
                shown=may(Labels.from_json(e.labels)),
            )
        )
    return Report(start, end, rows, days=days)
