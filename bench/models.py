"""Model routing benchmark: time to first visible token, total time and cost per answer for
a healthy primary, a slow primary (first token at 8 s) with a first-token deadline, a primary
failing half of its calls; then hedging and stalls: a slightly slow primary (1.8 s, past the
default hedge delay), a hung primary with and without a comparable second model (first
visible token against the budget "hedge delay + fallback's own first token + 100 ms"), and a
stream that stalls after 5 tokens (the longest time the answer showed no progress). Against
the local OpenAI-compatible stand-in (the tests' one), through the real ChatOpenAI client
and the pipeline.

    .venv/bin/python -m bench.models [--n 10] [--stall-n 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bot.core.sinks import CollectingSink
from bot.core.types import ExchangeResult, Question
from bot.runtime import Runtime, build_runtime
from bot.settings import Settings
from support.standins import openai_api
from support.standins.openai_api import OpenAIStandIn

ROOT = Path(__file__).resolve().parent.parent
QUESTION = "Where do I submit expenses?"


class Flaky(OpenAIStandIn):
    """Fails every other call with HTTP 500."""

    calls: int = 0

    async def completions(self, request: Any) -> Any:
        self.calls += 1
        self.status = 500 if self.calls % 2 else 200
        return await super().completions(request)


class TimedSink(CollectingSink):
    """Notes when each piece became visible."""

    def __init__(self) -> None:
        super().__init__()
        self.times: list[float] = []

    async def write(self, text: str) -> None:
        self.times.append(time.perf_counter())
        await super().write(text)

    def longest_gap_s(self) -> float:
        return max((b - a for a, b in zip(self.times, self.times[1:], strict=False)), default=0)


def config(tmp: Path, hosted: dict[str, str], routing: str) -> Path:
    """The example workspace with ``hosted`` models (name -> URL, in chain order) before the
    offline one."""
    example = (ROOT / "examples" / "acme" / "concierge.yaml").read_text()
    head = example.split("models:")[0].replace("path: ./", f"path: {ROOT / 'examples' / 'acme'}/")
    models = "".join(
        f"  - {{name: {name}, provider: openai, model: m, base_url: '{url}', "
        "price: {input: 0.15, output: 0.60}}\n"
        for name, url in hosted.items()
    )
    path = tmp / f"c-{len(list(tmp.glob('c-*.yaml')))}.yaml"
    path.write_text(
        head + "models:\n" + models + "  - {name: offline, provider: offline}\n"
        f"routing: {{chain: [{', '.join([*hosted, 'offline'])}], {routing}}}\n"
        "limits: {questions_per_minute: 100000}\n"
    )
    return path


def q(values: list[float], p: float) -> float:
    return sorted(values)[min(len(values) - 1, int(p / 100 * len(values)))]


async def answers(cfg: Path, n: int) -> tuple[Runtime, list[tuple[ExchangeResult, TimedSink]]]:
    os.environ["CONCIERGE_CONFIG"] = str(cfg)
    runtime = await build_runtime(Settings())
    done = []
    try:
        for _ in range(n):
            sink = TimedSink()
            done.append(
                (await runtime.pipeline.ask(Question(QUESTION, "eve@acme.test"), sink), sink)
            )
            settle = getattr(runtime.pipeline.deps.router, "settle", None)
            if settle is not None:  # lost races judged before the next question
                await settle()
    finally:
        runtime.close()
    return runtime, done


async def scenario(name: str, cfg: Path, n: int) -> str:
    _, done = await answers(cfg, n)
    ttft = [r.ttft_ms or 0.0 for r, _ in done]
    total = [r.total_ms for r, _ in done]
    share = 100 * sum(r.model == "primary" for r, _ in done) / len(done)
    return (
        f"| {name} | {statistics.median(ttft):,.0f} / {q(ttft, 95):,.0f} ms | "
        f"{statistics.median(total):,.0f} / {q(total, 95):,.0f} ms | "
        f"${statistics.mean(r.cost_usd for r, _ in done):.6f} | {share:.0f}% |"
    )


async def hung(name: str, cfg: Path, n: int, hedge_s: float, primary: OpenAIStandIn) -> str:
    """First visible token of each answer against its budget: the hedge delay plus the
    fallback's own first token (from its request to its first token) plus 100 ms."""
    _, done = await answers(cfg, n)
    ttft, budgets = [], []
    for result, _ in done:
        fallback = next(a for a in result.attempts if a.model == result.model)
        own = (fallback.first_token_ms or 0.0) - fallback.started_ms
        ttft.append(result.ttft_ms or 0.0)
        budgets.append(hedge_s * 1000 + own + 100)
    within = sum(t <= b for t, b in zip(ttft, budgets, strict=True))
    opened = sum(r.attempts[0].error == "circuit_open" for r, _ in done)
    by = sorted({r.model or "-" for r, _ in done})
    return (
        f"| {name} | {statistics.median(ttft):,.0f} / {q(ttft, 95):,.0f} ms | "
        f"{statistics.median(budgets):,.0f} ms | {within}/{len(done)} | "
        f"{', '.join(by)} | {len(primary.requests)} of {len(done)} | {opened} |"
    )


