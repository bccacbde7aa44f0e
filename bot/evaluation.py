"""Model and config changes as a measured step (``app.py eval``).

Each candidate config answers the same questions through the real pipeline, in a throwaway
store of its own (an evaluation never adds exchanges to the real records, never charges a
budget and is never rate-limited), and the results are summarised side by side against the
first candidate. Slack-free: a front end loads the questions and prints the report.
"""

from __future__ import annotations

import json
import statistics
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bot.config import load_config
from bot.core.sinks import CollectingSink
from bot.core.types import ExchangeResult, Question
from bot.errors import UsageError
from bot.runtime import build_runtime
from bot.settings import Settings
from bot.store import repo
from bot.store.db import Store
from bot.store.models import Exchange, Review

MAX_QUESTIONS = 5_000


@dataclass(frozen=True)
class EvalQuestion:
    question: str
    asker: str | None = None  # an email; None: the workspace's default person
    expect: str | None = None  # text the answer should contain (case-insensitive)


@dataclass
class CandidateRun:
    config: str
    results: list[ExchangeResult] = field(default_factory=list)

    def summary(self, questions: list[EvalQuestion], baseline: CandidateRun) -> dict[str, Any]:
        outcomes = [r.outcome for r in self.results]
        totals = sorted(r.total_ms for r in self.results)
        overlaps = [
            _jaccard(_cited(mine), _cited(theirs))
            for mine, theirs in zip(self.results, baseline.results, strict=True)
        ]
        expected = [
            (q.expect or "").lower() in r.answer.lower()
            for q, r in zip(questions, self.results, strict=True)
            if q.expect
        ]
        return {
            "config": self.config,
            "answered": outcomes.count("answered"),
            "no_answer": outcomes.count("no_answer"),
            "refused": outcomes.count("refused") + outcomes.count("pending_review"),
            "failed": outcomes.count("failed") + outcomes.count("incomplete"),
            "citation_overlap": round(statistics.fmean(overlaps), 4) if overlaps else None,
            "expect_hits": sum(expected),
            "expect_total": len(expected),
            "p50_ms": round(_percentile(totals, 0.50), 1) if totals else None,
            "p95_ms": round(_percentile(totals, 0.95), 1) if totals else None,
            "cost_usd": round(sum(r.cost_usd for r in self.results), 8),
        }


def _cited(result: ExchangeResult) -> set[tuple[str, str]]:
    return {(str(s.get("source")), str(s.get("uri"))) for s in result.sources}


def _jaccard(a: set[tuple[str, str]], b: set[tuple[str, str]]) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


def _percentile(sorted_values: list[float], q: float) -> float:
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


# -- questions -----------------------------------------------------------------------------


def load_questions(spec: str, settings: Settings) -> list[EvalQuestion]:
    """A YAML or JSONL file of ``{question, as, expect?}`` (a YAML file may wrap the list in
    ``questions:``), ``recent:N`` (the store's last N questions) or ``verified``."""
    if spec.startswith("recent:"):
        count = spec.split(":", 1)[1]
        if not count.isdigit() or int(count) < 1:
            raise UsageError(f"{spec!r}: recent:N needs a positive number, e.g. recent:50")
        return _from_store(settings, recent=int(count))
    if spec == "verified":
        return _from_store(settings, recent=None)
    return _from_file(Path(spec).expanduser())


def _from_file(path: Path) -> list[EvalQuestion]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"question file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"question file {path} cannot be read: {exc}") from None
    items: list[Any] = []
    if path.suffix.lower() == ".jsonl":
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                items.append(json.loads(line))
            except ValueError:
                raise UsageError(f"{path}, line {n}: not a JSON object") from None
    else:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError:
            raise UsageError(f"question file {path} is not valid YAML") from None
        if isinstance(data, dict):
            data = data.get("questions")
        if not isinstance(data, list):
            raise UsageError(f"{path}: expected a list of questions (or questions: [...])")
        items = data
    out = [_question(item, f"{path}, question {n}") for n, item in enumerate(items, 1)]
    if not out:
        raise UsageError(f"{path} holds no questions")
    if len(out) > MAX_QUESTIONS:
        raise UsageError(f"{path} holds {len(out):,} questions; the limit is {MAX_QUESTIONS:,}")
    return out


def _question(item: Any, where: str) -> EvalQuestion:
    if isinstance(item, str):
        item = {"question": item}
    if not isinstance(item, dict):
        raise UsageError(f"{where}: expected {{question, as, expect}}")
    question = item.get("question")
    if not isinstance(question, str) or not question.strip():
        raise UsageError(f"{where}: 'question' is missing or empty")
    asker = item.get("as")
    expect = item.get("expect")
    if asker is not None and not isinstance(asker, str):
        raise UsageError(f"{where}: 'as' must be an email")
    if expect is not None and not isinstance(expect, str | int | float):
        raise UsageError(f"{where}: 'expect' must be text")
    return EvalQuestion(question.strip(), asker, None if expect is None else str(expect))


def _from_store(settings: Settings, *, recent: int | None) -> list[EvalQuestion]:
    from sqlalchemy import select

    store = Store.open(settings.effective_database_url)
    try:
        with store.session() as s:
            if recent is not None:
                rows = s.scalars(
                    select(Exchange)
                    .where(Exchange.question.is_not(None), Exchange.surface != "eval")
                    .order_by(Exchange.created_at.desc())
                    .limit(recent)
                ).all()
                found = [EvalQuestion(r.question or "", r.asker) for r in reversed(rows)]
            else:
                found = []
                for v in repo.active_verified(s):
                    review = s.get(Review, v.review_id) if v.review_id else None
                    found.append(EvalQuestion(v.question, review.asker if review else None))
    finally:
        store.close()
    found = [q for q in found if q.question.strip()]
    if not found:
        what = "recorded questions" if recent is not None else "active verified answers"
        raise UsageError(f"the store holds no {what} to evaluate")
    return found


# -- running ---------------------------------------------------------------------------------


async def run_candidate(
    config_path: Path, questions: list[EvalQuestion], settings: Settings, workdir: Path, n: int
) -> CandidateRun:
    """Every question through the candidate's own pipeline, in a throwaway store."""
    config = load_config(config_path)
    # Measure answers, not limits: no rate limit and no budgets in an evaluation.
    config = config.model_copy(
        update={
            "limits": config.limits.model_copy(
                update={
                    "questions_per_minute": 1_000_000,
                    "person_daily_usd": None,
                    "workspace_monthly_usd": None,
                }
            )
        }
    )
    own = settings.model_copy(
        update={
            "concierge_config": config_path,
            "database_url": f"sqlite:///{workdir / f'candidate-{n}.db'}",
            "redis_url": None,
        }
    )
    runtime = await build_runtime(own, config=config)
    run = CandidateRun(str(config_path))
    try:
        for q in questions:
            asker = q.asker or runtime.directory.default_ref()
            result = await runtime.pipeline.ask(
                Question(q.question, asker, surface="eval"), CollectingSink()
            )
            run.results.append(result)
    finally:
        runtime.close()
    return run


async def evaluate(
    questions: list[EvalQuestion], candidates: list[Path], settings: Settings
) -> list[CandidateRun]:
    with tempfile.TemporaryDirectory(prefix="concierge-eval-") as tmp:
        return [
            await run_candidate(path, questions, settings, Path(tmp), n)
            for n, path in enumerate(candidates)
        ]
