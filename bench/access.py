"""Access benchmark: what the grants cache costs per question, and how long a revocation takes
to apply, on the bundled example workspace (SQLite or PostgreSQL).

- lookup: ``Runtime.grants()`` as the pipeline calls it, with N active grants in the store:
  a cache hit (one audit-version check) and a miss (version moved: grants re-read).
- revocation: from ``access revoke`` committing (from a *separate* store connection, as
  another process or instance would) to the first answer that no longer uses the source, in
  questions and in milliseconds.

    .venv/bin/python -m bench.access [--grants 500] [--n 500] [--database-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

from bot.config import load_config
from bot.core.admin import AccessAdmin
from bot.core.sinks import CollectingSink
from bot.core.types import Question
from bot.runtime import build_runtime
from bot.settings import Settings
from bot.store.db import Store
from bot.store.models import Grant

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "acme" / "concierge.yaml"
QUESTION = "Which cost center should the offsite be booked against?"


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def main(n: int, n_grants: int, url: str | None) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="concierge-bench-access-"))
    os.environ.update(
        CONCIERGE_CONFIG=str(EXAMPLE),
        CONCIERGE_DATA_DIR=str(tmp / "data"),
        DATABASE_URL=url or f"sqlite:///{tmp / 'bench.db'}",
    )
    settings = Settings()
    runtime = await build_runtime(settings)
    other = Store.open(settings.effective_database_url)  # "another process"
    config = load_config(EXAMPLE)
    with other.session() as s:
        for i in range(n_grants):
            s.add(Grant(principal=f"user:p{i}@bench.test", target="handbook", granted_by="bench"))
    hits, misses = [], []
    await runtime.grants()
    for _ in range(n):
        t = time.perf_counter()
        await runtime.grants()
        hits.append((time.perf_counter() - t) * 1000)
    admin = AccessAdmin(other, config)
    for i in range(min(n, 200)):
        admin.grant(
            actor="cli", who=f"q{i}@bench.test", what="handbook", duration=None, reason=None
        )
        t = time.perf_counter()
        await runtime.grants()
        misses.append((time.perf_counter() - t) * 1000)

    # Revocation: fin reads finance-notes through a grant; revoke it from the other store.
    asker = config.people[0].email
    admin.grant(actor="cli", who=asker, what="finance-notes", duration=None, reason=None)

    async def uses_finance() -> bool:
        sink = CollectingSink()
        result = await runtime.pipeline.ask(Question(QUESTION, asker), sink)
        return "finance-notes" in result.sources_searched

    assert await uses_finance(), "the grant should have applied"
    admin.revoke(actor="cli", who=asker, what="finance-notes", reason=None)
    revoked = time.perf_counter()
    questions = 0
    while True:
        questions += 1
        if not await uses_finance():
            break
        if questions > 100:
            raise SystemExit("revocation did not apply within 100 questions")
    delay_ms = (time.perf_counter() - revoked) * 1000
    runtime.close()
    other.close()
    db = "PostgreSQL" if (url or "").startswith("postgresql") else "SQLite"
    print(f"database: {db}; {n_grants + 200} active grants")
    print(
        f"grants lookup, cache hit (n={len(hits)}): p50 {statistics.median(hits):.2f} ms, "
        f"p95 {pct(hits, 95):.2f} ms"
    )
    print(
        f"grants lookup, after a change (n={len(misses)}): p50 {statistics.median(misses):.2f} ms,"
        f" p95 {pct(misses, 95):.2f} ms"
    )
    print(
        f"revocation from another connection: applied on question {questions} after the "
        f"revoke, {delay_ms:.0f} ms later (that question's whole answer included)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--grants", type=int, default=500)
    parser.add_argument("--database-url")
    args = parser.parse_args()
    asyncio.run(main(args.n, args.grants, args.database_url))
