"""Several ``python app.py serve`` processes (HTTP mode), as an operator runs them behind a
load balancer: each on its own port, all on one database and one Redis. Used by the
two-instance test and by bench/instances.py.

Waiting is for the work started, never for a quiet period: each instance counts the Slack
deliveries it has decided (``concierge_slack_deliveries_total``, claimed or duplicate) on
/metrics, and reports the answers still running on /healthz. ``settle`` waits until every
delivery sent has been decided somewhere and no instance has an answer in flight.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from support.slack_wire import SECRET, sign

ROOT = Path(__file__).resolve().parent.parent
DECIDED = re.compile(r'^concierge_slack_deliveries_total\{[^}]*kind="event"[^}]*\}\s+(\S+)$', re.M)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Instance:
    proc: asyncio.subprocess.Process
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@dataclass
class Instances:
    """N serve processes; ``send`` posts a signed body to one of them."""

    members: list[Instance]
    session: aiohttp.ClientSession
    sent: int = 0  # event deliveries posted (each must be decided by some instance)
    acks: list[float] = field(default_factory=list)  # seconds from send to HTTP 200

    async def send(
        self,
        index: int,
        body: str,
        *,
        retry: int | None = None,
        signed: dict[str, str] | None = None,
    ) -> int:
        """Post an event body to instance ``index`` as Slack would (a retry carries
        X-Slack-Retry-Num); returns the HTTP status."""
        headers = {"Content-Type": "application/json", **(signed or sign(body))}
        if retry is not None:
            headers["X-Slack-Retry-Num"] = str(retry)
            headers["X-Slack-Retry-Reason"] = "http_timeout"
        started = time.perf_counter()
        async with self.session.post(
            self.members[index].url + "/slack/events", data=body.encode(), headers=headers
        ) as r:
            await r.read()
            self.acks.append(time.perf_counter() - started)
            if r.status == 200:
                self.sent += 1
            return r.status

    async def decided(self) -> int:
        """Event deliveries decided (claimed or found duplicate) by all instances together."""
        total = 0.0
        for inst in self.members:
            async with self.session.get(inst.url + "/metrics") as r:
                text = await r.text()
            total += sum(float(v) for v in DECIDED.findall(text))
        return int(total)

    async def in_flight(self) -> int:
        total = 0
        for inst in self.members:
            async with self.session.get(inst.url + "/healthz") as r:
                total += int((await r.json())["answers_in_flight"])
        return total

    async def settle(self, timeout_s: float = 60.0, poll_s: float = 0.05) -> None:
        """Wait until every delivery sent has been decided and all answers have finished."""
        deadline = time.monotonic() + timeout_s
        while True:
            if await self.decided() >= self.sent and await self.in_flight() == 0:
                return
            for inst in self.members:
                assert inst.proc.returncode is None, "an instance exited:\n" + inst.log()[-3000:]
            assert time.monotonic() < deadline, (
                f"not settled: {await self.decided()} of {self.sent} deliveries decided, "
                f"{await self.in_flight()} answer(s) in flight"
            )
            await asyncio.sleep(poll_s)


def serve_env(env: dict[str, str], slack_url: str, **extra: str) -> dict[str, str]:
    values = {
        **os.environ,
        **env,
        "SLACK_BOT_TOKEN": "xoxb-instances",
        "SLACK_SIGNING_SECRET": SECRET,
        "SLACK_API_URL": slack_url,
        "CONCIERGE_HOST": "127.0.0.1",
        "LOG_LEVEL": "INFO",
        **extra,
    }
    values.pop("SLACK_APP_TOKEN", None)
    return values


async def start(
    count: int,
    env: dict[str, str],
    log_dir: Path,
    session: aiohttp.ClientSession,
    *,
    overrides: dict[int, dict[str, str]] | None = None,
) -> Instances:
    """Start ``count`` serve processes with ``env`` and wait until each answers /healthz.
    Each gets its own PORT and its own CONCIERGE_DATA_DIR (the search index and the spool
    are local to an instance, as on separate machines); ``overrides`` changes the
    environment of one instance (by index)."""
    members = []
    for n in range(count):
        port = free_port()
        log_path = log_dir / f"serve-{n}-{uuid.uuid4().hex[:4]}.log"
        with log_path.open("wb") as out:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                str(ROOT / "app.py"),
                "serve",
                env={
                    **env,
                    "PORT": str(port),
                    "CONCIERGE_DATA_DIR": str(log_dir / f"data-{n}"),
                    **(overrides or {}).get(n, {}),
                },
                stdout=out,
                stderr=out,
            )
        members.append(Instance(proc, port, log_path))
    group = Instances(members, session)
    deadline = time.monotonic() + 90
    for inst in members:
        while True:
            try:
                async with session.get(inst.url + "/healthz") as r:
                    if r.status == 200:
                        break
            except aiohttp.ClientError:
                pass
            assert inst.proc.returncode is None, "serve exited:\n" + inst.log()[-3000:]
            assert time.monotonic() < deadline, "serve did not start:\n" + inst.log()[-3000:]
            await asyncio.sleep(0.1)
    return group


async def stop(group: Instances, timeout_s: float = 30.0) -> list[int]:
    """SIGTERM every instance and wait for it; returns the exit codes."""
    for inst in group.members:
        if inst.proc.returncode is None:
            inst.proc.send_signal(signal.SIGTERM)
    codes = []
    for inst in group.members:
        try:
            codes.append(await asyncio.wait_for(inst.proc.wait(), timeout_s))
        except TimeoutError:
            inst.proc.kill()
            codes.append(await inst.proc.wait())
    return codes


def event_body(event_id: str, event: dict[str, Any], team: str = "T1") -> str:
    return json.dumps(
        {
            "type": "event_callback",
            "team_id": team,
            "api_app_id": "A1",
            "event_id": event_id,
            "event_time": int(time.time()),
            "event": event,
            "authorizations": [{"team_id": team, "user_id": "UBOT", "is_bot": True}],
        }
    )