async def stall(name: str, cfg: Path, n: int) -> str:
    _, done = await answers(cfg, n)
    gaps = [s.longest_gap_s() * 1000 for _, s in done]
    total = [r.total_ms for r, _ in done]
    outcomes = sorted({f"{r.outcome} by {r.model}" for r, _ in done})
    tried = sorted({" → ".join(r.models_tried) for r, _ in done})
    return (
        f"| {name} | {statistics.median(gaps):,.0f} / {max(gaps):,.0f} ms | "
        f"{statistics.median(total):,.0f} ms | {'; '.join(outcomes)} | {'; '.join(tried)} |"
    )


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10)
    ap.add_argument("--stall-n", type=int, default=3)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="concierge-models-bench-"))
    os.environ.update(
        {
            "CONCIERGE_DATA_DIR": str(tmp),
            "DATABASE_URL": f"sqlite:///{tmp / 'b.db'}",
            "OPENAI_API_KEY": "sk-bench",
            "LOG_LEVEL": "ERROR",
        }
    )
    os.environ.pop("REDIS_URL", None)
    healthy = OpenAIStandIn(first_token_s=0.4, token_s=0.02)
    slow = OpenAIStandIn(first_token_s=8.0, token_s=0.02)
    flaky = Flaky(first_token_s=0.4, token_s=0.02)
    slightly = OpenAIStandIn(first_token_s=1.8, token_s=0.02)
    hangs = [OpenAIStandIn(hang=True) for _ in range(2)]
    second = OpenAIStandIn(first_token_s=0.4, token_s=0.02, reply="Use Pleo, within 30 days. [1]")
    stalls = [OpenAIStandIn(first_token_s=0.4, token_s=0.02, stall_after=5) for _ in range(2)]
    apis = [healthy, slow, flaky, slightly, *hangs, second, *stalls]
    runners = [await openai_api.start(a) for a in apis]
    fixed = "first_token_timeout_s: 4, total_timeout_s: 60, breaker_failures: 1000"
    try:
        print(
            "| scenario | first visible token p50 / p95 | total p50 / p95 | cost per answer "
            "| answered by primary |"
        )
        print("| --- | --- | --- | --- | --- |")
        rows = [
            ("healthy primary (first token 0.4 s)", healthy, "hedge_after_s: null"),
            ("slow primary (8 s), first-token deadline 4 s", slow, "hedge_after_s: null"),
            ("primary failing 50% (HTTP 500)", flaky, "hedge_after_s: 1.5"),
            ("slightly slow primary (1.8 s), hedge_after_s 1.5", slightly, "hedge_after_s: 1.5"),
        ]
        for label, api, hedge in rows:
            cfg = config(tmp, {"primary": api.url}, f"{fixed}, {hedge}")
            print(await scenario(label, cfg, args.n))
        print()
        print(
            "| hung primary | first visible token p50 / p95 | budget p50 | within budget "
            "| answered by | primary called | skipped by its breaker |"
        )
        print("| --- | --- | --- | --- | --- | --- | --- |")
        routing = "first_token_timeout_s: 4, hedge_after_s: 1.5, total_timeout_s: 60"
        cfg = config(tmp, {"primary": hangs[0].url, "secondary": second.url}, routing)
        print(await hung("[primary, secondary, offline]", cfg, args.n, 1.5, hangs[0]))
        cfg = config(tmp, {"primary": hangs[1].url}, routing)
        print(await hung("[primary, offline]", cfg, args.n, 1.5, hangs[1]))
        print()
        print(
            "| stall after 5 tokens | longest without progress p50 / max | total p50 | outcome "
            "| models tried |"
        )
        print("| --- | --- | --- | --- | --- |")
        routing += ", stall_timeout_s: 5, breaker_failures: 1000"
        cfg = config(tmp, {"primary": stalls[0].url, "secondary": second.url}, routing)
        print(await stall("[primary, secondary, offline]", cfg, args.stall_n))
        cfg = config(tmp, {"primary": stalls[1].url}, routing)
        print(await stall("[primary, offline]", cfg, args.stall_n))
    finally:
        for r in runners:
            await r.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
