"""Exchange recording benchmark: time to write one Exchange row, as the pipeline does it
(``Runtime.record``: a thread hop plus one transaction), on SQLite and PostgreSQL.

    .venv/bin/python -m bench.recording [--n 1000] [--postgres postgresql://postgres@127.0.0.1:5432/test]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import psycopg

from bot.core.types import Attempt, ExchangeResult
from bot.store import repo
from bot.store.db import Store


def sample_result(i: int) -> ExchangeResult:
    return ExchangeResult(
        exchange_id=str(uuid.uuid4()),
        asker=f"person{i % 50}@bench.test",
        question="How many days of paid time off can I carry over into next year?",
        answer="You may carry over up to five days until 31 March. [1] " * 4,
        outcome="answered",
        sources=[{"ref": 1, "source": "handbook", "title": "Paid time off", "uri": "pto.md"}] * 3,
        sources_searched=["handbook", "runbooks"],
        model="offline",
        models_tried=["primary", "offline"],
        attempts=[Attempt(model="primary", outcome="timeout"), Attempt(model="offline")],
        input_tokens=900,
        output_tokens=120,
        cost_usd=0.0003,
        ttft_ms=420.0,
        total_ms=1800.0,
        prompt_name="answer",
        prompt_version="1",
        surface="slack",
        channel="C123",
        thread="1700000000.0001",
        request_key=f"bench-{uuid.uuid4().hex}",
    )


async def measure(store: Store, n: int) -> list[float]:
    async def record(result: ExchangeResult) -> None:
        def write() -> None:
            with store.session() as s:
                repo.record_exchange(s, result)

        await asyncio.to_thread(write)

    for i in range(50):  # warm up connections and statement caches
        await record(sample_result(i))
    times = []
    for i in range(n):
        result = sample_result(i)
        t = time.perf_counter()
        await record(result)
        times.append((time.perf_counter() - t) * 1000)
    return sorted(times)


def report(label: str, times: list[float]) -> None:
    p95 = times[int(0.95 * len(times))]
    p99 = times[int(0.99 * len(times))]
    print(
        f"{label:<12} n={len(times)}  p50 {statistics.median(times):.2f} ms  "
        f"p95 {p95:.2f} ms  p99 {p99:.2f} ms"
    )


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = Store.open(f"sqlite:///{Path(tmp) / 'bench.db'}")
        report("sqlite (WAL)", await measure(store, args.n))
        store.close()
    name = f"concierge_bench_{uuid.uuid4().hex[:8]}"
    base = args.postgres.rsplit("/", 1)[0]
    with psycopg.connect(args.postgres, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        store = Store.open(f"{base}/{name}")
        report("postgresql", await measure(store, args.n))
        store.close()
    finally:
        with psycopg.connect(args.postgres, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    asyncio.run(main())
