"""``python app.py serve`` as an operator runs it: a real process on a real port, signed
requests, the Slack stand-in, and a clean exit on SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from tests.slack_helpers import SECRET, dm, sign
from tests.standins import slack_api
from tests.standins.slack_api import SlackStandIn

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_serve_answers_signed_events_and_stops_cleanly(env: dict[str, str]) -> None:
    api = SlackStandIn()
    api.add_user("UEVE", "eve@canary.test")
    runner = await slack_api.start(api)
    port = free_port()
    proc_env: dict[str, Any] = {
        **os.environ,
        **env,
        "SLACK_BOT_TOKEN": "xoxb-serve",
        "SLACK_SIGNING_SECRET": SECRET,
        "SLACK_API_URL": api.url,
        "PORT": str(port),
        "CONCIERGE_HOST": "127.0.0.1",
        "LOG_LEVEL": "INFO",
    }
    proc_env.pop("SLACK_APP_TOKEN", None)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "app.py"),
        "serve",
        env=proc_env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with aiohttp.ClientSession() as session:
            deadline = time.monotonic() + 60
            while True:
                try:
                    async with session.get(f"http://127.0.0.1:{port}/healthz") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                assert time.monotonic() < deadline, "serve did not start"
                assert proc.returncode is None, "serve exited"
                await asyncio.sleep(0.2)
            body = json.dumps(
                {
                    "type": "event_callback",
                    "team_id": "T1",
                    "event_id": "EvP1",
                    "event": dm("UEVE", "Where do I submit expenses?", "5.1"),
                }
            )
            headers = {"Content-Type": "application/json", **sign(body)}
            async with session.post(
                f"http://127.0.0.1:{port}/slack/events", data=body, headers=headers
            ) as r:
                assert r.status == 200
            bad = {**headers, "X-Slack-Signature": "v0=" + "0" * 64}
            async with session.post(
                f"http://127.0.0.1:{port}/slack/events", data=body, headers=bad
            ) as r:
                assert r.status == 401
            deadline = time.monotonic() + 60
            while not any(m.blocks or m.stopped for m in api.in_channel("DEVE")):
                assert time.monotonic() < deadline, "no answer"
                await asyncio.sleep(0.1)
        assert "Pleo" in api.everything_posted()
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), 30)
        _, err = await proc.communicate()
        assert code == 0, err.decode()[-2000:]
        assert b"Traceback" not in err
        assert b"xoxb-serve" not in err and SECRET.encode() not in err
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await runner.cleanup()


async def test_serve_without_a_token_says_what_is_missing(env: dict[str, str]) -> None:
    proc_env = {k: v for k, v in {**os.environ, **env}.items() if not k.startswith("SLACK_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "app.py"),
        "serve",
        env=proc_env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2
    assert b"SLACK_BOT_TOKEN" in err and b"Traceback" not in err
