"""One scheduler instance in its own process, for the exactly-once test:
``python -m tests.jobs_instance DATABASE_URL SECONDS OUT_FILE NAME``. A 1-second ``tick`` job
appends NAME to OUT_FILE each time this instance runs it; the process stops by itself."""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime
from pathlib import Path

from apscheduler.triggers.interval import IntervalTrigger

from bot.jobs.scheduler import JobHost, Scheduler, job
from bot.store.db import Store


@job("tick")
async def tick(host: JobHost) -> str:
    out = Path(host.extra["out"])

    def append() -> None:
        with out.open("a") as f:
            f.write(host.extra["name"] + "\n")

    await asyncio.to_thread(append)
    return "ticked"


async def main(url: str, seconds: float, out: str, name: str) -> None:
    store = Store.open(url)
    trigger = IntervalTrigger(seconds=1, start_date=datetime(2026, 1, 1, tzinfo=UTC))
    scheduler = Scheduler(
        JobHost(store, extra={"out": out, "name": name}), {"tick": trigger}, instance=name
    )
    await scheduler.start()
    print("started", flush=True)
    await asyncio.sleep(seconds)
    await scheduler.stop()
    store.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4]))
