"""At LOG_LEVEL=DEBUG ``app.py serve`` still never logs an answer's text (#14): slack_sdk
logs whole request bodies at DEBUG, and answers (confidential ones too) are request bodies."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.slack_helpers import SECRET, dm, sign
from tests.standins import slack_api
from tests.standins.slack_api import SlackStandIn
from tests.test_serve_process import free_port

ROOT = Path(__file__).resolve().parent.parent.parent
CANARY = "CANARY-RUNBOOK-7F3"


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_a_served_answer_never_reaches_the_debug_log(env: dict[str, str]) -> None:
    api = SlackStandIn()
    api.add_user("UEVE", "eve@canary.test")
    runner = await slack_api.start(api)
    port = free_port()
    proc_env: dict[str, Any] = {
        **os.environ,
        **env,
        "SLACK_BOT_TOKEN": "xoxb-debug",
        "SLACK_SIGNING_SECRET": SECRET,
        "SLACK_API_URL": api.url,
        "PORT": str(port),
        "CONCIERGE_HOST": "127.0.0.1",
        "CONCIERGE_SCHEDULER": "false",
        "LOG_LEVEL": "DEBUG",
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
                assert time.monotonic() < deadline and proc.returncode is None, "no serve"
                await asyncio.sleep(0.2)
            body = json.dumps(
                {
                    "type": "event_callback",
                    "team_id": "T1",
                    "event_id": "EvDBG1",
                    "event": dm(
                        "UEVE", "What is the deploy freeze codeword for deploying a service?", "1.1"
                    ),
                }
            )
            headers = {"Content-Type": "application/json", **sign(body)}
            async with session.post(
                f"http://127.0.0.1:{port}/slack/events", data=body, headers=headers
            ) as r:
                assert r.status == 200
            deadline = time.monotonic() + 60
            while not any(m.stopped or m.blocks for m in api.in_channel("DEVE")):
                assert time.monotonic() < deadline, "no answer"
                await asyncio.sleep(0.1)
        assert CANARY in api.everything_posted()  # the answer did carry it
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 30)
        _, err = await proc.communicate()
        log = err.decode(errors="replace")
        assert "DEBUG" in log  # the debug log was on
        assert CANARY not in log
        assert "xoxb-debug" not in log
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await runner.cleanup()
