"""Faults of the store and of Redis (issue 14, part A): for each, what the person saw, whether
the record was spooled, how many rows it has once the database is back, and how long the
answer took. PostgreSQL is reached through a TCP proxy that refuses or hangs; Redis is
pointed at a closed port or a hung proxy. The bundled example workspace answers.

    .venv/bin/python -m bench.faults [--postgres postgresql://postgres@127.0.0.1:5432/test]
                                     [--redis redis://127.0.0.1:6379/0]
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import psycopg
from sqlalchemy.engine import make_url

from bot.core.sinks import CollectingSink
from bot.core.types import Question
from bot.runtime import build_runtime
from bot.settings import Settings
from bot.store.db import Store
from bot.store.replay import replay
from support.standins.tcp_proxy import TcpProxy

QUESTION = "How many days of paid time off can I carry over?"
ASKER = "eve@acme.test"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def one(
    name: str,
    db_url: str,
    proxy: TcpProxy,
    data_dir: Path,
    *,
    fault: Callable[[], None] = lambda: None,
    redis_url: str | None = None,
    text: str = QUESTION,
) -> tuple[str, str, float, int, int]:
    """(fault, outcome, answer ms, spooled, rows once the database is back)."""
    proxied = make_url(db_url).set(host="127.0.0.1", port=proxy.port)
    settings = Settings(
        database_url=proxied.render_as_string(hide_password=False),
        redis_url=redis_url,
        CONCIERGE_DATA_DIR=data_dir,
        CONCIERGE_DB_CONNECT_TIMEOUT_S=2,
        CONCIERGE_DB_TIMEOUT_S=2,
        CONCIERGE_INDEX_REFRESH_S=0,
    )
    proxy.set("pass")
    runtime = await build_runtime(settings)
    try:
        fault()
        started = time.perf_counter()
        result = await runtime.pipeline.ask(Question(text=text, asker_ref=ASKER), CollectingSink())
        took = (time.perf_counter() - started) * 1000
        spooled = runtime.spool.pending()
        proxy.set("pass")
        deadline = time.monotonic() + 30
        while runtime.spool.pending() and time.monotonic() < deadline:
            await asyncio.to_thread(replay, runtime.store, runtime.spool)
            await asyncio.sleep(0.2)
    finally:
        runtime.close()
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM exchanges WHERE id = %s", (result.exchange_id,)
        ).fetchone()
    return name, result.outcome, took, spooled, int(row[0]) if row else 0


async def main(admin_url: str, redis_url: str) -> None:
    name = f"concierge_faults_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    db_url = admin_url.rsplit("/", 1)[0] + "/" + name
    Store.open(db_url).close()
    url = make_url(db_url)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    redis_target = make_url(redis_url)
    hung_redis = TcpProxy(redis_target.host or "127.0.0.1", redis_target.port or 6379)
    hung_redis.set("hang")
    rows = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            data = Path(tmp)
            rows.append(await one("none", db_url, proxy, data))
            rows.append(
                await one(
                    "database refuses", db_url, proxy, data, fault=lambda: proxy.set("refuse")
                )
            )
            rows.append(
                await one("database hangs", db_url, proxy, data, fault=lambda: proxy.set("hang"))
            )
            rows.append(
                await one(
                    "Redis at a closed port",
                    db_url,
                    proxy,
                    data,
                    redis_url=f"redis://127.0.0.1:{closed_port()}/0",
                )
            )
            rows.append(
                await one(
                    "Redis hangs", db_url, proxy, data, redis_url=f"redis://{hung_redis.address}/0"
                )
            )
            rows.append(
                await one(
                    "NUL and a lone surrogate", db_url, proxy, data, text=QUESTION + "\x00 \ud800"
                )
            )
    finally:
        proxy.close()
        hung_redis.close()
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    print("| fault | the person saw | answer ms | spooled | rows after it returns |")
    print("| --- | --- | ---: | ---: | ---: |")
    for fault, outcome, took, spooled, recorded in rows:
        print(f"| {fault} | {outcome} | {took:.0f} | {spooled} | {recorded} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    asyncio.run(main(args.postgres, args.redis))
