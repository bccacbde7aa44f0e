"""Two instances under a burst: ``app.py serve`` twice (HTTP mode) on one PostgreSQL and one
Redis, the Slack Web API stand-in and an OpenAI-compatible stand-in each in a process of
their own (bench/standin_process.py).

Bursts of signed events (default 50, 200, then 1,000), all sent at once; each event goes to
one instance or, as a retrying Slack does, to both (the second copy with X-Slack-Retry-Num).
For each burst: acknowledgement times (every one must be within Slack's 3 s), whether every
event was answered once (one chat.startStream/postMessage per thread in the stand-in) and
recorded once (one ``exchanges`` row per request key), the peak of answers in flight, RSS
per instance (peak, and above idle per answer in flight), CPU per answer, and how long the
burst took to drain.

    python -m bench.instances [--bursts 50,200,1000] [--model paced|offline]

``paced``: the model stand-in's first token after 300 ms, then 40 tokens 20 ms apart (the
issue's harness). ``offline``: the extractive offline model, in-process. The Slack write
budget is raised (CONCIERGE_SLACK_*_PER_MIN=60000) so that pacing, measured by bench/slack.py,
does not decide how long a burst of 1,000 answers takes to land.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import yaml

from support import instances
from support.instances import Instances
from support.slack_wire import sign

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
USERS = 50
QUESTION = "Where do I submit expenses, and by when?"
PAGE = 4096


@dataclass
class Sample:
    in_flight: int = 0
    rss: dict[int, int] = field(default_factory=dict)  # pid -> bytes


def proc_status(pid: int, field_name: str) -> int:
    """A ``/proc/PID/status`` size in bytes (VmRSS, VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1]) * 1024
    return 0


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def start_standin(kind: str, *args: str) -> tuple[asyncio.subprocess.Process, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.standin_process",
        kind,
        *args,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 60)
    return proc, line.decode().strip()


def write_config(folder: Path, model_url: str | None) -> Path:
    """The bundled Acme workspace, its sources' paths made absolute, a model stand-in first
    in the chain when given, and a per-person rate that a burst does not reach."""
    example = ROOT / "examples" / "acme"
    config = yaml.safe_load((example / "concierge.yaml").read_text())
    for source in config["sources"]:
        if "path" in source:
            source["path"] = str((example / source["path"]).resolve())
    if model_url:
        config["models"] = [
            {
                "name": "primary",
                "provider": "openai",
                "model": "stand-in-1",
                "base_url": model_url,
                "price": {"input": 0.15, "output": 0.6},
            },
            {"name": "offline", "provider": "offline"},
        ]
        config["routing"] = {**config.get("routing", {}), "chain": ["primary", "offline"]}
    config["limits"] = {**config.get("limits", {}), "questions_per_minute": 100_000}
    path = folder / "concierge.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def create_database() -> tuple[str, str]:
    name = f"concierge_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    return name, f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"


def drop_database(name: str) -> None:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def recorded(url: str, prefix: str) -> dict[str, tuple[int, str, str]]:
    """request_key -> (rows, outcome, model that answered or why none did) for keys starting
    with ``prefix``."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT request_key, count(*), min(outcome), "
            "coalesce(min(model), '(' || coalesce(min(error), '?') || ')') "
            "FROM exchanges WHERE request_key LIKE %s GROUP BY request_key",
            (prefix + "%",),
        ).fetchall()
    return {str(k): (int(n), str(o), str(m)) for k, n, o, m in rows}


async def sampler(group: Instances, samples: list[Sample], stop: asyncio.Event) -> None:
    while not stop.is_set():
        sample = Sample()
        with contextlib.suppress(aiohttp.ClientError):
            sample.in_flight = await group.in_flight()
        for inst in group.members:
            sample.rss[inst.proc.pid] = proc_status(inst.proc.pid, "VmRSS")
        samples.append(sample)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.1)


PROBE_EVERY_S = 0.05


async def probe_acks(group: Instances, tag: str, stop: asyncio.Event) -> list[float]:
    """Acks while the burst is answered: every PROBE_EVERY_S a signed event that needs no
    answer (a bot's message, dropped after the ack), to each instance in turn; seconds each."""
    latencies: list[float] = []
    n = 0
    while not stop.is_set():
        event = {
            "type": "message",
            "subtype": "bot_message",
            "channel": "DPROBE",
            "channel_type": "im",
            "bot_id": "B1",
            "text": "probe",
            "ts": f"{tag}.9{n:05d}",
        }
        body = instances.event_body(f"Ev{tag}p{n}", event)
        headers = {"Content-Type": "application/json", **sign(body)}
        started = time.perf_counter()
        url = group.members[n % len(group.members)].url + "/slack/events"
        async with group.session.post(url, data=body.encode(), headers=headers) as r:
            await r.read()
        latencies.append(time.perf_counter() - started)
        n += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), PROBE_EVERY_S)
    return latencies


