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
