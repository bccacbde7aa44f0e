"""Shutdown loses nothing (issue 14, part B): ``app.py serve`` as a real process, a slow model
answering, then SIGTERM. HTTP mode stops taking work at once and lets the answer finish;
Socket Mode disconnects first and closes what outlives the grace period with a note, recorded
as incomplete."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select

from bot.store.db import Store
from bot.store.models import Exchange
from tests.slack_helpers import SECRET, dm, mention, sign
from tests.standins import openai_api, slack_api
from tests.standins.openai_api import OpenAIStandIn
from tests.standins.slack_api import SlackStandIn
from tests.test_serve_process import free_port

ROOT = Path(__file__).resolve().parent.parent
# A slow model: about three seconds of streaming.
SLOW_REPLY = "Submit expenses in Pleo within thirty days. [1] " + "More words follow here. " * 8


@pytest.fixture
async def world(env: dict[str, str], workspace: Any) -> AsyncIterator[Any]:
    """The Slack and model stand-ins, and the workspace pointed at the slow model."""
    api = SlackStandIn()
    api.add_user("UEVE", "eve@canary.test")
    model = OpenAIStandIn(reply=SLOW_REPLY, token_s=0.08)
    runners = [await slack_api.start(api), await openai_api.start(model)]
    routing = "first_token_timeout_s: 5, stall_timeout_s: 5, total_timeout_s: 30"
    text = workspace.config.read_text().replace(
        "limits:", openai_api.primary_config(model.url, routing) + "limits:"
    )
    workspace.config.write_text(text)
    try:
        yield api, model
    finally:
        for runner in runners:
            await runner.cleanup()


async def start_serve(env: dict[str, str], api: SlackStandIn, **extra: str) -> Any:
    proc_env: dict[str, Any] = {
        **os.environ,
        **env,
        "SLACK_BOT_TOKEN": "xoxb-serve",
        "SLACK_SIGNING_SECRET": SECRET,
        "SLACK_API_URL": api.url,
        "OPENAI_API_KEY": "sk-stand-in",
        "CONCIERGE_HOST": "127.0.0.1",
        "LOG_LEVEL": "INFO",
        **extra,
    }
    if "SLACK_APP_TOKEN" not in extra:
        proc_env.pop("SLACK_APP_TOKEN", None)
    return await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "app.py"),
        "serve",
        env=proc_env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def until(check: Callable[[], bool], proc: Any, limit_s: float = 60) -> None:
    deadline = time.monotonic() + limit_s
    while not check():
        assert proc.returncode is None, "serve exited"
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


def recorded(env: dict[str, str]) -> list[Exchange]:
    store = Store.open(env["DATABASE_URL"], migrate=False)
    try:
        with store.session() as s:
            return list(s.scalars(select(Exchange)))
    finally:
        store.close()


def event_body(event_id: str, ts: str) -> str:
    return json.dumps(
        {
            "type": "event_callback",
            "team_id": "T1",
            "event_id": event_id,
            "event": dm("UEVE", "Where do I submit expenses?", ts),
        }
    )


async def stopped(proc: Any) -> tuple[int, bytes]:
    code = await asyncio.wait_for(proc.wait(), 60)
    _, err = await proc.communicate()
    return int(code), bytes(err)


async def test_sigterm_in_http_mode_refuses_new_work_and_finishes_the_answer(
    env: dict[str, str], world: Any
) -> None:
    api, model = world
    port = free_port()
    proc = await start_serve(env, api, PORT=str(port), CONCIERGE_SHUTDOWN_GRACE_S="30")
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:

            async def post(body: str) -> int:
                headers = {"Content-Type": "application/json", **sign(body)}
                async with session.post(f"{url}/slack/events", data=body, headers=headers) as r:
                    return r.status

            async def healthy() -> bool:
                try:
                    async with session.get(f"{url}/healthz") as r:
                        return r.status == 200
                except aiohttp.ClientError:
                    return False

            deadline = time.monotonic() + 60
            while not await healthy():
                assert proc.returncode is None and time.monotonic() < deadline, "no start"
                await asyncio.sleep(0.2)
            assert await post(event_body("EvT1", "20.1")) == 200
            await until(lambda: bool(api.called("chat.startStream")), proc)
            proc.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.5)
            try:
                late = await post(event_body("EvT2", "20.2"))
            except aiohttp.ClientError:
                late = 0  # the listener is closed: refused
            assert late in (0, 503), late
            assert not any(m.stopped for m in api.in_channel("DEVE")), "answer ended too soon"
        code, err = await stopped(proc)
        assert code == 0, err.decode()[-2000:]
        assert b"Traceback" not in err and b"never retrieved" not in err
        (answer,) = [m for m in api.in_channel("DEVE") if m.thread_ts == "20.1"]
        assert answer.stopped and "More words follow here." in answer.text
        assert "restarted" not in answer.text
        (row,) = recorded(env)
        assert (row.outcome, row.delivery) == ("answered", "delivered")
        assert len(model.requests) == 1
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_sigterm_in_socket_mode_closes_what_outlives_the_grace_period_with_a_note(
    env: dict[str, str], world: Any
) -> None:
    api, model = world
    model.token_s = 0.3  # about ten seconds: longer than the grace period
    proc = await start_serve(
        env, api, SLACK_APP_TOKEN="xapp-serve", CONCIERGE_SHUTDOWN_GRACE_S="0.5"
    )
    try:
        await asyncio.wait_for(api.socket_connected.wait(), 60)
        payload = json.loads(event_body("EvS1", "21.1"))
        await api.socket_outbox.put(
            {"envelope_id": "env-1", "type": "events_api", "payload": payload, "retry_attempt": 0}
        )
        await until(lambda: bool(api.called("chat.startStream")), proc)
        proc.send_signal(signal.SIGTERM)
        code, err = await stopped(proc)
        assert code == 0, err.decode()[-2000:]
        assert b"Traceback" not in err and b"never retrieved" not in err
        messages = [m for m in api.in_channel("DEVE") if m.thread_ts == "21.1"]
        assert messages and all(m.stopped for m in messages if m.streaming)
        assert "restarted before finishing this answer" in messages[-1].full_text()
        (row,) = recorded(env)
        assert row.outcome == "incomplete" and "restarted" in (row.answer or "")
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_a_question_stopped_before_its_answer_began_is_told_and_recorded(slack) -> None:
    """Shutdown while Slack is still describing the channel (before the pipeline started):
    the person is told to ask again and the question is recorded once, never lost."""
    from bot.slack.questions import RESTART
    from bot.slack.server import drain

    slack.api.delays["conversations.info"] = 5
    await slack.event(mention("UEVE", "Where do I submit expenses?", "40.1"))
    # Wait for the look-up to start (not for the work to settle: that is what is cut short).
    for _ in range(200):
        if slack.api.called("conversations.info"):
            break
        await asyncio.sleep(0.05)
    assert slack.api.called("conversations.info")
    await drain(slack.deps, 0)  # the grace period is over: what runs is cancelled
    with slack.deps.runtime.store.session() as s:
        rows = list(s.scalars(select(Exchange)))
    assert len(rows) == 1
    assert rows[0].question == "Where do I submit expenses?" and rows[0].channel == "C1"
    assert "shutting down" in (rows[0].error or "") and rows[0].delivery == "failed"
    said = [m.text for m in slack.api.in_channel("C1")]
    assert RESTART in said
