"""The ``/concierge`` slash command: acknowledged at once, answered after the ack."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond
from slack_bolt.context.async_context import AsyncBoltContext

from bot.core.admin import AccessAdmin
from bot.core.identity import DirectoryResolver
from bot.errors import UsageError
from bot.slack import ids
from bot.slack.access_command import NeedsConfirmation, confirm_blocks, run_access
from bot.slack.access_requests import request_access
from bot.slack.actors import member_email
from bot.slack.arrival import arrived
from bot.slack.blocks import HELP
from bot.slack.calls import patiently
from bot.slack.deps import SlackDeps
from bot.slack.directory import in_workspace
from bot.slack.questions import answer_message, channel_name
from bot.slack.replay import once
from bot.slack.report import send_report
from bot.slack.text import escape, question_text

log = logging.getLogger("concierge.slack.commands")
SUBCOMMANDS = {"help", "ask", "access", "report"}
LATER: set[str] = set()
NO_DM = (
    "Slack is too busy right now for me to open a direct message with you, so I couldn't "
    "answer. Please ask again in a minute."
)


def register(app: AsyncApp, deps: SlackDeps) -> None:
    @app.command(ids.COMMAND)
    async def on_command(
        ack: AsyncAck, command: dict[str, Any], respond: AsyncRespond, context: AsyncBoltContext
    ) -> None:
        text = " ".join(str(command.get("text") or "").split())
        word, _, rest = text.partition(" ")
        verb = word.lower()
        if not text or verb == "help":
            await ack(text=HELP)
            return
        if verb in LATER:
            await ack(
                text=f"`{ids.COMMAND} {verb}` isn't available in this version yet. "
                f"Try `{ids.COMMAND} help`."
            )
            return
        if verb == "access":
            await ack()
            deps.spawn(once(context, access(deps, command, rest)))
            return
        if verb == "report":
            await ack()
            deps.spawn(once(context, report(deps, command, rest)))
            return
        # As in messages: mentions made readable, Slack's escaping undone (re-escaped below
        # wherever the question is shown).
        question = question_text(rest if verb == "ask" else text, None)
        if verb not in SUBCOMMANDS and len(text.split()) == 1 and not text.endswith("?"):
            await ack(
                text=f"I don't know the command `{escape(word[:40])}`. Ask a question with "
                f"`{ids.COMMAND} ask …`, or see `{ids.COMMAND} help`."
            )
            return
        if not question.strip():
            await ack(text=f"Ask a question after `{ids.COMMAND} ask`.")
            return
        await ack(text="Working on it — I'll answer you in a direct message.")
        deps.spawn(once(context, ask_in_dm(deps, command, question, respond, arrived(context))))


async def ask_in_dm(
    deps: SlackDeps,
    command: dict[str, Any],
    question: str,
    respond: AsyncRespond,
    received_at: float | None = None,
) -> None:
    """After the ack: open the asker's DM, repeat the question there and answer it in its
    thread. Slack's rate limits and blips are waited out (within a bound); if the DM still
    cannot be opened, the asker is told to ask again, and nothing raises."""
    user = str(command.get("user_id") or "")
    try:
        opened = await patiently(lambda: deps.client.conversations_open(users=user))
        dm = opened["channel"]["id"]
        posted = await patiently(
            lambda: deps.client.chat_postMessage(
                channel=dm, text=f"You asked: “{escape(question[:300])}”", unfurl_links=False
            )
        )
    except Exception as exc:
        log.error("could not open a DM to answer /concierge ask (%s)", exc.__class__.__name__)
        with contextlib.suppress(Exception):
            await respond(text=NO_DM, response_type="ephemeral", replace_original=False)
        return
    await answer_message(
        deps,
        team=str(command.get("team_id") or ""),
        channel=dm,
        channel_type="im",
        user=user,
        text=question,
        ts=posted["ts"],
        thread_ts=posted["ts"],
        received_at=received_at,
    )


async def person_known(deps: SlackDeps, email: str) -> bool:
    """Whether ``email`` is someone's: in the config's people, or a user of this Slack
    workspace (users.lookupByEmail). When Slack cannot say, no (the admin is asked)."""
    if email in DirectoryResolver(deps.runtime.config).known:
        return True
    return await in_workspace(deps.client, email)


async def access(deps: SlackDeps, command: dict[str, Any], text: str) -> None:
    """Run an access subcommand after the ack; the reply is ephemeral (a grant that needs
    confirming gets its warnings with a *Grant anyway* button)."""
    also: frozenset[str] = frozenset()
    if deps.runtime.config.slack_admins:
        with contextlib.suppress(Exception):  # unknown to Slack: the refusal says why later
            asker = await deps.identity.resolve(command["user_id"])
            if asker.workspace_admin:
                also = frozenset({asker.email})
    admin = AccessAdmin(deps.runtime.store, deps.runtime.config, also_admins=also)

    async def resolve(user_id: str) -> str:
        try:
            return (await deps.identity.resolve(user_id)).email
        except UsageError:
            raise UsageError(
                f"I couldn't find the email address of <@{user_id}> in Slack."
            ) from None

    try:
        if text.split()[:1] == ["request"]:
            reply = await request_access(
                deps, user_id=command["user_id"], text=text[len("request") :]
            )
        else:
            reply = await run_access(
                text,
                actor_id=command["user_id"],
                admin=admin,
                resolve=resolve,
                member=lambda uid, op: member_email(deps, uid, op),
                channel_name=lambda cid: channel_name(deps, cid),
                known=lambda email: person_known(deps, email),
            )
    except NeedsConfirmation as exc:
        await deps.client.chat_postEphemeral(
            channel=command.get("channel_id", ""),
            user=command["user_id"],
            text=str(exc),
            blocks=confirm_blocks(exc),
        )
        return
    except UsageError as exc:
        reply = str(exc)
    except Exception:
        log.exception("access command failed")
        reply = "Sorry, that didn't work because of an error on my side. It has been logged."
    await deps.client.chat_postEphemeral(
        channel=command.get("channel_id", ""), user=command["user_id"], text=reply
    )


async def report(deps: SlackDeps, command: dict[str, Any], text: str) -> None:
    """Owners only; the report itself goes to the owner's DM."""
    try:
        reply = await send_report(deps, user_id=command["user_id"], text=text)
    except UsageError as exc:
        reply = str(exc)
    except Exception:
        log.exception("report command failed")
        reply = "Sorry, the report failed because of an error on my side. It has been logged."
    await deps.client.chat_postEphemeral(
        channel=command.get("channel_id", ""), user=command["user_id"], text=reply
    )
