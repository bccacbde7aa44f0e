"""Slack delivery under load (issue 13, items 1 and 5): signed events into the real app, a
model stand-in that streams over HTTP, the Slack stand-in timing every call.

- the last write goes out as soon as the model's last token arrives, whatever budget the
  intermediate writes have left;
- answers in flight take turns: each one shows progress while its model streams;
- past Tier 2's budget for new streams, answers use chat.postMessage + chat.update at once;
- a 429 pauses its method for every answer until Retry-After has passed, and loses no text.

Assertions are on order, counts and content, with bounds far from what a loaded machine
needs (the precise latencies are measured by bench/slack_load.py)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select

from bot.settings import Settings
from bot.slack.app import build_app
from bot.slack.server import prepare, start_http
from bot.store.models import Exchange
from tests.slack_helpers import SECRET, SlackDriver, dm
from tests.standins import openai_api, slack_api
from tests.standins.openai_api import OpenAIStandIn
from tests.standins.slack_api import SlackStandIn

WORDS = 40
REPLY = " ".join(f"w{i}" for i in range(WORDS))
FINALS = ("chat.stopStream", "chat.update", "chat.postMessage")
SHOWN = {"chat.startStream", "chat.appendStream", "chat.stopStream", "chat.postMessage"}
SHOWN |= {"chat.update"}


@contextlib.asynccontextmanager
async def serving(
    env: dict[str, str],
    workspace: Any,
    monkeypatch: pytest.MonkeyPatch,
    model: OpenAIStandIn,
    users: int,
    **settings: str,
) -> AsyncIterator[SlackDriver]:
    """The app over HTTP, answering from ``model`` with the Slack budget in ``settings``."""
    api = SlackStandIn()
    for i in range(users):
        api.add_user(f"U{i:03d}", f"person{i}@canary.test")
    runners = [await slack_api.start(api), await openai_api.start(model)]
    routing = "first_token_timeout_s: 20, hedge_after_s: 30, total_timeout_s: 60"
    text = workspace.config.read_text().replace(
        "limits:", openai_api.primary_config(model.url, routing) + "limits:"
    )
    workspace.config.write_text(text)
    values = {
        "SLACK_BOT_TOKEN": "xoxb-test-token",
        "SLACK_SIGNING_SECRET": SECRET,
        "SLACK_API_URL": api.url,
        "OPENAI_API_KEY": "sk-stand-in",
        "LOG_LEVEL": "INFO",
        **settings,
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    runtime, deps = await prepare(Settings())
    runner, port = await start_http(build_app(deps), deps, "127.0.0.1", 0)
    try:
        async with aiohttp.ClientSession() as session:
            yield SlackDriver(f"http://127.0.0.1:{port}", api, deps, session)
    finally:
        await runner.cleanup()
        for r in runners:
            await r.cleanup()
        runtime.close()


async def answered(slack: SlackDriver, n: int, limit_s: float = 60) -> list[Exchange]:
    """Wait for the work the events started: ``n`` exchanges recorded and nothing running."""
    deadline = time.monotonic() + limit_s
    while True:
        rows = exchanges(slack)
        if len(rows) >= n and not slack.deps.tasks:
            return rows
        left = deadline - time.monotonic()
        assert left > 0, f"{len(rows)} of {n} answers finished"
        if slack.deps.tasks:
            await asyncio.wait(set(slack.deps.tasks), timeout=left)
        else:
            await asyncio.sleep(0.02)


def exchanges(slack: SlackDriver) -> list[Exchange]:
    with slack.deps.runtime.store.session() as s:
        return list(s.scalars(select(Exchange)))


def shown(slack: SlackDriver, channel: str) -> str:
    """Everything the person sees in ``channel``, Slack's escaping undone."""
    text = "\n".join(m.full_text() for m in sorted(slack.api.in_channel(channel), key=by_ts))
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def by_ts(m: Any) -> str:
    return str(m.ts)


def visible(slack: SlackDriver, channel: str) -> list[tuple[float, str]]:
    """(arrival, method) of the writes Slack accepted in ``channel``."""
    return [(t, m) for t, m, s in slack.api.writes(channel) if s == 200 and m in SHOWN]


async def ask(slack: SlackDriver, users: range) -> None:
    results = await asyncio.gather(
        *(slack.event(dm(f"U{i:03d}", "Where do I submit expenses?", f"{i + 1}.5")) for i in users)
    )
    assert all(status == 200 for status, _, _ in results)


def whole(slack: SlackDriver, channel: str) -> bool:
    return REPLY in " ".join(shown(slack, channel).split())


