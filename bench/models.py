"""Model routing benchmark: time to first visible token, total time and cost per answer for
a healthy primary, a slow primary (first token at 8 s) with a first-token deadline, the same
with hedging, and a primary failing half of its calls. Against the local OpenAI-compatible
stand-in (the tests' one), through the real ChatOpenAI client and the pipeline.

    .venv/bin/python -m bench.models [--n 10]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
from pathlib import Path
from typing import Any

from bot.core.sinks import CollectingSink
from bot.core.types import Question
from bot.runtime import build_runtime
from bot.settings import Settings
from support.standins import openai_api
from support.standins.openai_api import OpenAIStandIn

ROOT = Path(__file__).resolve().parent.parent


class Flaky(OpenAIStandIn):
    """Fails every other call with HTTP 500."""

    calls: int = 0

    async def completions(self, request: Any) -> Any:
        self.calls += 1
        self.status = 500 if self.calls % 2 else 200
        return await super().completions(request)


def config(tmp: Path, url: str, *, hedge: float | None, first_token_s: float) -> Path:
    example = (ROOT / "examples" / "acme" / "concierge.yaml").read_text()
    head = example.split("models:")[0].replace("path: ./", f"path: {ROOT / 'examples' / 'acme'}/")
    hedge_line = f"hedge_after_s: {hedge}" if hedge else "hedge_after_s: null"
    path = tmp / f"c-{hedge}-{first_token_s}.yaml"
    path.write_text(
        head + "models:\n"
        f"  - {{name: primary, provider: openai, model: m, base_url: '{url}', "
        "price: {input: 0.15, output: 0.60}}\n"
        "  - {name: offline, provider: offline}\n"
        f"routing: {{chain: [primary, offline], first_token_timeout_s: {first_token_s}, "
        f"{hedge_line}, total_timeout_s: 60, breaker_failures: 1000}}\n"
        "limits: {questions_per_minute: 100000}\n"
    )
    return path


async def scenario(name: str, api: OpenAIStandIn, cfg: Path, n: int) -> str:
    os.environ["CONCIERGE_CONFIG"] = str(cfg)
    runtime = await build_runtime(Settings())
    ttft, total, cost, models = [], [], [], []
    try:
        for _ in range(n):
            result = await runtime.pipeline.ask(
                Question("Where do I submit expenses?", "eve@acme.test"), CollectingSink()
            )
            ttft.append(result.ttft_ms or 0.0)
            total.append(result.total_ms)
            cost.append(result.cost_usd)
            models.append(result.model or "-")
    finally:
        runtime.close()
    q = lambda v, p: sorted(v)[min(len(v) - 1, int(p / 100 * len(v)))]  # noqa: E731
    share = 100 * models.count("primary") / len(models)
    return (
        f"| {name} | {statistics.median(ttft):,.0f} / {q(ttft, 95):,.0f} ms | "
        f"{statistics.median(total):,.0f} / {q(total, 95):,.0f} ms | "
        f"${statistics.mean(cost):.6f} | {share:.0f}% |"
    )


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10)
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
    runners = [await openai_api.start(a) for a in (healthy, slow, flaky)]
    print(
        "| scenario | first visible token p50 / p95 | total p50 / p95 | cost per answer "
        "| answered by primary |"
    )
    print("| --- | --- | --- | --- | --- |")
    scenarios = [
        ("healthy primary (first token 0.4 s)", healthy, None),
        ("slow primary (8 s), first-token deadline 4 s", slow, None),
        ("slow primary (8 s), hedging after 1.5 s", slow, 1.5),
        ("primary failing 50% (HTTP 500)", flaky, 1.5),
    ]
    try:
        for label, api, hedge in scenarios:
            settings = config(tmp, api.url, hedge=hedge, first_token_s=4)
            print(await scenario(label, api, settings, args.n))
    finally:
        for r in runners:
            await r.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
