"""Effective access is cached, and the cache never outlives a change: a grant or revocation
from another process, a grant's expiry, a Slack identity change seen by another instance.
Two approvers deciding one request at once make exactly one grant."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from bot.config import load_config
from bot.core.admin import AccessAdmin, Requests
from bot.core.sinks import CollectingSink
from bot.core.types import Question
from bot.errors import UsageError
from bot.runtime import build_runtime
from bot.settings import Settings
from bot.store.db import Store
from bot.store.models import AuditEvent, Grant
from tests.test_access_requests import make_requestable

FINANCE_Q = "Who approves expenses above 1,000 EUR, directors or the CFO?"
FINANCE_CANARY = "CANARY-FIN-5D1"


async def answer(runtime: Any, who: str = "eve@canary.test") -> str:
    sink = CollectingSink()
    result = await runtime.pipeline.ask(Question(FINANCE_Q, who), sink)
    return result.answer


async def test_a_change_from_another_process_applies_to_the_next_question(cli, env) -> None:
    runtime = await build_runtime(Settings())
    try:
        assert FINANCE_CANARY not in await answer(runtime)
        assert FINANCE_CANARY not in await answer(runtime)
        loads = runtime.grant_cache.loads
        assert loads == 1  # the second question was served from the cache
        assert cli("access", "grant", "eve@canary.test", "finance-notes").code == 0
        assert FINANCE_CANARY in await answer(runtime)  # the very next question
        assert cli("access", "revoke", "eve@canary.test", "finance-notes").code == 0
        assert FINANCE_CANARY not in await answer(runtime)
        assert runtime.grant_cache.loads == loads + 2
    finally:
        runtime.close()


async def test_a_cached_grant_stops_working_at_its_expiry(env) -> None:
    runtime = await build_runtime(Settings())
    try:
        with runtime.store.session() as s:
            s.add(
                Grant(
                    principal="user:eve@canary.test",
                    target="finance-notes",
                    granted_by="ada@canary.test",
                    expires_at=datetime.now(UTC) + timedelta(seconds=1.5),
                )
            )
        assert FINANCE_CANARY in await answer(runtime)
        await asyncio.sleep(1.6)  # no audit row, no other change: only the clock
        assert FINANCE_CANARY not in await answer(runtime)
    finally:
        runtime.close()


def test_two_approvers_at_once_make_one_grant(cli, workspace, env) -> None:
    make_requestable(workspace)
    assert (
        cli(
            "access", "request", "finance-notes", "--because", "close", "--as", "eve@canary.test"
        ).code
        == 0
    )
    config = load_config(env["CONCIERGE_CONFIG"])
    store = Store.open(env["DATABASE_URL"])
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def approve(actor: str) -> None:
        requests = Requests(AccessAdmin(store, config))
        barrier.wait()
        try:
            requests.decide(request_id=1, actor=actor, approve=True)
            outcomes.append("approved")
        except UsageError as exc:
            outcomes.append(str(exc))

    threads = [
        threading.Thread(target=approve, args=(a,)) for a in ("fin@canary.test", "ada@canary.test")
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    with store.session() as s:
        grants = s.scalars(select(Grant)).all()
        approvals = s.scalars(select(AuditEvent).where(AuditEvent.action == "approve")).all()
    store.close()
    assert outcomes.count("approved") == 1 and len(outcomes) == 2
    assert any("already approved" in o for o in outcomes)
    assert len(grants) == 1 and len(approvals) == 1


async def test_an_identity_change_reaches_every_instance_through_redis(
    redis_client, workspace
) -> None:
    from slack_sdk.web.async_client import AsyncWebClient

    from bot.core.versions import RedisVersion
    from bot.slack.identity import SlackIdentityResolver
    from tests.standins import slack_api
    from tests.standins.slack_api import SlackStandIn

    api = SlackStandIn()
    api.add_user("UEVE", "eve@canary.test")
    runner = await slack_api.start(api)
    try:
        workspace.config.write_text(
            workspace.config.read_text() + "slack_groups: {finance: [S1]}\n"
        )
        config = load_config(workspace.config)
        key = f"{redis_client.test_prefix}identity:version"

        def instance() -> SlackIdentityResolver:
            client = AsyncWebClient(token="xoxb-test", base_url=api.url)
            return SlackIdentityResolver(client, config, version=RedisVersion(redis_client, key))

        a, b = instance(), instance()
        assert "finance" not in (await b.resolve("UEVE")).groups
        api.usergroups = [{"id": "S1", "handle": "finance", "users": ["UEVE"]}]
        assert "finance" not in (await b.resolve("UEVE")).groups  # b's cache, for now
        await a.invalidate()  # the subteam_members_changed event reached instance a
        assert "finance" in (await b.resolve("UEVE")).groups  # b sees it on its next question
    finally:
        await runner.cleanup()
