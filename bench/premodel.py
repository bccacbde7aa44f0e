"""Work before the model call: the time from a Slack event reaching our endpoint to the
model request leaving, one question at a time and with 10 in flight.

Three processes, as in production: the Slack Web API and OpenAI-compatible stand-ins
(``support.standins.serve``), ``app.py serve`` in HTTP mode, and this driver, which posts
signed events and reads from the model stand-in when each question's request arrived (the
monotonic clock is shared by every process on the machine). Every question comes from a new
Slack user (a cold identity look-up), as a burst of different people asking does.

Slack's own latency (``--slack-delay users.info=0.05``) and a database in another zone
(``--db-latency-ms``) make the queues that the stand-ins' instant answers hide visible. The
last line, how many users.info calls the stand-in answered at once, is a figure the
machine's load cannot blur (it means something only with a users.info delay).

    .venv/bin/python -m bench.premodel [--rounds 5] [--in-flight 10] [--single 20]
        [--slack-delay users.info=0.05] [--database-url postgresql://… [--db-latency-ms 2]]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from sqlalchemy.engine import make_url

from support.slack_wire import SECRET, dm, event_body, sign
from support.standins.tcp_proxy import TcpProxy

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "acme" / "concierge.yaml"
QUESTIONS = (
    "Where do I submit expenses?",
    "How many days of time off can I carry over?",
    "How long is parental leave?",
    "How do I deploy a service?",
)


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def workspace(tmp: Path, model_url: str) -> Path:
    """The bundled example workspace with a priced model at the stand-in before offline."""
    config = yaml.safe_load(EXAMPLE.read_text())
    for source in config["sources"]:
        if "path" in source:
            source["path"] = str((EXAMPLE.parent / source["path"]).resolve())
    config["models"] = [
        {
            "name": "primary",
            "provider": "openai",
            "model": "stand-in-1",
            "base_url": model_url,
            "price": {"input": 0.15, "output": 0.6},
            "data_classes": ["public", "internal", "confidential"],
        },
        {"name": "offline", "provider": "offline"},
    ]
    config["routing"] = {**config.get("routing", {}), "chain": ["primary", "offline"]}
    config.setdefault("limits", {})["questions_per_minute"] = 1000
    path = tmp / "concierge.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


class Bench:
    def __init__(self, session: aiohttp.ClientSession, app_url: str, control: str) -> None:
        self.session = session
        self.app_url = app_url
        self.control = control
        self.users = iter(range(10_000))
        self.ts = iter(range(1, 1_000_000))

    async def post_event(self, marker: str) -> float:
        """Post one question; returns when it was sent (monotonic seconds)."""
        user = f"U{next(self.users):04d}"
        text = f"{QUESTIONS[int(user[1:]) % len(QUESTIONS)]} ref{marker}"
        body = event_body(dm(user, text, f"1700000{next(self.ts)}.000100"))
        headers = {"Content-Type": "application/json", **sign(body)}
        sent = time.monotonic()
        async with self.session.post(
            self.app_url + "/slack/events", data=body.encode(), headers=headers
        ) as r:
            assert r.status == 200, r.status
        return sent

    async def model_requests(self) -> list[dict[str, Any]]:
        async with self.session.get(self.control + "/model-requests") as r:
            data: list[dict[str, Any]] = await r.json()
            return data

    async def arrived(self, markers: list[str], limit_s: float = 60) -> dict[str, float]:
        """When the model request of each question arrived at the stand-in."""
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            found: dict[str, float] = {}
            for req in await self.model_requests():
                for m in markers:
                    if f"ref{m}" in req["last"] and m not in found:
                        found[m] = req["at"]
            if len(found) == len(markers):
                return found
            await asyncio.sleep(0.02)
        raise RuntimeError("some questions never reached the model")

    async def idle(self, limit_s: float = 120) -> None:
        """Until the app has no answer in flight (its /healthz counts them)."""
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            async with self.session.get(self.app_url + "/healthz") as r:
                if (await r.json())["answers_in_flight"] == 0:
                    return
            await asyncio.sleep(0.05)
        raise RuntimeError("answers still in flight")

    async def batch(self, n: int) -> list[float]:
        """``n`` questions posted at once; event -> model request for each, in ms."""
        markers = [uuid.uuid4().hex[:10] for _ in range(n)]
        sent = await asyncio.gather(*(self.post_event(m) for m in markers))
        arrived = await self.arrived(markers)
        await self.idle()
        return [(arrived[m] - s) * 1000 for m, s in zip(markers, sent, strict=True)]


def line(label: str, values: list[float]) -> str:
    return (
        f"{label:<28} p50 {statistics.median(values):6.1f} ms  p95 {pct(values, 95):6.1f} ms  "
        f"max {max(values):6.1f} ms  n={len(values)}"
    )


async def measure(args: argparse.Namespace, app_url: str, control: str) -> None:
    async with aiohttp.ClientSession() as session:
        bench = Bench(session, app_url, control)
        for _ in range(3):  # warm-up: indexes opened, connections made
            await bench.batch(2)
        single: list[float] = []
        for _ in range(args.single):
            single += await bench.batch(1)
        async with session.post(control + "/reset") as r:
            assert r.status == 200
        many: list[float] = []
        for _ in range(args.rounds):
            many += await bench.batch(args.in_flight)
        async with session.get(control + "/slack-peak") as r:
            peak = await r.json()
    print(line("1 in flight", single))
    print(line(f"{args.in_flight} in flight", many))
    ratio = pct(many, 95) / pct(single, 95)
    print(f"p95 at {args.in_flight} in flight / p95 at 1: {ratio:.2f}x (budget: 2x)")
    print(
        f"users.info calls answered at once, at most: {peak.get('users.info', 0)} "
        f"(of {args.in_flight} people asking together)"
    )


def start_standins(args: argparse.Namespace) -> tuple[subprocess.Popen[str], dict[str, str]]:
    cmd = [
        sys.executable,
        "-m",
        "support.standins.serve",
        "--first-token-s",
        str(args.first_token_s),
    ]
    for delay in args.slack_delay:
        cmd += ["--slack-delay", delay]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    urls: dict[str, str] = json.loads(proc.stdout.readline())
    return proc, urls


async def wait_healthy(url: str, proc: subprocess.Popen[str], limit_s: float = 120) -> None:
    deadline = time.monotonic() + limit_s
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError("app.py serve exited")
            try:
                async with session.get(url + "/healthz") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError("app.py serve did not start")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--in-flight", type=int, default=10)
    ap.add_argument("--single", type=int, default=20)
    ap.add_argument("--first-token-s", type=float, default=0.3)
    ap.add_argument("--slack-delay", action="append", default=[], metavar="METHOD=SECONDS")
    ap.add_argument("--database-url", default=None)
    ap.add_argument(
        "--db-latency-ms",
        type=float,
        default=0.0,
        help="PostgreSQL only: put a TCP proxy in front that adds this to every message sent "
        "to the database (a database in another zone)",
    )
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="concierge-premodel-"))
    standins, urls = start_standins(args)
    database_url = args.database_url or f"sqlite:///{tmp / 'bench.db'}"
    proxy = None
    if args.db_latency_ms:
        url = make_url(database_url)
        proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
        proxy.latency_s = args.db_latency_ms / 1000
        database_url = url.set(host="127.0.0.1", port=proxy.port).render_as_string(
            hide_password=False
        )
    port = free_port()
    env = {
        **os.environ,
        "SLACK_BOT_TOKEN": "xoxb-bench",
        "SLACK_SIGNING_SECRET": SECRET,
        "SLACK_API_URL": urls["slack"],
        "OPENAI_API_KEY": "sk-bench-not-a-key",
        "CONCIERGE_CONFIG": str(workspace(tmp, urls["openai"])),
        "CONCIERGE_DATA_DIR": str(tmp / "data"),
        "DATABASE_URL": database_url,
        "CONCIERGE_HOST": "127.0.0.1",
        "PORT": str(port),
        "LOG_LEVEL": "ERROR",
        "CONCIERGE_SCHEDULER": "false",
        "CONCIERGE_SLACK_UPDATES_PER_MIN": "6000",
        "CONCIERGE_SLACK_APPENDS_PER_MIN": "6000",
    }
    for key in ("SLACK_APP_TOKEN", "REDIS_URL"):
        env.pop(key, None)
    app = subprocess.Popen([sys.executable, "app.py", "serve"], cwd=ROOT, env=env)
    app_url = f"http://127.0.0.1:{port}"
    try:
        asyncio.run(wait_healthy(app_url, app))
        asyncio.run(measure(args, app_url, urls["control"]))
    finally:
        for proc in (app, standins):
            proc.send_signal(signal.SIGTERM)
        for proc in (app, standins):
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        if proxy is not None:
            proxy.close()


if __name__ == "__main__":
    main()
