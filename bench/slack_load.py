"""Slack delivery under load: `app.py serve` over HTTP, the Slack Web API stand-in and an
OpenAI-compatible stand-in each in its own process, at 1, 10 and 50 answers in flight.

The model stand-in sends its first token after 300 ms, then 40 tokens 20 ms apart. For each
level a fresh `serve` process (fresh rate budgets) answers a burst of questions, each asked
by its own person in their own DM; the stand-ins time every Slack write and every model
token (CLOCK_MONOTONIC is one clock for all processes on Linux). Reported per level:

- ack p99: the HTTP answer to the signed event;
- added before first word: event -> first visible write, minus the model's own time from
  request to first token (what Concierge adds, pre-model work included);
- final-text lag: the model's last token -> the write that completed the answer;
- longest gap: the longest time an answer showed no new progress, from the model's first
  token to its final text;
- Slack writes per answer (chat.* calls, 429s included), and how many answers used a
  native stream.

    .venv/bin/python -m bench.slack_load [--levels 1,10,50] [--single 20] [--app-root DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import hmac
import itertools
import json
import multiprocessing as mp
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import aiohttp
import yaml

ROOT = Path(__file__).resolve().parent.parent
SECRET = "bench-signing-secret"
TOKENS = 40
WRITES = ("chat.startStream", "chat.appendStream", "chat.stopStream", "chat.postMessage")
WRITES += ("chat.update",)


# -- the stand-ins' process ---------------------------------------------------------------
def standins_main(conn: Connection, users: int) -> None:
    asyncio.run(_standins(conn, users))


async def _standins(conn: Connection, users: int) -> None:
    from support.standins import openai_api, slack_api
    from support.standins.openai_api import OpenAIStandIn
    from support.standins.slack_api import SlackStandIn

    tokens: dict[str, tuple[float, float, float]] = {}  # tag -> (request, first, last token)

    class TimedOpenAI(OpenAIStandIn):
        async def _stream(self, request: Any, resp: Any, body: Any, model: str) -> None:
            asked = time.monotonic()
            found = re.search(r"q#[0-9wx]+", json.dumps(body))
            tag = found.group(0) if found else "?"
            first: list[float] = []
            real_write = resp.write

            async def write(data: bytes) -> None:
                await real_write(data)
                if b'"content"' in data and not first:
                    first.append(time.monotonic())

            resp.write = write
            await super()._stream(request, resp, body, model)
            tokens[tag] = (asked, first[0] if first else asked, time.monotonic())

    api = SlackStandIn()
    for i in range(users):
        api.add_user(f"U{i:04d}", f"person{i}@acme.test")
    model = TimedOpenAI(
        reply=" ".join(f"word{i}" for i in range(TOKENS)), first_token_s=0.3, token_s=0.02
    )

    slack_runner = await slack_api.start(api)
    model_runner = await openai_api.start(model)
    conn.send({"slack": api.url, "openai": model.url})
    loop = asyncio.get_running_loop()
    while True:
        cmd = await loop.run_in_executor(None, conn.recv)
        if cmd == "stop":
            break
        if cmd == "reset":
            api.log.clear()
            tokens.clear()
            api.calls.clear()
            api.messages.clear()
            conn.send(True)
        elif cmd == "finished":
            conn.send(sum(1 for m in api.messages.values() if m.stopped or m.blocks))
        elif cmd == "dump":
            # (arrival, method, channel, status) of each write, on the one monotonic clock
            writes = [w for w in api.log if w[1] in WRITES]
            conn.send({"writes": writes, "tokens": tokens})
    await slack_runner.cleanup()
    await model_runner.cleanup()


# -- the bench's process ------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(tmp: Path, openai_url: str) -> Path:
    example = ROOT / "examples" / "acme" / "concierge.yaml"
    config = yaml.safe_load(example.read_text())
    for source in config["sources"]:
        source["path"] = str((example.parent / source["path"]).resolve())
    config["models"] = [
        {"name": "primary", "provider": "openai", "model": "stand-in", "base_url": openai_url},
        {"name": "offline", "provider": "offline"},
    ]
    # No hedge: every answer comes from the paced model stand-in.
    config["routing"] = {
        "chain": ["primary", "offline"],
        "first_token_timeout_s": 20,
        "hedge_after_s": None,
        "total_timeout_s": 120,
    }
    config["limits"] = {**config.get("limits", {}), "questions_per_minute": 100_000}
    config.pop("jobs", None)
    path = tmp / "concierge.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def sign(body: str) -> dict[str, str]:
    ts = str(int(time.time()))
    digest = hmac.new(SECRET.encode(), f"v0:{ts}:{body}".encode(), hashlib.sha256).hexdigest()
    return {
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": f"v0={digest}",
        "Content-Type": "application/json",
    }


async def event(session: aiohttp.ClientSession, url: str, user: str, tag: str) -> float:
    """One signed DM event; the time its ack took (s)."""
    body = json.dumps(
        {
            "type": "event_callback",
            "team_id": "T1",
            "api_app_id": "A1",
            "event_id": f"Ev{tag}",
            "event_time": int(time.time()),
            "event": {
                "type": "message",
                "channel": "D" + user.lstrip("U"),
                "channel_type": "im",
                "user": user,
                "text": f"Where do I submit expenses? {tag}",
                "ts": f"{int(time.time())}.{int(user[1:]):06d}",
            },
            "authorizations": [{"team_id": "T1", "user_id": "UBOT", "is_bot": True}],
        }
    )
    started = time.monotonic()
    async with session.post(url + "/slack/events", data=body, headers=sign(body)) as r:
        await r.read()
        assert r.status == 200, r.status
    return time.monotonic() - started


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


class Serve:
    """`app.py serve` in its own process."""

    def __init__(self, env: dict[str, str]) -> None:
        self.port = free_port()
        root = Path(env["PYTHONPATH"])
        self.proc = subprocess.Popen(
            [sys.executable, str(root / "app.py"), "serve"],
            env={**env, "PORT": str(self.port), "CONCIERGE_HOST": "127.0.0.1"},
            cwd=root,
        )
        self.url = f"http://127.0.0.1:{self.port}"

    async def ready(self, session: aiohttp.ClientSession) -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(self.url + "/healthz") as r:
                    if r.status == 200:
                        return
            await asyncio.sleep(0.2)
        raise RuntimeError("serve did not start")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(60)


async def run_level(
    conn: Connection, env: dict[str, str], in_flight: int, rounds: int, first_user: int
) -> dict[str, Any]:
    conn.send("reset")
    conn.recv()
    serve = Serve(env)
    acks: list[float] = []
    sent: dict[str, tuple[float, str]] = {}  # tag -> (event sent at, channel)
    user = first_user
    try:
        async with aiohttp.ClientSession() as session:
            await serve.ready(session)
            # One warm-up answer (first-request costs), not counted.
            await event(session, serve.url, f"U{user:04d}", f"q#w{in_flight}")
            await wait_finished(conn, 1)
            user += 1
            conn.send("reset")
            conn.recv()
            for r in range(rounds):
                batch = []
                for _ in range(in_flight):
                    tag = f"q#{in_flight}x{user}"
                    sent[tag] = (time.monotonic(), "D" + f"{user:04d}")
                    batch.append(event(session, serve.url, f"U{user:04d}", tag))
                    user += 1
                acks += await asyncio.gather(*batch)
                await wait_finished(conn, (r + 1) * in_flight)
    finally:
        serve.stop()
    conn.send("dump")
    data = conn.recv()
    return measure(in_flight, sent, acks, data)


async def wait_finished(conn: Connection, n: int, limit_s: float = 300) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        conn.send("finished")
        if conn.recv() >= n:
            return
        await asyncio.sleep(0.02)
    raise RuntimeError(f"only some of {n} answers finished")


def measure(
    in_flight: int, sent: dict[str, tuple[float, str]], acks: list[float], data: dict[str, Any]
) -> dict[str, Any]:
    by_channel: dict[str, list[tuple[float, str, int]]] = {}
    for at, method, channel, status in data["writes"]:
        by_channel.setdefault(channel, []).append((at, method, status))
    added, lag, gaps, calls, premodel, shown = [], [], [], [], [], []
    shown_native: list[float] = []
    shown_posted: list[float] = []
    lag_native: list[float] = []
    lag_posted: list[float] = []
    native = 0
    for tag, (asked_at, channel) in sent.items():
        request, first_token, last_token = data["tokens"][tag]
        ok = sorted(at for at, _, status in by_channel.get(channel, []) if status == 200)
        everything = by_channel.get(channel, [])
        calls.append(len(everything))
        streamed = any(m == "chat.startStream" for _, m, s in everything if s == 200)
        native += streamed
        added.append((ok[0] - asked_at) - (first_token - request))
        premodel.append(request - asked_at)
        shown.append(ok[0] - first_token)
        (shown_native if streamed else shown_posted).append(ok[0] - first_token)
        lag.append(ok[-1] - last_token)
        (lag_native if streamed else lag_posted).append(ok[-1] - last_token)
        points = [first_token] + [t for t in ok if t > first_token]
        gaps.append(max(b - a for a, b in itertools.pairwise(points)))
    ms = 1000.0
    return {
        "in flight": in_flight,
        "answers": len(sent),
        "ack p99 ms": pct(acks, 99) * ms,
        "added p50 ms": statistics.median(added) * ms,
        "added p95 ms": pct(added, 95) * ms,
        "event->model p50 ms": statistics.median(premodel) * ms,
        "token->shown p50 ms": statistics.median(shown) * ms,
        "token->shown p95 ms": pct(shown, 95) * ms,
        "token->shown native/posted p50 ms": "/".join(
            f"{statistics.median(x) * ms:.0f}" if x else "-" for x in (shown_native, shown_posted)
        ),
        "final lag p50 ms": statistics.median(lag) * ms,
        "final lag p95 ms": pct(lag, 95) * ms,
        "final lag native/posted p50 ms": "/".join(
            f"{statistics.median(x) * ms:.0f}" if x else "-" for x in (lag_native, lag_posted)
        ),
        "longest gap max s": max(gaps),
        "longest gap p95 s": pct(gaps, 95),
        "writes/answer": statistics.mean(calls),
        "native": native,
    }


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--levels", default="1,10,50")
    ap.add_argument("--single", type=int, default=20, help="answers, one at a time")
    ap.add_argument("--rounds", type=int, default=2, help="bursts at 10 in flight")
    ap.add_argument(
        "--app-root",
        type=Path,
        default=ROOT,
        help="serve this checkout (e.g. an older one, for before/after figures)",
    )
    args = ap.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    standins = ctx.Process(target=standins_main, args=(child, 1000), daemon=True)
    standins.start()
    urls = parent.recv()
    tmp = Path(tempfile.mkdtemp(prefix="concierge-slack-load-"))
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "CONCIERGE_", "REDIS"))
    }
    env.update(
        {
            "SLACK_BOT_TOKEN": "xoxb-bench",
            "SLACK_SIGNING_SECRET": SECRET,
            "SLACK_API_URL": urls["slack"],
            "OPENAI_API_KEY": "sk-bench",
            "CONCIERGE_CONFIG": str(write_config(tmp, urls["openai"])),
            "CONCIERGE_DATA_DIR": str(tmp),
            "CONCIERGE_SCHEDULER": "false",
            "DATABASE_URL": f"sqlite:///{tmp / 'bench.db'}",
            "LOG_LEVEL": "ERROR",
            "PYTHONPATH": str(args.app_root.resolve()),
        }
    )
    rows = []
    user = 0
    for level in levels:
        rounds = args.single if level == 1 else (args.rounds if level <= 10 else 1)
        row = await run_level(parent, env, level, rounds, user)
        user += level * rounds + 1
        rows.append(row)
        print(
            "  ".join(
                f"{k} {v:.1f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()
            ),
            flush=True,
        )
    parent.send("stop")
    standins.join(10)
    keys = list(rows[0])
    print()
    print("| " + " | ".join(keys) + " |")
    print("|" + " --- |" * len(keys))
    for row in rows:
        cells = [f"{row[k]:.1f}" if isinstance(row[k], float) else str(row[k]) for k in keys]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    asyncio.run(main())
