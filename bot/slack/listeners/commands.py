"""The ``/concierge`` slash command: acknowledged at once, answered after the ack."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond

from bot.slack import ids
from bot.slack.blocks import HELP
from bot.slack.deps import SlackDeps
from bot.slack.questions import answer_message

log = logging.getLogger("concierge.slack.commands")
SUBCOMMANDS = {"help", "ask"}
LATER = {"access", "report"}


def register(app: AsyncApp, deps: SlackDeps) -> None:
    @app.command(ids.COMMAND)
    async def on_command(ack: AsyncAck, command: dict[str, Any], respond: AsyncRespond) -> None:
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
        question = rest if verb == "ask" else text
        if verb not in SUBCOMMANDS and len(text.split()) == 1 and not text.endswith("?"):
            await ack(
                text=f"I don't know the command `{word[:40]}`. Ask a question with "
                f"`{ids.COMMAND} ask …`, or see `{ids.COMMAND} help`."
            )
            return
        if not question.strip():
            await ack(text=f"Ask a question after `{ids.COMMAND} ask`.")
            return
        await ack(text="Working on it — I'll answer you in a direct message.")
        opened = await deps.client.conversations_open(users=command["user_id"])
        dm = opened["channel"]["id"]
        posted = await deps.client.chat_postMessage(
            channel=dm, text=f"You asked: “{question[:300]}”", unfurl_links=False
        )
        deps.spawn(
            answer_message(
                deps,
                team=command.get("team_id", ""),
                channel=dm,
                channel_type="im",
                user=command["user_id"],
                text=question,
                ts=posted["ts"],
                thread_ts=posted["ts"],
            )
        )