async def test_the_final_text_goes_out_when_the_last_token_arrives_not_when_a_slot_frees(
    env: dict[str, str], workspace: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One append a minute: the intermediate writes are starved, yet the final text (the
    stream's stop, counted when the stream was opened) goes out as the model ends."""
    model = OpenAIStandIn(reply=REPLY, first_token_s=0.1, token_s=0.03)
    async with serving(
        env,
        workspace,
        monkeypatch,
        model,
        1,
        CONCIERGE_SLACK_APPENDS_PER_MIN="1",
        CONCIERGE_SLACK_WRITE_INTERVAL_S="0",
    ) as slack:
        await ask(slack, range(1))
        (row,) = await answered(slack, 1)
        writes = visible(slack, "D000")
        assert writes[0][1] == "chat.startStream"
        assert writes[-1][1] == "chat.stopStream"
        assert len(slack.api.called("chat.stopStream")) == 1
        assert whole(slack, "D000") and row.delivery == "delivered"
        (last_token,) = model.finished
        # A slot for another append would come a minute later; the stop comes at once.
        assert writes[-1][0] - last_token < 5.0


async def test_answers_in_flight_take_turns_and_each_shows_progress(
    env: dict[str, str], workspace: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ten answers streaming for about four seconds share twelve appends a minute: every
    one gets its turn (at least one append between its first words and its end), none gets
    more than one more than another, and every one ends when its model does."""
    model = OpenAIStandIn(reply=REPLY, first_token_s=0.1, token_s=0.1)
    async with serving(
        env,
        workspace,
        monkeypatch,
        model,
        10,
        CONCIERGE_SLACK_APPENDS_PER_MIN="12",
        CONCIERGE_SLACK_STREAMS_PER_MIN="6000",
        CONCIERGE_SLACK_WRITE_INTERVAL_S="0.5",
    ) as slack:
        await ask(slack, range(10))
        rows = await answered(slack, 10)
        assert all(r.delivery == "delivered" for r in rows)
        appends = []
        for i in range(10):
            channel = f"D{i:03d}"
            methods = [m for _, m in visible(slack, channel)]
            assert methods[0] == "chat.startStream" and methods[-1] == "chat.stopStream"
            assert whole(slack, channel), shown(slack, channel)
            appends.append(methods.count("chat.appendStream"))
        assert min(appends) >= 1, appends
        assert max(appends) - min(appends) <= 1, appends
        assert sum(appends) <= 12 + 2  # the budget (its refill over a few seconds aside)
        # No answer's end waits for the appends' budget: the last stop follows the last
        # token (the appends would give a slot every five seconds).
        last_stop = max(t for t, m, _, s in slack.api.log if m == "chat.stopStream")
        assert last_stop - max(model.finished) < 5.0


async def test_answers_that_arrive_late_still_get_their_turn(
    env: dict[str, str], workspace: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ten appends a minute. Five answers stream and have had their first append when five
    more arrive: those that came first do not spend the rest of the burst, so every late
    answer shows progress too, and every answer ends when its model does."""
    model = OpenAIStandIn(reply=REPLY, first_token_s=0.1, token_s=0.1)
    async with serving(
        env,
        workspace,
        monkeypatch,
        model,
        10,
        CONCIERGE_SLACK_APPENDS_PER_MIN="10",
        CONCIERGE_SLACK_STREAMS_PER_MIN="6000",
        CONCIERGE_SLACK_WRITE_INTERVAL_S="0.3",
    ) as slack:
        await ask(slack, range(5))
        deadline = time.monotonic() + 30
        while len(slack.api.called("chat.appendStream")) < 5:
            assert time.monotonic() < deadline, "the first answers never appended"
            await asyncio.sleep(0.02)
        await ask(slack, range(5, 10))
        rows = await answered(slack, 10)
        assert all(r.delivery == "delivered" for r in rows)
        for i in range(10):
            channel = f"D{i:03d}"
            methods = [m for _, m in visible(slack, channel)]
            assert methods.count("chat.appendStream") >= 1, (channel, methods)
            assert whole(slack, channel), shown(slack, channel)
        last_stop = max(t for t, m, _, s in slack.api.log if m == "chat.stopStream")
        assert last_stop - max(model.finished) < 5.0  # and none waits for a slot to end


async def test_past_tier_2_new_answers_post_and_update_instead_of_waiting_for_a_stream(
    env: dict[str, str], workspace: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two new streams a minute: of five answers at once, two stream natively and three use
    chat.postMessage + chat.update straight away; all five show the whole answer."""
    model = OpenAIStandIn(reply=REPLY, first_token_s=0.1, token_s=0.02)
    async with serving(
        env, workspace, monkeypatch, model, 5, CONCIERGE_SLACK_STREAMS_PER_MIN="2"
    ) as slack:
        await ask(slack, range(5))
        rows = await answered(slack, 5, limit_s=30)
        assert all(r.delivery == "delivered" and r.outcome == "answered" for r in rows)
        assert len(slack.api.called("chat.startStream")) == 2
        assert len(slack.api.called("chat.stopStream")) == 2
        channels = [f"D{i:03d}" for i in range(5)]
        posted = [c for c in channels if visible(slack, c)[0][1] == "chat.postMessage"]
        assert len(posted) == 3
        for i in range(5):
            assert whole(slack, f"D{i:03d}"), shown(slack, f"D{i:03d}")
        for channel in posted:
            (message,) = slack.api.in_channel(channel)
            assert message.blocks and not message.streaming


async def test_past_the_update_budget_new_answers_are_posted_whole_once(
    env: dict[str, str], workspace: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No native streams and two updates a minute: two answers show their first words and
    owe one final update each; the other three are posted whole when they end, rather than
    wait minutes for an update. Every answer ends when its model does."""
    model = OpenAIStandIn(reply=REPLY, first_token_s=0.1, token_s=0.03)
    async with serving(
        env,
        workspace,
        monkeypatch,
        model,
        5,
        CONCIERGE_SLACK_NATIVE_STREAMING="false",
        CONCIERGE_SLACK_UPDATES_PER_MIN="2",
    ) as slack:
        await ask(slack, range(5))
        rows = await answered(slack, 5, limit_s=30)
        assert all(r.delivery == "delivered" and r.outcome == "answered" for r in rows)
        assert len(slack.api.called("chat.update")) <= 2
        assert len(slack.api.called("chat.postMessage")) == 5
        for i in range(5):
            assert whole(slack, f"D{i:03d}"), shown(slack, f"D{i:03d}")
        last = max(t for t, m, _, s in slack.api.log if m.startswith("chat.") and s == 200)
        assert last - max(model.finished) < 5.0


@pytest.mark.parametrize(
    ("method", "native"),
    [
        ("chat.appendStream", True),
        ("chat.stopStream", True),
        ("chat.update", False),
        ("chat.postMessage", False),
    ],
)
async def test_a_429_pauses_its_method_for_every_answer_and_loses_no_text(
    env: dict[str, str],
    workspace: Any,
    monkeypatch: pytest.MonkeyPatch,
    method: str,
    native: bool,
) -> None:
    """Two answers at once; ``method`` is rate limited twice with Retry-After 1 s. Nobody
    calls it again before the pause is over, and both answers arrive whole."""
    model = OpenAIStandIn(reply=REPLY, first_token_s=0.1, token_s=0.02)
    async with serving(
        env,
        workspace,
        monkeypatch,
        model,
        2,
        CONCIERGE_SLACK_NATIVE_STREAMING=str(native).lower(),
        CONCIERGE_SLACK_WRITE_INTERVAL_S="0",
    ) as slack:
        slack.api.fail(method, retry_after=1, times=2)
        await ask(slack, range(2))
        rows = await answered(slack, 2, limit_s=30)
        assert all(r.delivery == "delivered" and r.outcome == "answered" for r in rows)
        for i in range(2):
            assert whole(slack, f"D{i:03d}"), shown(slack, f"D{i:03d}")
        calls = [(t, s) for t, m, _, s in slack.api.log if m == method]
        limited = [t for t, s in calls if s == 429]
        assert len(limited) == 2
        for at in limited:
            # Slack answered 429 with Retry-After: 1 at ``at``: in the next second the
            # method is called at most once more (by the other answer, if its call was
            # already on its way), never again and again.
            assert len([t for t, _ in calls if at < t < at + 0.95]) <= 1, calls
        assert calls[-1][1] == 200


async def test_a_429_on_start_stream_posts_the_answer_at_once(
    env: dict[str, str], workspace: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Slack says the new-stream budget is spent (Retry-After 30 s): the answer does not
    wait for it; it goes out with chat.postMessage + chat.update."""
    model = OpenAIStandIn(reply=REPLY, first_token_s=0.1, token_s=0.02)
    async with serving(env, workspace, monkeypatch, model, 1) as slack:
        slack.api.fail("chat.startStream", retry_after=30)
        started = time.monotonic()
        await ask(slack, range(1))
        (row,) = await answered(slack, 1, limit_s=20)
        assert time.monotonic() - started < 20
        assert row.delivery == "delivered" and whole(slack, "D000")
        assert len(slack.api.called("chat.startStream")) == 1
        assert slack.api.called("chat.postMessage")
