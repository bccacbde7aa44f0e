"""Until auth.test tells the bot its own team, nobody is a member of it (#5).

If auth.test fails at start, accounts of other teams cannot be told from ours: everyone is
treated as an external guest (public sources only, no admin powers), and the team is asked
again, with a backoff, by later requests until auth.test succeeds.
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from tests.security.slack_app import grants, instance, posted_in, replies, standin
from tests.slack_helpers import dm

QUESTION = "What is the deploy freeze codeword for deploying a service?"
CANARY = "CANARY-RUNBOOK-7F3"  # runbooks: group:engineering (eve)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_an_external_account_is_not_a_member_while_our_team_is_unknown(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="concierge.slack.identity")
    async with standin(monkeypatch) as api:
        api.fail("auth.test", status=500, times=1)  # at start
        api.add_user("UFAKEADA", "ada@canary.test", team_id="T9")
        api.add_user("UADA", "ada@canary.test")
        async with instance(api) as slack:
            # A Slack Connect account showing eve's email gets no engineering sources...
            await slack.event(dm("UEXT", QUESTION, "1.1"))
            # ...and nor does eve herself, nor can anyone use admin powers, for now.
            await slack.event(dm("UEVE", QUESTION, "1.2"))
            await slack.command("UFAKEADA", "access grant <@UEXT> runbooks")
            await slack.command("UADA", "access grant <@UEVE> finance-notes")
            await slack.settle()
            assert CANARY not in posted_in(slack, "DEXT")
            assert CANARY not in posted_in(slack, "DEVE")
            assert "Answered by" in posted_in(slack, "DEVE")  # still answered, publicly
            assert grants(slack) == []
            texts = replies(slack)
            assert len(texts) == 2 and all("Only full members" in t for t in texts)
            # After the backoff the next request asks again (and fails again), then after a
            # longer backoff once more, and auth.test succeeds.
            api.fail("auth.test", status=500, times=1)
            await asyncio.sleep(1.1)
            await slack.event(dm("UEXT", QUESTION, "2.1"))
            await slack.settle()
            await asyncio.sleep(2.1)
            await slack.event(dm("UEVE", QUESTION, "2.2"))
            await slack.settle()
            await slack.event(dm("UEXT", QUESTION, "2.3"))
            await slack.settle()
            # Ours at start and our two retries: no more (Bolt makes none of its own: its
            # authorize uses ours, so no ack waits for auth.test).
            assert len(api.called("auth.test")) == 3
            assert CANARY in posted_in(slack, "DEVE")
            assert CANARY not in posted_in(slack, "DEXT")
            await slack.command("UADA", "access grant <@UEVE> finance-notes")
            await slack.settle()
            assert grants(slack) == [("user:eve@canary.test", "finance-notes")]
    # Said clearly in the log, each time it fails.
    failed = [r for r in caplog.records if "auth.test failed" in r.getMessage()]
    assert len(failed) == 2 and "external guest" in failed[0].getMessage()
