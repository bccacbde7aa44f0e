"""Answer-quality benchmark: the evaluation set in bench/quality/acme.yaml through the real
pipeline (offline model, zero config) on the example workspace, with and without dense
retrieval.

Prints, per retrieval mode: the share of answerable questions whose fact is in the answer,
by kind (documents' wording, people's own words, conversational noise, outdated vs current
versions, follow-ups, permission cases); recall@1 and recall@k of the answering document
among the passages handed to the model; abstention precision and recall (a question that
must get no answer, versus the answers that were "I couldn't find"); and leaks (a forbidden
string in any answer, which must stay 0).

    .venv/bin/python -m bench.quality [--set bench/quality/acme.yaml] [--modes off,local]
        [--modes off,local,openai --openai-model NAME --openai-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bot.config import Embeddings, WorkspaceConfig, load_config
from bot.core.access import AccessDecision
from bot.core.retrieve import Retrieval, Retriever
from bot.core.sinks import CollectingSink
from bot.core.types import Audience, Question, Turn
from bot.runtime import build_runtime
from bot.settings import DEFAULT_CONFIG, Settings

SET = Path(__file__).resolve().parent / "quality" / "acme.yaml"
DEFAULT_ASKER = "eve@acme.test"


class RecordingRetriever(Retriever):
    """The real retriever, keeping what it handed the last question's prompt."""

    last: Retrieval | None = None

    async def retrieve(
        self, *, query: str, access: AccessDecision, audience: Audience, k: int
    ) -> Retrieval:
        self.last = await super().retrieve(query=query, access=access, audience=audience, k=k)
        return self.last


@dataclass
class Scores:
    mode: str
    asked: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    found: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    recall1: int = 0
    recallk: int = 0
    with_doc: int = 0
    should_abstain: int = 0
    abstained: int = 0
    abstained_right: int = 0
    leaks: int = 0
    misses: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def rate(self, kind: str) -> float:
        return self.found[kind] / self.asked[kind] if self.asked[kind] else 0.0

    @property
    def overall(self) -> float:
        asked = sum(self.asked.values())
        return sum(self.found.values()) / asked if asked else 0.0

    @property
    def abstention_precision(self) -> float:
        return self.abstained_right / self.abstained if self.abstained else 1.0

    @property
    def abstention_recall(self) -> float:
        return self.abstained_right / self.should_abstain if self.should_abstain else 1.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "by_kind": {k: round(self.rate(k), 3) for k in sorted(self.asked)},
            "overall": round(self.overall, 3),
            "recall@1": round(self.recall1 / self.with_doc, 3) if self.with_doc else None,
            "recall@k": round(self.recallk / self.with_doc, 3) if self.with_doc else None,
            "abstention_precision": round(self.abstention_precision, 3),
            "abstention_recall": round(self.abstention_recall, 3),
            "leaks": self.leaks,
        }


def load_set(path: Path = SET) -> list[dict[str, Any]]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    return list(data["questions"] if isinstance(data, dict) else data)


def with_embeddings(
    config: WorkspaceConfig, provider: str, model: str | None = None, url: str | None = None
) -> WorkspaceConfig:
    spec = Embeddings(provider=provider, model=model, base_url=url)  # type: ignore[arg-type]
    return config.model_copy(update={"embeddings": spec})


async def evaluate(
    questions: list[dict[str, Any]],
    *,
    mode: str = "local",
    config: WorkspaceConfig | None = None,
    workdir: Path | None = None,
    openai_model: str | None = None,
    openai_url: str | None = None,
) -> Scores:
    """Ask every question through the pipeline with embeddings ``mode`` (off | local |
    openai, the last with a model and an endpoint; its key from OPENAI_API_KEY)."""
    base = config or load_config(DEFAULT_CONFIG)
    config = with_embeddings(base, mode, openai_model, openai_url)
    own = workdir is None
    folder = Path(tempfile.mkdtemp(prefix="concierge-quality-")) if own else workdir
    assert folder is not None
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        CONCIERGE_DATA_DIR=folder / mode,
        database_url=f"sqlite:///{folder / mode}.db",
        CONCIERGE_INDEX_REFRESH_S=3600,
        redis_url=None,
    )
    (folder / mode).mkdir(parents=True, exist_ok=True)
    rt = await build_runtime(settings, config=config)
    recorder = RecordingRetriever.__new__(RecordingRetriever)
    recorder.__dict__.update(vars(rt.pipeline.deps.retriever))
    rt.pipeline.deps.retriever = recorder
    rt.pipeline.deps.limiter = _Unlimited()  # type: ignore[assignment]
    scores = Scores(mode)
    started = time.perf_counter()
    try:
        for item in questions:
            await _one(rt, recorder, item, scores)
    finally:
        rt.close()
    scores.seconds = time.perf_counter() - started
    return scores


