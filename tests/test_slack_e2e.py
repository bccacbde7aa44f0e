"""End to end over real sockets: the app served over HTTP, signed requests, the real
slack_sdk client talking to a local Slack Web API stand-in, the offline model."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from sqlalchemy import select

from bot.store.models import Exchange, Feedback
from tests.slack_helpers import SlackDriver, dm, mention, sign
from tests.standins import slack_api


def exchanges(slack: SlackDriver) -> list[Exchange]:
    with slack.deps.runtime.store.session() as s:
        return list(s.scalars(select(Exchange).order_by(Exchange.created_at)))


def answers_in(slack: SlackDriver, channel: str) -> list[slack_api.Message]:
    return [m for m in slack.api.in_channel(channel) if m.blocks]


async def test_a_direct_message_is_answered_in_its_thread_with_sources_and_feedback(slack) -> None:
    status, _, _ = await slack.event(
        dm("UEVE", "How many days of time off can I carry over?", "100.1")
    )
    assert status == 200
    await slack.settle()
    (answer,) = answers_in(slack, "DEVE")
    assert answer.thread_ts == "100.1"
    assert "carry over five days" in answer.full_text()
    assert "Sources:" in answer.full_text() and "handbook" in answer.full_text()
    feedback = [b for b in answer.blocks if b["type"] == "context_actions"]
    assert feedback and feedback[0]["elements"][0]["type"] == "feedback_buttons"
    (row,) = exchanges(slack)
    assert row.surface == "slack" and row.asker == "eve@canary.test" and row.asker_ref == "UEVE"
    assert row.channel == "DEVE" and row.thread == "100.1" and row.outcome == "answered"


async def test_streaming_starts_with_the_first_words_then_grows(slack) -> None:
    await slack.event(dm("UEVE", "How many days of time off can I carry over?", "100.2"))
    await slack.settle()
    starts = slack.api.called("chat.startStream")
    appends = slack.api.called("chat.appendStream")
    assert starts and len(starts[0]["markdown_text"]) < 60  # not a 256-character buffer
    (stop,) = slack.api.called("chat.stopStream")  # with the rest of the text, if any
    streamed = starts[0]["markdown_text"] + "".join(a["markdown_text"] for a in appends)
    streamed += stop.get("markdown_text") or ""
    (row,) = exchanges(slack)
    assert streamed.replace("&amp;", "&") == row.answer


async def test_chat_update_fallback_when_native_streaming_is_unavailable(slack) -> None:
    slack.api.native_streaming = False
    await slack.event(dm("UEVE", "Where do I submit expenses?", "100.3"))
    await slack.settle()
    (answer,) = answers_in(slack, "DEVE")
    assert "Pleo" in answer.full_text()
    (row,) = exchanges(slack)
    assert row.answer and row.answer.split(". [")[0] in answer.full_text()


async def test_a_minimal_slack_api_without_streaming_or_directory_still_gets_answers(slack) -> None:
    slack.api.missing |= {
        "chat.startStream",
        "conversations.info",
        "usergroups.list",
        "assistant.threads.setStatus",
    }
    await slack.event(mention("UEVE", "Where do I submit expenses?", "150.1"))
    await slack.settle()
    (answer,) = answers_in(slack, "C1")
    assert "Pleo" in answer.full_text()


async def test_url_verification_challenge(slack) -> None:
    body = json.dumps({"type": "url_verification", "token": "t", "challenge": "c-123"})
    status, text, _ = await slack.post(body, "application/json")
    assert status == 200 and "c-123" in text


@pytest.mark.parametrize("method", ["chat.appendStream", "chat.update"])
async def test_a_429_never_loses_text(slack, method: str) -> None:
    if method == "chat.update":
        slack.api.native_streaming = False
    slack.api.fail(method, retry_after=1, times=2)
    await slack.event(dm("UEVE", "How many days of time off can I carry over?", "100.4"))
    await slack.settle()
    (row,) = exchanges(slack)
    (answer,) = answers_in(slack, "DEVE")
    text = answer.full_text().replace("&amp;", "&")
    for sentence in row.answer.split(" [1]"):
        assert sentence.strip() in text


async def test_a_retried_event_and_a_double_delivery_are_answered_once(slack) -> None:
    event = dm("UEVE", "Where do I submit expenses?", "100.5")
    await slack.event(event, event_id="EvSAME")
    await slack.event(
        event,
        event_id="EvSAME",
        headers={"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"},
    )
    # The same message also delivered as an app_mention (another event id):
    await slack.event({**event, "type": "app_mention"}, event_id="EvOTHER")
    await slack.settle()
    assert len(exchanges(slack)) == 1
    assert len(answers_in(slack, "DEVE")) == 1


async def test_bad_signature_and_stale_requests_are_refused_without_work(slack) -> None:
    body = json.dumps(
        {
            "type": "event_callback",
            "event_id": "EvBAD",
            "team_id": "T1",
            "event": dm("UEVE", "Where do I submit expenses?", "100.6"),
        }
    )
    status, _, _ = await slack.post(body, "application/json", signed=sign(body, secret="wrong"))
    assert status == 401
    stale = sign(body, timestamp=int(time.time()) - 600)
    status, _, _ = await slack.post(body, "application/json", signed=stale)
    assert status == 401
    status, _, _ = await slack.post(body, "application/json", signed={})
    assert status == 401
    await slack.settle()
    assert exchanges(slack) == []
    assert not slack.api.called("chat.postMessage") and not slack.api.called("chat.startStream")


async def test_a_replayed_command_does_nothing_twice(slack) -> None:
    from urllib.parse import urlencode

    body = urlencode(
        {
            "command": "/concierge",
            "text": "ask Where do I submit expenses?",
            "user_id": "UEVE",
            "team_id": "T1",
            "channel_id": "C1",
            "trigger_id": "t",
            "response_url": "http://127.0.0.1:9/x",
        }
    )
    headers = sign(body)
    first = await slack.post(body, "application/x-www-form-urlencoded", signed=headers)
    again = await slack.post(body, "application/x-www-form-urlencoded", signed=headers)
    assert first[0] == 200 and again[0] == 200
    assert "direct message" in first[1]
    await slack.settle()
    assert len(exchanges(slack)) == 1


async def test_audience_rule_keeps_private_sources_out_of_the_channel(slack) -> None:
    q = "How does parental leave top-up pay work with payroll?"
    await slack.event(mention("UHANA", q, "200.1"))
    await slack.settle()
    channel_text = "\n".join(m.full_text() for m in slack.api.in_channel("C1"))
    assert "CANARY-HR-22C" not in channel_text
    assert "sent to you privately" in channel_text
    private = "\n".join(m.full_text() for m in slack.api.in_channel("DHANA"))
    assert "CANARY-HR-22C" in private
    rows = exchanges(slack)
    assert [(r.channel, r.audience) for r in rows] == [
        ("C1", "channel:general"),
        ("DHANA", "private"),
    ]
    assert rows[0].sources_withheld == ["hr-policies"]
    # A follow-up in the public thread never carries the private part as context.
    await slack.event(
        mention("UHANA", "and what code does payroll use?", "200.2", thread_ts="200.1")
    )
    await slack.settle()
    channel_text = "\n".join(m.full_text() for m in slack.api.in_channel("C1"))
    assert "CANARY-HR-22C" not in channel_text


async def test_guests_get_public_sources_only_and_no_mentions_leak(slack) -> None:
    await slack.event(
        dm("UGUS", "What is the deploy freeze codeword for deploying a service?", "300.1")
    )
    await slack.settle()
    assert "CANARY-RUNBOOK-7F3" not in slack.api.everything_posted()
    (row,) = exchanges(slack)
    assert row.asker == "gus@partner.test" and "runbooks" not in row.sources_searched


async def test_external_slack_connect_users_are_guests(slack) -> None:
    await slack.event(
        dm("UEXT", "What is the deploy freeze codeword for deploying a service?", "300.2")
    )
    await slack.settle()
    assert "CANARY-RUNBOOK-7F3" not in slack.api.everything_posted()
    (row,) = exchanges(slack)
    assert "runbooks" not in row.sources_searched


@pytest.fixture
def bound_finance(workspace) -> None:  # type: ignore[no-untyped-def]
    """The config binds the Slack user group S1 to its finance group (before the app starts)."""
    workspace.config.write_text(workspace.config.read_text() + "slack_groups: {finance: [S1]}\n")


async def test_slack_user_groups_count_as_the_groups_the_config_binds(
    bound_finance: None, slack
) -> None:
    q = "Who approves expenses above 1,000 EUR, directors or the CFO?"
    await slack.event(dm("UMAYA", q, "400.1"))
    await slack.settle()
    assert "CANARY-FIN-5D1" in slack.api.everything_posted()


async def test_document_text_cannot_ping_a_channel(slack, workspace) -> None:
    workspace.write(
        "handbook",
        "evil.md",
        "---\ntitle: Fire drill\n---\nDuring the fire drill "
        "<!channel> and <@U999> must leave; see <https://evil.test|the handbook>.\n",
    )
    await slack.event(mention("UEVE", "What happens during the fire drill?", "500.1"))
    await slack.settle()
    posted = [
        p.get("markdown_text", "") + p.get("text", "") + json.dumps(p.get("blocks") or [])
        for m, p in slack.api.calls
        if m.startswith("chat.")
    ]
    joined = "\n".join(posted)
    assert "fire drill" in joined.lower()
    assert "<!channel>" not in joined and "<@U999>" not in joined and "<https://evil" not in joined
    assert all(
        p.get("unfurl_links") in (None, False)
        for m, p in slack.api.calls
        if m == "chat.postMessage"
    )


async def test_feedback_click_and_thumbs_down_modal(slack) -> None:
    await slack.event(dm("UEVE", "Where do I submit expenses?", "600.1"))
    await slack.settle()
    (row,) = exchanges(slack)

    def click(value: str) -> dict[str, Any]:
        return {
            "type": "block_actions",
            "user": {"id": "UEVE"},
            "team": {"id": "T1"},
            "trigger_id": "trig-1",
            "actions": [
                {
                    "action_id": "concierge_feedback",
                    "block_id": f"feedback:{row.id}",
                    "type": "feedback_buttons",
                    "value": value,
                }
            ],
        }

    status, _, _ = await slack.interaction(click(f"up:{row.id}"))
    assert status == 200
    await slack.interaction(click(f"down:{row.id}"))
    await slack.settle()
    (opened,) = slack.api.called("views.open")
    view = opened["view"] if isinstance(opened["view"], dict) else json.loads(opened["view"])
    assert view["callback_id"] == "concierge_feedback_reason" and view["private_metadata"] == row.id
    submission = {
        "type": "view_submission",
        "user": {"id": "UEVE"},
        "team": {"id": "T1"},
        "view": {
            "id": "V1",
            "type": "modal",
            "callback_id": "concierge_feedback_reason",
            "private_metadata": row.id,
            "state": {
                "values": {
                    "category": {
                        "category_select": {
                            "type": "static_select",
                            "selected_option": {"value": "outdated"},
                        }
                    },
                    "details": {
                        "details_input": {
                            "type": "plain_text_input",
                            "value": "The deadline changed.",
                        }
                    },
                }
            },
        },
    }
    status, _, _ = await slack.interaction(submission)
    assert status == 200
    await slack.settle()
    with slack.deps.runtime.store.session() as s:
        votes = list(s.scalars(select(Feedback)))
    assert len(votes) == 1
    assert (votes[0].voter, votes[0].vote, votes[0].category, votes[0].reason) == (
        "eve@canary.test",
        -1,
        "outdated",
        "The deadline changed.",
    )


async def test_assistant_thread_prompts_status_and_follow_up(slack) -> None:
    await slack.event(
        {
            "type": "assistant_thread_started",
            "assistant_thread": {"user_id": "UEVE", "channel_id": "DEVE", "thread_ts": "700.0"},
        }
    )
    await slack.event(dm("UEVE", "How many days of time off can I carry over?", "700.1", "700.0"))
    await slack.settle()
    await slack.event(dm("UEVE", "and until which date?", "700.2", "700.0"))
    await slack.settle()
    assert slack.api.called("assistant.threads.setSuggestedPrompts")
    statuses = [c["status"] for c in slack.api.called("assistant.threads.setStatus")]
    assert "is thinking…" in statuses and "" in statuses
    assert slack.api.called("assistant.threads.setTitle")
    rows = exchanges(slack)
    assert len(rows) == 2 and rows[1].thread == "700.0"
    assert "31 March" in (rows[1].answer or "")


async def test_edited_bot_and_own_messages_are_ignored(slack) -> None:
    await slack.event({**dm("UEVE", "edited?", "800.1"), "subtype": "message_changed"})
    await slack.event({**dm("UEVE", "from a bot", "800.2"), "bot_id": "B9"})
    await slack.event(dm("UBOT", "my own words", "800.3"))
    await slack.settle()
    assert exchanges(slack) == []


async def test_errors_get_a_friendly_reply_never_silence(slack) -> None:
    await slack.event(dm("UNOMAIL", "Where do I submit expenses?", "900.1"))
    status, body, _ = await slack.command("UEVE", "frobnicate")
    assert status == 200 and "don't know the command" in body
    status, body, _ = await slack.command("UEVE", "help")
    assert "/concierge" in body
    await slack.settle()
    text = slack.api.everything_posted()
    assert "email address" in text
    assert "Traceback" not in text


async def test_healthz(slack) -> None:
    async with slack.session.get(slack.url + "/healthz") as r:
        assert r.status == 200 and (await r.json())["ok"] is True
