"""Slack benchmark: ack latency, latency Concierge adds before the first visible token,
Slack writes per answer, and many answers streaming at once in one process.

Runs the real app over HTTP on loopback against the local Slack Web API stand-in (the one
the tests use), with a model stand-in that streams 120 tokens with a fixed first-token time
and a fixed gap between tokens.

    .venv/bin/python -m bench.slack [--concurrent 200] [--acks 500]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGenerationChunk, ChatResult

from bot.config import ModelSpec
from bot.core.generate import ModelRouter
from bot.core.models import RegisteredModel
from bot.settings import Settings
from bot.slack.app import build_app
from bot.slack.server import prepare, start_http
from support.slack_wire import SECRET, dm
from support.standins import slack_api
from support.standins.slack_api import SlackStandIn
from tests.slack_helpers import SlackDriver

ROOT = Path(__file__).resolve().parent.parent


class PacedModel(BaseChatModel):
    """A model stand-in: first token after ``first_s``, then one token every ``gap_s``."""

    first_s: float = 0.3
    gap_s: float = 0.02
    tokens: int = 120

    @property
    def _llm_type(self) -> str:
        return "paced"

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any
    ) -> ChatResult:
        raise NotImplementedError

    async def _astream(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any
    ) -> AsyncIterator[ChatGenerationChunk]:
        await asyncio.sleep(self.first_s)
        for i in range(self.tokens):
            if i:
                await asyncio.sleep(self.gap_s)
            yield ChatGenerationChunk(message=AIMessageChunk(content=f"token{i} "))


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--concurrent", type=int, default=200)
    ap.add_argument("--acks", type=int, default=500)
    ap.add_argument("--first-token-s", type=float, default=0.3)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="concierge-slack-bench-"))
    api = SlackStandIn()
    for i in range(args.concurrent + 1):
        api.add_user(f"U{i:04d}", f"person{i}@acme.test")
    runner_api = await slack_api.start(api)
    os.environ.update(
        {
            "SLACK_BOT_TOKEN": "xoxb-bench",
            "SLACK_SIGNING_SECRET": SECRET,
            "SLACK_API_URL": api.url,
            "CONCIERGE_DATA_DIR": str(tmp),
            "DATABASE_URL": f"sqlite:///{tmp / 'bench.db'}",
            "LOG_LEVEL": "ERROR",
        }
    )
    os.environ.pop("SLACK_APP_TOKEN", None)
    runtime, deps = await prepare(Settings())
    model = PacedModel(first_s=args.first_token_s)
    runtime.pipeline.deps.router = ModelRouter(
        [
            RegisteredModel(
                ModelSpec(
                    name="paced",
                    provider="openai",
                    model="x",
                    data_classes=("public", "internal", "confidential"),
                ),
                model,
            )
        ]
    )
    runtime.pipeline.deps.limiter.per_minute = 1_000_000  # type: ignore[attr-defined]  # bench only
    runner, port = await start_http(build_app(deps), deps, "127.0.0.1", 0)
    async with aiohttp.ClientSession() as session:
        driver = SlackDriver(f"http://127.0.0.1:{port}", api, deps, session)

        # 1. Ack latency: events (answered after the ack), commands and clicks.
        acks: list[float] = []
        for i in range(args.acks):
            t = time.perf_counter()
            status, _, _ = await driver.event(
                dm("U0000", f"Where do I submit expenses? {i}", f"1.{i}")
            )
            acks.append((time.perf_counter() - t) * 1000)
            assert status == 200
            if i % 50 == 49:
                await driver.settle(120)
        await driver.settle(120)
        print(
            f"ack latency (events)      p50 {statistics.median(acks):.1f} ms  "
            f"p99 {pct(acks, 99):.1f} ms  max {max(acks):.1f} ms  n={len(acks)}"
        )

        # 2. Added latency before the first visible token, one answer at a time.
        added: list[float] = []
        for i in range(50):
            before = len(api.calls)
            t = time.perf_counter()
            await driver.event(dm("U0000", "How many days of time off can I carry over?", f"2.{i}"))
            # The first words: a native stream, or a post once Tier 2's new streams are spent.
            first = ("chat.startStream", "chat.postMessage")
            while not any(m in first for m, _ in api.calls[before:]):  # noqa: ASYNC110
                await asyncio.sleep(0.001)
            added.append((time.perf_counter() - t) * 1000 - args.first_token_s * 1000)
            await driver.settle(60)
        print(
            f"added before first token  p50 {statistics.median(added):.1f} ms  "
            f"p95 {pct(added, 95):.1f} ms  "
            f"(the model's own {args.first_token_s * 1000:.0f} ms first token excluded)"
        )

        # 3. Many answers streaming at once.
        api.calls.clear()
        api.messages.clear()
        t = time.perf_counter()
        results = await asyncio.gather(
            *(
                driver.event(dm(f"U{i:04d}", "Where do I submit expenses?", f"3.{i}"))
                for i in range(1, args.concurrent + 1)
            )
        )
        await driver.settle(600)
        took = time.perf_counter() - t
        writes = [m for m, _ in api.calls if m.startswith("chat.")]
        finished = sum(1 for m in api.messages.values() if m.stopped or m.blocks)
        errors = sum(1 for s, _, _ in results if s != 200)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(
            f"concurrent answers        {args.concurrent} streamed in {took:.1f} s, "
            f"{finished} finished, {errors} errors"
        )
        print(
            f"Slack writes per answer   {len(writes) / args.concurrent:.1f} "
            f"(each answer is {model.tokens} tokens)"
        )
        print(f"peak RSS                  {rss:.0f} MB")
    await runner.cleanup()
    await runner_api.cleanup()
    runtime.close()


if __name__ == "__main__":
    asyncio.run(main())
