"""From a Slack message to a streamed, recorded answer (runs after the ack)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable

from bot.core.labels import Labels
from bot.core.types import Audience, Question, Turn
from bot.slack.calls import patiently
from bot.slack.channels import Channel
from bot.slack.dedupe import CLAIM_TTL_S
from bot.slack.deps import SlackDeps
from bot.slack.payloads import MessageEvent
from bot.slack.streaming import SlackStreamer, Target
from bot.slack.text import escape
from bot.store import repo
from bot.store.db import StoreUnavailable

log = logging.getLogger("concierge.slack.questions")

SORRY = "Sorry, something went wrong while answering. It has been logged; please try again."
UNREADABLE = (
    "I couldn't read that message: its text isn't plain text. Please send your question again."
)
RESTART = "Sorry, I'm restarting and couldn't answer this one. Please ask again in a minute."
EMPTY = "Ask me a question after the mention, for example: “How do I expense a taxi?”"


async def look_ahead(deps: SlackDeps, user: str, channel: str, channel_type: str | None) -> None:
    """Start the Slack look-ups an answer will need (who asks; the channel) while the
    delivery is still being claimed, so that their round trips overlap the claims' database
    writes instead of following them. The answer later joins these same look-ups (one call
    per user or channel in flight) or finds them cached; a failure here is only logged, and
    the answer asks again."""
    work: list[Awaitable[object]] = [deps.identity.resolve(user)] if user else []
    if channel and not (channel_type == "im" or channel.startswith("D")):
        work.append(deps.channels.info(channel))
    for outcome in await asyncio.gather(*work, return_exceptions=True):
        if isinstance(outcome, BaseException):
            log.debug("a look-up ahead failed (%s)", outcome.__class__.__name__)


async def audience_for(deps: SlackDeps, channel: str, channel_type: str | None) -> Audience:
    """DMs (and the assistant panel) are private; anything else is a shared audience."""
    if channel_type == "im" or channel.startswith("D"):
        return Audience()
    info = await deps.channels.info(channel)  # one conversations.info for name and sharing
    return Audience(kind="channel", channel=info.name, has_guests=await has_guests(deps, info))


async def has_guests(deps: SlackDeps, info: Channel) -> bool:
    """Whether a guest or an external person reads the channel (cached; refreshed in every
    instance when someone joins or leaves). When it cannot be told, the answer is yes (fail
    closed): also while our own team is unknown, when everyone counts as external."""
    channel = info.id
    cached = await deps.channel_guests.get(channel)
    if cached is not None:
        return cached
    if await deps.identity.team() is None:
        return True
    try:
        if not info.known:
            raise LookupError("conversations.info did not answer")
        found = info.shared
        if not found:
            guests = await deps.identity.guest_ids()
            cursor = None
            for _ in range(50):  # up to 50 pages of members
                page = await deps.client.conversations_members(
                    channel=channel, limit=1000, cursor=cursor
                )
                if guests.intersection(page.get("members") or []):
                    found = True
                    break
                cursor = (page.get("response_metadata") or {}).get("next_cursor")
                if not cursor:
                    break
    except Exception as exc:
        log.warning(
            "cannot tell who reads %s (%s): treating it as shared with guests",
            channel,
            exc.__class__.__name__,
        )
        found = True
    deps.channel_guests.put(channel, found)
    return found


async def channel_name(deps: SlackDeps, channel: str) -> str:
    return await deps.channels.name(channel)


async def history(deps: SlackDeps, channel: str, thread: str) -> tuple[Turn, ...]:
    limit = deps.runtime.config.retrieval.history_turns
    if not limit:
        return ()

    def load() -> list[Turn]:
        with deps.runtime.store.session() as s:
            rows = repo.thread_turns(s, channel=channel, thread=thread, limit=limit)
            return [
                Turn(r.question or "", r.answer or "", Labels.from_json(r.labels)) for r in rows
            ]

    try:
        return tuple(await deps.runtime.store.call(load))
    except StoreUnavailable:  # answer without the thread's history rather than not at all
        log.warning("thread history unavailable (the database is unreachable)")
        return ()


async def answer_message(
    deps: SlackDeps,
    *,
    team: str,
    channel: str,
    channel_type: str | None,
    user: str,
    text: str,
    ts: str,
    thread_ts: str | None,
    assistant: bool = False,
    received_at: float | None = None,
) -> None:
    """Answer one message in its thread; never leaves the asker without a reply. Times run
    from ``received_at``, when the message reached our endpoint (default: now), so a wait
    for a free answer slot (bot/slack/admission.py) counts too. A question stopped while it
    waits (shutdown) is told and recorded like any answer that never began."""
    received_at = received_at if received_at is not None else time.perf_counter()
    thread = thread_ts or ts
    target = Target(channel=channel, thread_ts=thread, team=team, user=user)
    # What is known before any Slack look-up: enough to record the question if the answer
    # never starts (a Slack error, or a shutdown while looking up the channel).
    asked = Question(
        text=text,
        asker_ref=user,
        surface="slack",
        thread=thread,
        request_key=f"{team}:{channel}:{ts}",
        channel_ref=channel,
        received_at=received_at,
    )
    answering = False
    try:
        if not text:
            await deps.client.chat_postMessage(channel=channel, thread_ts=thread, text=EMPTY)
            return
        if assistant:  # shown at once, also while the question waits for a slot
            await _assistant_status(deps, channel, thread, "is thinking…", title=text)
        if deps.admission.full:
            log.info(
                "all %d answer slots are taken: %s:%s waits", deps.admission.limit, channel, ts
            )
        async with deps.admission.slot():  # beyond the bound, wait here (times still run)
            audience = await audience_for(deps, channel, channel_type)
            question = dataclasses.replace(
                asked,
                audience=audience,
                history=await history(deps, channel, thread),
                private_followup=not audience.is_private,
            )
            sink = SlackStreamer(
                deps.streaming_client,
                target,
                deps.pacer,
                native=deps.settings.slack_native_streaming,
                offline_models=deps.offline_models,
            )
            answering = True  # from here on the pipeline records the exchange itself
            result = await deps.runtime.pipeline.ask(question, sink)
            if result.private_answer_available and not audience.is_private:
                await private_answer(
                    deps,
                    team=team,
                    user=user,
                    text=text,
                    ts=ts,
                    where=audience,
                    received_at=received_at,
                )
    except asyncio.CancelledError:
        if not answering:  # stopped (shutdown) before the answer began: said and recorded
            await _not_started(deps, asked, "stopped before answering (shutting down)", RESTART)
        raise
    except Exception as exc:
        log.exception("answering %s:%s failed", channel, ts)
        if not answering:
            await _not_started(deps, asked, f"could not start: {exc.__class__.__name__}", SORRY)
            return
        try:
            await deps.client.chat_postMessage(channel=channel, thread_ts=thread, text=SORRY)
        except Exception:
            log.exception("could not even say sorry in %s", channel)
    finally:
        if assistant:
            await _assistant_status(deps, channel, thread, "")


async def _not_started(deps: SlackDeps, asked: Question, reason: str, say: str) -> None:
    """A question whose answer never began: the person is told, and it is recorded once
    (failed, undelivered, with the reason), so nothing asked is lost. Never raises."""
    try:
        await deps.client.chat_postMessage(
            channel=asked.channel_ref or "", thread_ts=asked.thread, text=say
        )
    except Exception as exc:
        log.warning("could not tell the asker (%s)", exc.__class__.__name__)
    try:
        await deps.runtime.pipeline.record_unanswerable(asked, reason)
    except Exception:
        log.exception("could not record a question that was not answered")


async def reply_unreadable(deps: SlackDeps, channel: str, thread: str) -> None:
    """A message whose text is not text (a payload Slack never sends): said so, in its thread."""
    try:
        await patiently(
            lambda: deps.client.chat_postMessage(channel=channel, thread_ts=thread, text=UNREADABLE)
        )
    except Exception as exc:
        log.warning("could not reply to an unreadable message (%s)", exc.__class__.__name__)


async def record_unanswerable(
    deps: SlackDeps, event: MessageEvent, team: str, event_id: str | None, reason: str
) -> None:
    """A question with no place to answer: recorded once (per event id) with the reason."""
    if event_id and not await deps.deduper.claim(f"event:{event_id}", CLAIM_TTL_S):
        return
    log.warning("a question cannot be answered: %s (event %s)", reason, event_id or "?")
    question = Question(
        text=event.text or "",
        asker_ref=event.user or "",
        surface="slack",
        thread=event.thread_ts or event.ts,
        request_key=f"{team}:{event.channel or '?'}:{event.ts or event_id or '?'}",
        channel_ref=event.channel,
    )
    await deps.runtime.pipeline.record_unanswerable(question, reason)


async def private_answer(
    deps: SlackDeps,
    *,
    team: str,
    user: str,
    text: str,
    ts: str,
    where: Audience,
    received_at: float | None = None,
) -> None:
    """The fuller answer, in a direct message: it may use everything the asker may read.
    Its times run from when the question arrived, as the public answer's do."""
    opened = await patiently(lambda: deps.client.conversations_open(users=user))
    dm = opened["channel"]["id"]
    intro = await patiently(
        lambda: deps.client.chat_postMessage(
            channel=dm,
            text=f"You asked in #{escape(where.channel or '')}: “{escape(text[:300])}”. "
            "Here is the fuller answer, from sources only you can see:",
            unfurl_links=False,
        )
    )
    question = Question(
        text=text,
        asker_ref=user,
        audience=Audience(),
        surface="slack",
        thread=intro["ts"],
        request_key=f"{team}:{where.channel}:{ts}:private",
        channel_ref=dm,
        received_at=received_at if received_at is not None else time.perf_counter(),
    )
    sink = SlackStreamer(
        deps.streaming_client,
        Target(channel=dm, thread_ts=intro["ts"], team=team, user=user),
        deps.pacer,
        native=deps.settings.slack_native_streaming,
        offline_models=deps.offline_models,
    )
    await deps.runtime.pipeline.ask(question, sink)


async def _assistant_status(
    deps: SlackDeps, channel: str, thread: str, status: str, title: str | None = None
) -> None:
    try:
        await deps.client.assistant_threads_setStatus(
            channel_id=channel, thread_ts=thread, status=status
        )
        if title:
            await deps.client.assistant_threads_setTitle(
                channel_id=channel, thread_ts=thread, title=title[:80]
            )
    except Exception as exc:  # not an assistant thread, or no assistant:write scope
        log.debug("assistant status not set: %s", exc.__class__.__name__)
