"""Slack user groups give a config group only where the config binds them (#13): whoever may
edit a user group in Slack must not be able to give themselves a source."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from bot.store.models import Grant
from tests.security.slack_app import replies
from tests.slack_helpers import SlackDriver, dm

QUESTION = "Who approves expenses above 1,000 EUR, directors or the CFO?"
CANARY = "CANARY-FIN-5D1"  # finance-notes: group:finance


def grants(slack: SlackDriver) -> list[tuple[str, str]]:
    with slack.deps.runtime.store.session() as s:
        return [(g.principal, g.target) for g in s.scalars(select(Grant))]


@pytest.fixture
def bound(workspace: Any, request: pytest.FixtureRequest) -> str:
    """The config's slack_groups (before the app starts): none, or finance bound to S1."""
    if request.param == "S1":
        workspace.config.write_text(
            workspace.config.read_text() + "slack_groups: {finance: [S1]}\n"
        )
    return str(request.param)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("bound", ["none", "S1"], indirect=True)
async def test_a_user_group_whose_handle_names_a_config_group_gives_nothing(
    bound: str, slack: SlackDriver
) -> None:
    """Anyone can make a user group called @finance and join it; only the bound one counts."""
    slack.api.usergroups = [
        {"id": "S1", "handle": "finance-team", "users": ["UMAYA"]},
        {"id": "S2", "handle": "finance", "users": ["UEVE"]},
        {"id": "S3", "handle": "s1", "users": ["UEVE"]},  # a handle that spells a bound id
    ]
    await slack.event(dm("UEVE", QUESTION, "1.1"))
    await slack.event(dm("UMAYA", QUESTION, "1.2"))
    await slack.settle()
    assert CANARY not in "\n".join(m.full_text() for m in slack.api.in_channel("DEVE"))
    maya = "\n".join(m.full_text() for m in slack.api.in_channel("DMAYA"))
    assert (CANARY in maya) == (bound == "S1")


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("bound", ["none", "S1"], indirect=True)
async def test_a_grant_to_a_user_group_goes_to_its_bound_group_or_is_refused(
    bound: str, slack: SlackDriver
) -> None:
    slack.api.add_user("UADA", "ada@canary.test")
    await slack.command("UADA", "access grant <!subteam^S1|@finance> role:hr")
    await slack.settle()  # the replies are compared in order: the commands run side by side
    await slack.command("UADA", "access grant <!subteam^S2|@finance> role:hr")
    await slack.settle()
    texts = replies(slack, "UADA")
    if bound == "S1":
        assert grants(slack) == [("group:finance", "role:hr")]
        assert "Granted role:hr to group:finance" in texts[0]
    else:
        assert grants(slack) == []
        assert "not bound to a Concierge group" in texts[0]
    assert "@finance is not bound to a Concierge group" in texts[1]  # S2 is never bound


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_bad_slack_groups_setting_is_refused_with_its_path(cli, workspace) -> None:
    workspace.config.write_text(workspace.config.read_text() + "slack_groups: [finance]\n")
    r = cli("access", "list")
    assert r.code == 2 and "slack_groups" in r.err and "Traceback" not in r.err
    workspace.config.write_text(
        workspace.config.read_text().replace(
            "slack_groups: [finance]", "slack_groups: {finance: ['<!subteam^S1>']}"
        )
    )
    r = cli("access", "list")
    assert r.code == 2 and "slack_groups.finance" in r.err