class _Unlimited:
    async def check(self, who: str) -> Any:
        from bot.core.limits import LimitDecision

        return LimitDecision(True, 0.0)


async def _one(rt: Any, recorder: RecordingRetriever, item: dict[str, Any], s: Scores) -> None:
    who = item.get("as", DEFAULT_ASKER)
    turns: tuple[Turn, ...] = ()
    for earlier in item.get("history", []):
        prev = await rt.pipeline.ask(Question(earlier, who, history=turns), CollectingSink())
        turns = (*turns, Turn(earlier, prev.answer, prev.labels))
    result = await rt.pipeline.ask(Question(item["q"], who, history=turns), CollectingSink())
    text = (result.draft or result.answer) if result.outcome == "pending_review" else result.answer
    expect = [str(e) for e in item.get("expect") or []]
    forbid = [str(f) for f in item.get("forbid") or []]
    kind = str(item["kind"])
    abstained = result.outcome == "no_answer"
    s.abstained += abstained
    if any(f.lower() in text.lower() for f in forbid) and not expect:
        s.leaks += 1
    if not expect:
        s.should_abstain += 1
        s.abstained_right += abstained
        if not abstained:
            s.misses.append(f"[{kind}] answered: {item['q']} -> {text[:100]}")
        return
    s.asked[kind] += 1
    ok = (
        result.outcome in ("answered", "pending_review")
        and any(e.lower() in text.lower() for e in expect)
        and not any(f.lower() in text.lower() for f in forbid)
    )
    s.found[kind] += ok
    if not ok:
        s.misses.append(f"[{kind}] {result.outcome}: {item['q']} -> {text[:100]}")
    doc = item.get("doc")
    if doc and recorder.last is not None:
        titles = [p.title for p in recorder.last.passages]
        s.with_doc += 1
        s.recall1 += titles[:1] == [doc]
        s.recallk += doc in titles


def report(scores: list[Scores]) -> str:
    kinds = sorted({k for s in scores for k in s.asked})
    head = f"{'':28}" + "".join(f"{s.mode:>12}" for s in scores)
    lines = [head]
    for kind in kinds:
        row = "".join(f"{s.found[kind]:>5}/{s.asked[kind]:<3} {s.rate(kind):4.0%}" for s in scores)
        lines.append(f"fact found: {kind:<16}" + row)
    lines.append(f"{'fact found: all':28}" + "".join(f"{s.overall:>12.0%}" for s in scores))
    for name, attr in (("recall@1", "recall1"), ("recall@k (k=6)", "recallk")):
        lines.append(
            f"{name:28}"
            + "".join(f"{getattr(s, attr) / max(1, s.with_doc):>12.0%}" for s in scores)
        )
    lines.append(
        f"{'abstention precision':28}" + "".join(f"{s.abstention_precision:>12.0%}" for s in scores)
    )
    lines.append(
        f"{'abstention recall':28}" + "".join(f"{s.abstention_recall:>12.0%}" for s in scores)
    )
    lines.append(f"{'leaks':28}" + "".join(f"{s.leaks:>12}" for s in scores))
    lines.append(f"{'seconds':28}" + "".join(f"{s.seconds:>12.1f}" for s in scores))
    return "\n".join(lines)


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--set", type=Path, default=SET)
    ap.add_argument("--modes", default="off,local")
    ap.add_argument("--misses", action="store_true", help="print the questions that failed")
    ap.add_argument("--openai-model", help="embedding model for --modes …,openai")
    ap.add_argument("--openai-url", help="its OpenAI-compatible base URL (…/v1)")
    args = ap.parse_args()
    questions = load_set(args.set)
    results = [
        await evaluate(
            questions, mode=m, openai_model=args.openai_model, openai_url=args.openai_url
        )
        for m in args.modes.split(",")
    ]
    print(f"{len(questions)} questions from {args.set}")
    print(report(results))
    if args.misses:
        for s in results:
            print(f"\n--- misses with embeddings {s.mode}")
            print("\n".join(s.misses))


if __name__ == "__main__":
    asyncio.run(main())
