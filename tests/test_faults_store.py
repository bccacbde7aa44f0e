"""Faults of the store and of Redis lose nothing (issue 14, part A).

PostgreSQL is reached through a TCP proxy (tests/standins/tcp_proxy.py) that a test switches
to refuse, drop or hang connections; Redis is pointed at a closed port or at a hung proxy.
For each fault: the person still gets an answer (within a bounded time), what happened is
spooled, and once the database is back it is recorded exactly once (rows counted directly,
not through the proxy).
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from bot.core.sinks import CollectingSink
from bot.core.types import Question
from bot.runtime import Runtime, build_runtime
from bot.settings import Settings
from bot.store import repo
from bot.store.db import Store
from tests.standins.tcp_proxy import TcpProxy

QUESTION = "Where do I submit expenses?"


@pytest.fixture
def db_url(pg_url: str) -> str:
    """Every test here runs on PostgreSQL; ``env`` points DATABASE_URL at the proxy below."""
    return pg_url


@pytest.fixture(autouse=True)
def quick_to_give_up(monkeypatch: pytest.MonkeyPatch) -> None:
    """Database calls bounded at 2 s, so a refused or hung database (the ``proxy`` fixture of
    tests/conftest.py) is noticed quickly."""
    monkeypatch.setenv("CONCIERGE_DB_CONNECT_TIMEOUT_S", "2")
    monkeypatch.setenv("CONCIERGE_DB_TIMEOUT_S", "2")


def spool(env: dict[str, str]) -> Any:
    from bot.store.spool import Spool  # imported here: each test fails alone without it

    return Spool(Path(env["CONCIERGE_DATA_DIR"]) / "spool")


async def replay_once(runtime: Runtime, env: dict[str, str]) -> None:
    from bot.store.replay import replay

    await asyncio.to_thread(replay, runtime.store, spool(env))


def count(pg_url: str, table: str, where: str = "true") -> int:
    with psycopg.connect(pg_url, connect_timeout=3) as conn:
        row = conn.execute(f"SELECT count(*) FROM {table} WHERE {where}").fetchone()
        return int(row[0]) if row else 0


async def ask(runtime: Runtime, text: str = QUESTION, who: str = "eve@canary.test") -> Question:
    sink = CollectingSink()
    result = await runtime.pipeline.ask(Question(text=text, asker_ref=who), sink)
    assert result.outcome == "answered", (result.outcome, result.error)
    assert "Pleo" in sink.text
    return result  # type: ignore[return-value]


async def until(check, limit_s: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    """Wait for the work started (bounded), not for a quiet period."""
    deadline = time.monotonic() + limit_s
    while not check():
        assert time.monotonic() < deadline, "the expected work did not happen in time"
        await asyncio.sleep(0.05)


async def test_questions_while_the_database_refuses_are_answered_and_recorded_once_after(
    proxy: TcpProxy, env: dict[str, str], pg_url: str
) -> None:
    runtime = await build_runtime(Settings())
    try:
        await ask(runtime)  # healthy: recorded at once
        proxy.set("refuse")
        ids = [(await ask(runtime)).exchange_id for _ in range(3)]  # type: ignore[attr-defined]
        assert count(pg_url, "exchanges") == 1 and spool(env).pending() == 3
        proxy.set("pass")
        replayer = runtime.replay_spool_forever()
        try:
            await until(lambda: spool(env).pending() == 0)
        finally:
            replayer.cancel()
        assert count(pg_url, "exchanges") == 4
        assert count(pg_url, "exchanges", "labels IS NOT NULL") == 4  # labels kept through
        for exchange_id in ids:
            assert count(pg_url, "exchanges", f"id = '{exchange_id}'") == 1
        # A second replay (a crash before the spool was rewritten) writes nothing twice.
        spool(env).append("exchange", {"row": _row(pg_url, ids[0]), "audit": None})
        await replay_once(runtime, env)
        assert count(pg_url, "exchanges") == 4 and spool(env).pending() == 0
    finally:
        runtime.close()


def _row(pg_url: str, exchange_id: str) -> dict[str, object]:
    store = Store.open(pg_url, migrate=False)
    try:
        with store.session() as s:
            row = repo.get_exchange(s, exchange_id)
            assert row is not None
            return {
                c.name: (
                    getattr(row, c.name).isoformat()
                    if c.name == "created_at"
                    else getattr(row, c.name)
                )
                for c in row.__table__.columns
            }
    finally:
        store.close()


def test_ask_json_while_the_database_refuses_answers_and_the_next_command_records_it(
    proxy: TcpProxy, cli, env: dict[str, str], pg_url: str
) -> None:
    proxy.set("refuse")
    asked = []
    for _ in range(2):
        r = cli("ask", QUESTION, "--as", "eve@canary.test", "--json")
        assert r.code == 0, r.err
        data = json.loads(r.out)
        assert data["outcome"] == "answered" and "Pleo" in data["answer"]
        asked.append(data["exchange_id"])
    assert spool(env).pending() == 2
    assert spool(env).path.stat().st_mode & 0o077 == 0  # question text: the owner's alone
    assert count(pg_url, "exchanges") == 0
    proxy.set("pass")
    r = cli("ask", QUESTION, "--as", "eve@canary.test", "--json")  # replays first
    assert r.code == 0, r.err
    assert spool(env).pending() == 0
    assert count(pg_url, "exchanges") == 3
    for exchange_id in asked:
        assert count(pg_url, "exchanges", f"id = '{exchange_id}'") == 1


@pytest.mark.timeout(60)
def test_a_hung_database_still_answers_within_a_bound_and_admin_writes_fail_clearly(
    proxy: TcpProxy, cli, env: dict[str, str], pg_url: str
) -> None:
    proxy.set("hang")
    started = time.monotonic()
    r = cli("ask", QUESTION, "--as", "eve@canary.test", "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["outcome"] == "answered"
    assert time.monotonic() - started < 15
    assert spool(env).pending() == 1
    # Grants are never spooled: an admin write while the database is away is refused.
    started = time.monotonic()
    r = cli("access", "grant", "eve@canary.test", "hr-policies")
    assert r.code == 1 and "cannot reach the database" in r.err and "Traceback" not in r.err
    assert time.monotonic() - started < 15
    proxy.set("pass")
    assert cli("access", "list").code == 0  # the next command replays what waited
    assert spool(env).pending() == 0
    assert count(pg_url, "exchanges") == 1 and count(pg_url, "grants") == 0


@pytest.mark.timeout(60)
async def test_a_database_that_hangs_mid_run_answers_and_a_late_write_is_not_recorded_twice(
    proxy: TcpProxy, env: dict[str, str], pg_url: str
) -> None:
    runtime = await build_runtime(Settings())
    try:
        await ask(runtime)  # pooled connections exist now; then the server goes silent
        proxy.set("hang")
        started = time.monotonic()
        result = await ask(runtime)
        assert time.monotonic() - started < 10
        assert spool(env).pending() == 1
        proxy.set("pass")  # the hung calls now finish late
        replayer = runtime.replay_spool_forever()
        try:
            await until(lambda: spool(env).pending() == 0)
        finally:
            replayer.cancel()
        assert count(pg_url, "exchanges", f"id = '{result.exchange_id}'") == 1  # type: ignore[attr-defined]
        assert count(pg_url, "exchanges") == 2
    finally:
        runtime.close()


async def test_votes_and_denials_while_the_database_is_down_are_replayed_once_in_the_chain(
    proxy: TcpProxy, env: dict[str, str], pg_url: str, cli, workspace
) -> None:
    # The handbook for engineering only: maya (sales) may read nothing, and that is audited.
    text = workspace.config.read_text()
    workspace.config.write_text(text.replace("readers: everyone", "readers: [group:engineering]"))
    runtime = await build_runtime(Settings())
    try:
        answered = await ask(runtime)
        proxy.set("refuse")
        exchange_id = answered.exchange_id  # type: ignore[attr-defined]
        await runtime.vote(exchange_id=exchange_id, voter="eve@canary.test", vote=-1, reason="old")
        await runtime.vote(exchange_id=exchange_id, voter="eve@canary.test", vote=1)
        sink = CollectingSink()
        denied = await runtime.pipeline.ask(
            Question(text=QUESTION, asker_ref="maya@canary.test"), sink
        )
        assert denied.outcome == "refused" and denied.error == "no_access" and sink.text
        assert spool(env).pending() == 3
        proxy.set("pass")
        # Replayed as soon as the database answers again (on a loaded machine the first
        # probe may still time out: bounded retries, as serve's background task does).
        for _ in range(40):
            await replay_once(runtime, env)
            if spool(env).pending() == 0:
                break
            await asyncio.sleep(0.25)
        await replay_once(runtime, env)  # once more: nothing is written twice
    finally:
        runtime.close()
    assert count(pg_url, "feedback") == 1
    assert count(pg_url, "feedback", "vote = 1") == 1  # the later vote won
    assert count(pg_url, "exchanges", f"id = '{denied.exchange_id}'") == 1
    assert count(pg_url, "audit_log", "action = 'denied'") == 1
    r = cli("audit", "verify")
    assert r.code == 0, r.out + r.err


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.timeout(60)
def test_questions_are_answered_with_redis_at_a_closed_port_and_a_hung_one(
    cli, env: dict[str, str], monkeypatch: pytest.MonkeyPatch, pg_url: str, redis_client
) -> None:
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{_closed_port()}/0")
    r = cli("ask", QUESTION, "--as", "eve@canary.test", "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["outcome"] == "answered"
    hung = TcpProxy("127.0.0.1", 6379)
    try:
        hung.set("hang")
        monkeypatch.setenv("REDIS_URL", f"redis://{hung.address}/0")
        started = time.monotonic()
        r = cli("ask", QUESTION, "--as", "eve@canary.test", "--json")
        assert r.code == 0, r.err
        assert json.loads(r.out)["outcome"] == "answered"
        assert time.monotonic() - started < 10
    finally:
        hung.close()
    assert count(pg_url, "exchanges", "outcome = 'answered'") == 2


@pytest.fixture
def redis_at_a_closed_port(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{_closed_port()}/0")


async def _readyz(slack) -> tuple[int, dict[str, object]]:  # type: ignore[no-untyped-def]
    async with slack.session.get(slack.url + "/readyz") as r:
        return r.status, await r.json()


async def test_readyz_says_ready_when_the_database_answers_and_redis_is_off(slack) -> None:
    status, body = await _readyz(slack)
    assert status == 200
    assert body == {"ok": True, "database": "ok", "redis": "off", "spool": 0}


async def test_with_redis_down_a_dm_is_answered_once_and_readyz_says_redis_is_degraded(
    redis_at_a_closed_port: None, slack, pg_url: str
) -> None:
    from tests.slack_helpers import dm

    status, body = await _readyz(slack)
    assert status == 503
    assert body["redis"] == "down" and body["database"] == "ok" and body["ok"] is False
    event = dm("UEVE", QUESTION, "300.1")
    await slack.event(event, event_id="Ev300")
    await slack.event(event, event_id="Ev300")  # Slack's retry: claimed locally meanwhile
    await slack.until(lambda: count(pg_url, "exchanges") >= 1)
    await slack.settle()
    texts = [m.full_text() for m in slack.api.in_channel("DEVE")]
    assert len([t for t in texts if "Pleo" in t]) == 1
    assert count(pg_url, "exchanges", "outcome = 'answered'") == 1


async def test_grants_keep_serving_for_a_bounded_time_then_fail_closed(
    proxy: TcpProxy, env: dict[str, str], cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert cli("access", "grant", "eve@canary.test", "finance-notes").code == 0
    monkeypatch.setenv("CONCIERGE_ACCESS_CACHE_S", "0")  # re-read the grants on every question
    monkeypatch.setenv("CONCIERGE_GRANTS_STALE_S", "2")
    finance = "Who approves expenses above 1,000 EUR, directors or the CFO?"

    async def searched() -> list[str]:
        sink = CollectingSink()
        result = await runtime.pipeline.ask(
            Question(text=finance, asker_ref="eve@canary.test"), sink
        )
        assert result.outcome == "answered", result.error
        return list(result.sources_searched)

    runtime = await build_runtime(Settings())
    try:
        assert "finance-notes" in await searched()
        proxy.set("refuse")
        assert "finance-notes" in await searched()  # the grants last read, still fresh
        deadline = time.monotonic() + 15
        while "finance-notes" in await searched():  # until they are too old to trust
            assert time.monotonic() < deadline, "stale grants were served past their bound"
            await asyncio.sleep(0.2)
        assert "handbook" in await searched()  # the config's readers still count
    finally:
        runtime.close()


async def test_a_refused_admin_command_while_the_database_is_down_is_audited_once_after(
    proxy: TcpProxy, slack, env: dict[str, str], pg_url: str, cli
) -> None:
    await slack.command("UEVE", "access who-can finance-notes")  # healthy: audited at once
    await slack.settle()
    proxy.set("refuse")
    await slack.command("UEVE", "access grant <@UEVE> finance-notes because I want it")
    await slack.until(lambda: spool(env).pending() == 1)
    texts = [c.get("text", "") for c in slack.api.called("chat.postEphemeral")]
    assert len(texts) == 2 and all("Only admins" in t for t in texts)
    proxy.set("pass")
    await replay_once(slack.deps.runtime, env)
    await replay_once(slack.deps.runtime, env)
    assert count(pg_url, "audit_log", "action = 'refused'") == 2
    assert count(pg_url, "grants") == 0
    r = cli("audit", "verify")
    assert r.code == 0, r.out + r.err


async def test_a_draft_held_for_review_while_the_database_is_down_is_stored_once_after(
    proxy: TcpProxy, env: dict[str, str], pg_url: str, cli
) -> None:
    assert cli("access", "grant", "eve@canary.test", "hr-policies").code == 0
    runtime = await build_runtime(Settings())
    try:
        await ask(runtime)  # the grants are read (and kept while the database is away)
        proxy.set("refuse")
        sink = CollectingSink()
        question = "How does parental leave top-up pay work with payroll?"
        result = await runtime.pipeline.ask(
            Question(text=question, asker_ref="eve@canary.test"), sink
        )
        assert result.outcome == "pending_review" and "review" in sink.text
        assert spool(env).pending() == 2  # the exchange, then its held draft
        announced: list[int] = []

        async def reviewers_told(review) -> None:  # type: ignore[no-untyped-def]
            announced.append(review.id)

        runtime.reviews.listeners.append(reviewers_told)
        proxy.set("pass")
        replayer = runtime.replay_spool_forever()
        try:
            await until(lambda: bool(announced))  # stored, then the reviewers are told
        finally:
            replayer.cancel()
        await replay_once(runtime, env)
        assert len(announced) == 1 and announced[0] is not None
    finally:
        runtime.close()
    where = f"exchange_id = '{result.exchange_id}' AND kind = 'draft' AND labels IS NOT NULL"
    assert count(pg_url, "reviews", where) == 1
    assert count(pg_url, "audit_log", "action = 'review.draft'") == 1
    r = cli("audit", "verify")
    assert r.code == 0, r.out + r.err


async def test_a_thumbs_down_while_the_database_is_down_reaches_the_owners_once_after(
    proxy: TcpProxy, env: dict[str, str], pg_url: str, cli
) -> None:
    runtime = await build_runtime(Settings())
    try:
        result = await ask(runtime)  # recorded while healthy
        proxy.set("refuse")
        await runtime.vote(exchange_id=result.exchange_id, voter="eve@canary.test", vote=-1)  # type: ignore[attr-defined]
        item = await runtime.reviews.feedback(
            result.exchange_id,  # type: ignore[attr-defined]
            "eve@canary.test",
            "wrong: the limit changed",
        )
        assert item is None and spool(env).pending() == 2  # the vote, then the owners' item
        announced: list[Any] = []

        async def owners_told(review) -> None:  # type: ignore[no-untyped-def]
            announced.append(review)

        runtime.reviews.listeners.append(owners_told)
        proxy.set("pass")
        replayer = runtime.replay_spool_forever()
        try:
            await until(lambda: bool(announced))
        finally:
            replayer.cancel()
        # Replaying the same entry again (a crash before the spool was rewritten) adds nothing.
        from bot.store.replay import replay

        spool(env).append(
            "feedback",
            {
                "exchange_id": result.exchange_id,  # type: ignore[attr-defined]
                "voter": "eve@canary.test",
                "reason": "wrong: the limit changed",
            },
            _feedback_spool_id(pg_url),
        )
        from bot.core.review import feedback_handler

        await asyncio.to_thread(
            replay, runtime.store, spool(env), None, {"feedback": feedback_handler(runtime.config)}
        )
        assert len(announced) == 1 and announced[0].kind == "feedback"
        assert announced[0].reason == "wrong: the limit changed"
    finally:
        runtime.close()
    where = f"exchange_id = '{result.exchange_id}' AND kind = 'feedback'"  # type: ignore[attr-defined]
    assert count(pg_url, "reviews", where) == 1
    assert count(pg_url, "feedback", "vote = -1") == 1
    assert count(pg_url, "audit_log", "action = 'review.feedback'") == 1
    assert not spool(env).failed_path.exists()
    r = cli("audit", "verify")
    assert r.code == 0, r.out + r.err


def _feedback_spool_id(pg_url: str) -> str:
    with psycopg.connect(pg_url, connect_timeout=3) as conn:
        row = conn.execute(
            "SELECT details->>'spool_id' FROM audit_log WHERE action = 'review.feedback'"
        ).fetchone()
    assert row and row[0], "the replayed item's audit row names its spool entry"
    return str(row[0])


async def test_a_vote_waits_in_the_spool_for_an_exchange_another_instance_still_spools(
    env: dict[str, str], pg_url: str
) -> None:
    """Two instances, one data directory each: the answer was spooled by one, the vote by
    the other. The vote is kept (not set aside as failed) until its exchange is written."""
    runtime = await build_runtime(Settings())
    try:
        from bot.store.replay import replay

        vote = {
            "exchange_id": "ex-from-the-other-instance",
            "voter": "eve@canary.test",
            "vote": 1,
            "reason": None,
            "category": None,
        }
        spool(env).append("vote", vote)
        assert await asyncio.to_thread(replay, runtime.store, spool(env)) == 0
        assert spool(env).pending() == 1 and not spool(env).failed_path.exists()
        # The other instance's spool is replayed: the exchange exists now, the vote follows.
        result = await ask(runtime)
        spool(env).append("vote", {**vote, "exchange_id": result.exchange_id})  # type: ignore[attr-defined]
        assert await asyncio.to_thread(replay, runtime.store, spool(env)) == 1
        assert spool(env).pending() == 1  # the first still waits for its exchange
        assert count(pg_url, "feedback") == 1
    finally:
        runtime.close()


async def test_an_item_written_from_the_spool_at_start_up_is_announced_once_serve_runs(
    env: dict[str, str], pg_url: str
) -> None:
    runtime = await build_runtime(Settings())
    try:
        result = await ask(runtime)
    finally:
        runtime.close()
    item = {"exchange_id": result.exchange_id, "voter": "eve@canary.test", "reason": "outdated"}  # type: ignore[attr-defined]
    spool(env).append("feedback", item)  # left by a run that stopped while the database was away
    runtime = await build_runtime(Settings())  # replays it before any front end exists
    try:
        assert spool(env).pending() == 0
        announced: list[Any] = []

        async def owners_told(review) -> None:  # type: ignore[no-untyped-def]
            announced.append(review)

        runtime.reviews.listeners.append(owners_told)
        replayer = runtime.replay_spool_forever()
        try:
            await until(lambda: bool(announced))
        finally:
            replayer.cancel()
        assert [r.reason for r in announced] == ["outdated"]
    finally:
        runtime.close()
    assert count(pg_url, "reviews", "kind = 'feedback'") == 1
