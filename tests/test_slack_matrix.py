"""Invariants 1 and 2 through the real Slack endpoint: people x sources x audiences (DM,
public channel, assistant thread), a canary in every restricted document, checked in every
message posted, every prompt sent to the model and every log line."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from bot.config import ModelSpec
from bot.core.generate import ModelRouter
from bot.core.models import RegisteredModel
from tests.conftest import PROBES
from tests.slack_helpers import dm, mention
from tests.test_access_matrix import MAY_READ, allowed
from tests.test_pipeline import RecordingOffline

PEOPLE = {
    "UEVE": "eve@canary.test",
    "USAM": "sam@canary.test",
    "UHANA": "hana@canary.test",
    "UFIN": "fin@canary.test",
    "UMAYA": "maya@canary.test",
    "UGUS": "gus@partner.test",
}


@pytest.mark.parametrize("user", sorted(PEOPLE))
async def test_no_canary_reaches_anyone_not_allowed(slack: Any, caplog: Any, user: str) -> None:
    caplog.set_level(logging.DEBUG)
    email = PEOPLE[user]
    slack.api.add_user("USAM", "sam@canary.test")
    slack.api.add_user("UFIN", "fin@canary.test")
    slack.api.usergroups = []  # groups come from the config here
    model = RecordingOffline(prompts=[])
    slack.deps.runtime.pipeline.deps.router = ModelRouter(
        [RegisteredModel(ModelSpec(name="offline", provider="offline"), model)]
    )
    for i, (question, (_, canary)) in enumerate(PROBES.items()):
        model.prompts.clear()
        await slack.event(dm(user, question, f"{i}.1"))  # DM
        await slack.event(dm(user, question, f"{i}.3", thread_ts=f"{i}.2"))  # assistant thread
        await slack.event(mention(user, question, f"{i}.4"))  # public channel
        await slack.settle()
        everything = slack.api.everything_posted() + "\n".join(model.prompts) + caplog.text
        if not allowed(email, canary):
            assert canary not in everything, (email, question)
        channel = "\n".join(m.full_text() for m in slack.api.in_channel("C1"))
        assert canary not in channel, (email, question)  # restricted: never in a channel
    if MAY_READ[email] - {"handbook"}:
        # Those who may read something restricted got it privately at least once.
        private = "\n".join(m.full_text() for m in slack.api.messages.values() if m.channel != "C1")
        assert any(c in private for _, c in PROBES.values())


async def test_a_channel_with_a_guest_uses_only_what_everyone_may_read(
    slack: Any, cli: Any
) -> None:
    """runbooks is granted to two channels; the one a guest reads gets no runbook text, the
    other does, and the moment the guest joins the other channel it gets none either."""
    question, canary = (
        "What is the deploy freeze codeword for deploying a service?",
        "CANARY-RUNBOOK-7F3",
    )
    slack.api.channels.update(
        {"C3": {"id": "C3", "name": "partners"}, "C4": {"id": "C4", "name": "deploys"}}
    )
    slack.api.channel_members = {"C3": ["UEVE", "UGUS"], "C4": ["UEVE"]}
    assert cli("access", "grant", "channel:partners", "runbooks").code == 0
    assert cli("access", "grant", "channel:deploys", "runbooks").code == 0
    await slack.event(mention("UEVE", question, "50.1", channel="C3"))
    await slack.event(mention("UEVE", question, "50.2", channel="C4"))
    await slack.settle()
    partners = "\n".join(m.full_text() for m in slack.api.in_channel("C3"))
    deploys = "\n".join(m.full_text() for m in slack.api.in_channel("C4"))
    assert canary not in partners and canary in deploys
    # eve may read runbooks herself: she gets the fuller answer privately.
    assert canary in "\n".join(m.full_text() for m in slack.api.in_channel("DEVE"))
    # The guest joins #deploys: from the next question on, it is a channel with a guest.
    slack.api.channel_members["C4"].append("UGUS")
    await slack.event({"type": "member_joined_channel", "channel": "C4", "user": "UGUS"})
    await slack.event(mention("UEVE", question, "50.3", channel="C4"))
    await slack.settle()
    latest = [m for m in slack.api.in_channel("C4") if m.thread_ts == "50.3"]
    assert latest and canary not in "\n".join(m.full_text() for m in latest)
