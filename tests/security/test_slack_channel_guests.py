"""A guest who joins a channel with a channel grant closes the grant at once (#12): in the
instance that saw the join, in every other instance, and for a person who only just joined
the workspace (team_join)."""

from __future__ import annotations

import pytest

from tests.security.slack_app import instance, standin
from tests.slack_helpers import SlackDriver, mention

QUESTION = "What is the deploy freeze codeword for deploying a service?"
CANARY = "CANARY-RUNBOOK-7F3"


def in_thread(slack: SlackDriver, channel: str, ts: str) -> str:
    return "\n".join(
        m.full_text() for m in slack.api.in_channel(channel) if m.thread_ts == ts and m.blocks
    )


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_a_new_guest_who_joins_a_granted_channel_closes_its_grant_at_once(
    slack: SlackDriver, cli
) -> None:
    slack.api.channels["C4"] = {"id": "C4", "name": "deploys"}
    slack.api.channel_members = {"C4": ["UEVE"]}
    assert cli("access", "grant", "channel:deploys", "runbooks").code == 0
    await slack.event(mention("UEVE", QUESTION, "10.1", channel="C4"))
    await slack.settle()
    assert CANARY in in_thread(slack, "C4", "10.1")  # a channel of members: the grant counts
    # A guest is invited to the workspace and straight into #deploys.
    slack.api.add_user("UNEWGUEST", "nina@partner.test", is_restricted=True)
    await slack.event({"type": "team_join", "user": slack.api.users["UNEWGUEST"]})
    slack.api.channel_members["C4"].append("UNEWGUEST")
    await slack.event({"type": "member_joined_channel", "channel": "C4", "user": "UNEWGUEST"})
    await slack.settle()
    await slack.event(mention("UEVE", QUESTION, "10.2", channel="C4"))
    await slack.settle()
    answer = in_thread(slack, "C4", "10.2")
    assert answer and CANARY not in answer


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_a_guest_joining_a_channel_is_seen_by_every_instance(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, redis_client, cli
) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6379/0")
    monkeypatch.setenv("CONCIERGE_REDIS_PREFIX", redis_client.test_prefix)
    assert cli("access", "grant", "channel:deploys", "runbooks").code == 0
    async with standin(monkeypatch) as api:
        api.channels["C4"] = {"id": "C4", "name": "deploys"}
        api.channel_members = {"C4": ["UEVE"]}
        async with instance(api) as a, instance(api) as b:
            await b.event(mention("UEVE", QUESTION, "20.1", channel="C4"))
            await b.settle()
            assert CANARY in in_thread(b, "C4", "20.1")
            # The guest's join reaches instance a; the next question reaches instance b.
            api.channel_members["C4"].append("UGUS")
            await a.event({"type": "member_joined_channel", "channel": "C4", "user": "UGUS"})
            await a.settle()
            await b.event(mention("UEVE", QUESTION, "20.2", channel="C4"))
            await b.settle()
            answer = in_thread(b, "C4", "20.2")
            assert answer and CANARY not in answer