async def burst(
    group: Instances,
    slack_url: str,
    db_url: str,
    size: int,
    tag: str,
    idle_rss: dict[int, int],
) -> dict[str, Any]:
    """Send ``size`` events at once; wait until every one is decided, answered and recorded.
    ``idle_rss``: each instance's RSS before any question, the base for growth figures."""
    pids = [inst.proc.pid for inst in group.members]
    cpu_before = {pid: cpu_s(pid) for pid in pids}
    plan: list[tuple[int, str, int | None]] = []  # (instance, body, retry)
    both = 0
    for n in range(size):
        user = f"UB{n % USERS:03d}"
        event = {
            "type": "message",
            "channel": "D" + user[1:],
            "channel_type": "im",
            "user": user,
            "text": QUESTION,
            "ts": f"{tag}.{n:06d}",
        }
        body = instances.event_body(f"Ev{tag}x{n}", event)
        route = n % 3  # 0: first instance only, 1: second only, 2: both (a retry)
        if route < 2:
            plan.append((route, body, None))
        else:
            both += 1
            first = (n // 3) % 2
            plan += [(first, body, None), (1 - first, body, 1)]
    sends = [group.send(i, body, retry=retry, signed=sign(body)) for i, body, retry in plan]
    group.acks.clear()
    samples: list[Sample] = []
    stop = asyncio.Event()
    watch = asyncio.create_task(sampler(group, samples, stop))
    started = time.perf_counter()
    statuses = await asyncio.gather(*sends)
    acked = time.perf_counter() - started
    probed = asyncio.Event()
    probes = asyncio.create_task(probe_acks(group, tag, probed))
    await group.settle(timeout_s=600, poll_s=0.1)
    probed.set()
    probe = await probes
    keys: dict[str, tuple[int, str, str]] = {}
    deadline = time.monotonic() + 60
    while len(keys) < size and time.monotonic() < deadline:
        keys = recorded(db_url, "T1:D")
        keys = {k: v for k, v in keys.items() if k.rsplit(":", 1)[1].startswith(tag + ".")}
        if len(keys) < size:
            await asyncio.sleep(0.2)  # records replayed from a spool land a moment later
    drained = time.perf_counter() - started
    stop.set()
    await watch
    async with group.session.get(slack_url.replace("/api/", "/_stats")) as r:
        stats = await r.json()
    answers = {
        k: v for k, v in stats["answers"].items() if k.split("/", 1)[1].startswith(tag + ".")
    }
    peak_flight = max((s.in_flight for s in samples), default=0)
    peak_rss = {pid: max([s.rss.get(pid, 0) for s in samples] + [idle_rss[pid]]) for pid in pids}
    cpu = {pid: cpu_s(pid) - cpu_before[pid] for pid in pids}
    # Growth of RSS over the idle process, per answer at the busiest moment.
    above = sum(peak_rss[pid] - idle_rss[pid] for pid in pids)
    return {
        "events": size,
        "deliveries": len(statuses),
        "to_both": both,
        "non_200": sum(1 for s in statuses if s != 200),
        "ack_p50_ms": statistics.median(group.acks) * 1000,
        "ack_p99_ms": pct(group.acks, 99) * 1000,
        "ack_max_ms": max(group.acks) * 1000,
        "acked_within_3s": sum(1 for a in group.acks if a <= 3.0),
        "all_acked_s": acked,
        # Acks of single events sent while the burst was being answered.
        "probe_p50_ms": statistics.median(probe) * 1000 if probe else 0.0,
        "probe_p99_ms": pct(probe, 99) * 1000 if probe else 0.0,
        "probe_max_ms": max(probe) * 1000 if probe else 0.0,
        "probes": len(probe),
        "answered": len(answers),
        "answered_twice": sum(1 for c in answers.values() if c > 1),
        "recorded": len(keys),
        "recorded_twice": sum(1 for n, _, _ in keys.values() if n > 1),
        "outcomes": dict(Counter(f"{o} by {m}" for _, o, m in keys.values())),
        "drained_s": drained,
        "peak_in_flight": peak_flight,
        "peak_rss_mb": [round(peak_rss[pid] / 2**20, 1) for pid in pids],
        "idle_rss_mb": [round(idle_rss[pid] / 2**20, 1) for pid in pids],
        "kb_per_answer_in_flight": (above / 1024 / peak_flight) if peak_flight else 0,
        "cpu_ms_per_answer": sum(cpu.values()) * 1000 / size,
        "cpu_s": [round(cpu[pid], 1) for pid in pids],
    }


def report(rows: list[dict[str, Any]], hwm: list[float]) -> str:
    head = (
        "| events | deliveries (to both) | ack p50 / p99 / max ms | acked ≤ 3 s | answered "
        "(twice) | recorded (twice) | peak in flight | peak RSS MB per instance | RSS over "
        "idle, KB per answer in flight | CPU ms per answer | drained in s |\n"
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    )
    lines = [head]
    for r in rows:
        lines.append(
            f"| {r['events']} | {r['deliveries']} ({r['to_both']}) | "
            f"{r['ack_p50_ms']:.0f} / {r['ack_p99_ms']:.0f} / {r['ack_max_ms']:.0f} | "
            f"{r['acked_within_3s']}/{r['deliveries']} | {r['answered']} ({r['answered_twice']}) | "
            f"{r['recorded']} ({r['recorded_twice']}) | {r['peak_in_flight']} | "
            f"{' / '.join(str(x) for x in r['peak_rss_mb'])} | "
            f"{r['kb_per_answer_in_flight']:.0f} | {r['cpu_ms_per_answer']:.1f} | "
            f"{r['drained_s']:.1f} |"
        )
    lines.append("")
    for r in rows:
        lines.append(f"- {r['events']} events: outcomes {r['outcomes']}")
        lines.append(
            f"- {r['events']} events: acks of {r['probes']} single events sent while the burst "
            f"was answered, p50 / p99 / max {r['probe_p50_ms']:.0f} / {r['probe_p99_ms']:.0f} / "
            f"{r['probe_max_ms']:.0f} ms"
        )
    lines.append(f"- peak RSS over the whole run (VmHWM), per instance: {hwm} MB")
    lines.append(f"- idle RSS before the first question, per instance: {rows[0]['idle_rss_mb']} MB")
    return "\n".join(lines)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bursts", default="50,200,1000")
    parser.add_argument("--model", choices=("paced", "offline"), default="paced")
    parser.add_argument("--keep", action="store_true", help="keep the logs folder")
    args = parser.parse_args()
    sizes = [int(x) for x in args.bursts.split(",")]
    folder = Path(tempfile.mkdtemp(prefix="bench-instances-"))
    db_name, db_url = create_database()
    procs: list[asyncio.subprocess.Process] = []
    try:
        slack_proc, slack_url = await start_standin("slack", "--users", str(USERS))
        procs.append(slack_proc)
        model_url = None
        if args.model == "paced":
            model_proc, model_url = await start_standin("openai")
            procs.append(model_proc)
        config = write_config(folder, model_url)
        env = instances.serve_env(
            {},
            slack_url,
            DATABASE_URL=db_url,
            REDIS_URL=REDIS_URL,
            CONCIERGE_REDIS_PREFIX=f"concierge-bench:{uuid.uuid4().hex[:8]}:",
            CONCIERGE_CONFIG=str(config),
            CONCIERGE_SCHEDULER="false",
            CONCIERGE_SLACK_UPDATES_PER_MIN="60000",
            CONCIERGE_SLACK_APPENDS_PER_MIN="60000",
            OPENAI_API_KEY="bench-not-a-secret",
            LOG_LEVEL="WARNING",
        )
        upgrade = await asyncio.create_subprocess_exec(
            sys.executable, str(ROOT / "app.py"), "db", "upgrade", env=env, cwd=folder
        )
        assert await upgrade.wait() == 0, "db upgrade failed"
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as session:
            group = await instances.start(2, env, folder, session)
            try:
                idle = {m.proc.pid: proc_status(m.proc.pid, "VmRSS") for m in group.members}
                await burst(group, slack_url, db_url, 4, "9", idle)  # warm-up: first requests
                rows = []
                for i, size in enumerate(sizes, start=1):
                    row = await burst(group, slack_url, db_url, size, str(10 + i), idle)
                    rows.append(row)
                    print(row, flush=True)
                hwm = [round(proc_status(m.proc.pid, "VmHWM") / 2**20, 1) for m in group.members]
            finally:
                codes = await instances.stop(group)
        print()
        print(f"model: {args.model}; instance exit codes: {codes}; logs: {folder}")
        print(report(rows, hwm))
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.terminate()
                await proc.wait()
        drop_database(db_name)


if __name__ == "__main__":
    asyncio.run(main())
