"""Audit append benchmark: time to append one chained audit row in its own transaction, as
a refusal does (``repo.audit``: a thread hop, the chain lock, the last row, the insert), alone
and with a second writer appending at the same time; then the time ``audit verify`` takes to
walk the log. SQLite and PostgreSQL.

    .venv/bin/python -m bench.audit [--n 1000] [--postgres postgresql://postgres@127.0.0.1:5432/test]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import threading
import time
import uuid
from pathlib import Path

import psycopg

from bot.store import chain, repo
from bot.store.db import Store


def append(store: Store, i: int) -> None:
    with store.session() as s:
        repo.audit(
            s,
            actor="ada@bench.test",
            action="refused",
            target=f"user:person{i % 50}@bench.test",
            subject="grant",
            reason="not an admin",
            details={"request_id": i},
        )


async def measure(store: Store, n: int) -> list[float]:
    for i in range(50):  # warm up connections and statement caches
        await asyncio.to_thread(append, store, i)
    times = []
    for i in range(n):
        t = time.perf_counter()
        await asyncio.to_thread(append, store, i)
        times.append((time.perf_counter() - t) * 1000)
    return sorted(times)


async def measure_contended(store: Store, n: int) -> list[float]:
    """The same, while another instance (its own engine) appends in a loop."""
    other = Store.open(str(store.engine.url.render_as_string(hide_password=False)))
    stop = threading.Event()

    def rival() -> None:
        i = 0
        while not stop.is_set():
            append(other, i)
            i += 1

    thread = threading.Thread(target=rival)
    thread.start()
    try:
        return await measure(store, n)
    finally:
        stop.set()
        thread.join()
        other.close()


def walk_ms(store: Store) -> tuple[int, float]:
    t = time.perf_counter()
    with store.session() as s:
        result = chain.verify(repo.audit_rows(s))
    assert result.intact, result.breaks[:3]
    return result.rows, (time.perf_counter() - t) * 1000


def report(label: str, times: list[float]) -> None:
    p95 = times[int(0.95 * len(times))]
    p99 = times[int(0.99 * len(times))]
    print(
        f"{label:<24} n={len(times)}  p50 {statistics.median(times):.2f} ms  "
        f"p95 {p95:.2f} ms  p99 {p99:.2f} ms"
    )


async def run(label: str, url: str, n: int) -> None:
    store = Store.open(url)
    try:
        report(f"{label} append", await measure(store, n))
        report(f"{label} append, 2 writers", await measure_contended(store, n))
        rows, ms = walk_ms(store)
        print(f"{label + ' verify':<24} {rows} rows in {ms:.0f} ms ({rows / ms:.0f} rows/ms)")
    finally:
        store.close()


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        await run("sqlite (WAL)", f"sqlite:///{Path(tmp) / 'bench.db'}", args.n)
    name = f"concierge_bench_{uuid.uuid4().hex[:8]}"
    base = args.postgres.rsplit("/", 1)[0]
    with psycopg.connect(args.postgres, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        await run("postgresql", f"{base}/{name}", args.n)
    finally:
        with psycopg.connect(args.postgres, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    asyncio.run(main())
