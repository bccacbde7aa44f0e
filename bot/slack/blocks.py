"""Block Kit rendering: pure functions of data, built with slack_sdk's block classes."""

from __future__ import annotations

from typing import Any

from slack_sdk.models.blocks import (
    ContextActionsBlock,
    ContextBlock,
    FeedbackButtonObject,
    FeedbackButtonsElement,
    InputBlock,
    MarkdownBlock,
    MarkdownTextObject,
    Option,
    PlainTextInputElement,
    PlainTextObject,
    StaticSelectElement,
)
from slack_sdk.models.views import View

from bot.core.types import ExchangeResult
from bot.slack import ids
from bot.slack.text import escape, link, split_text

MARKDOWN_LIMIT = 11_000  # a markdown block holds 12,000 characters; keep a margin
CATEGORIES = (
    ("inaccurate", "Inaccurate or wrong"),
    ("outdated", "Out of date"),
    ("incomplete", "Incomplete"),
    ("irrelevant", "Didn't answer my question"),
    ("sources", "Wrong or missing sources"),
    ("other", "Something else"),
)


def citation_line(result: ExchangeResult) -> str | None:
    if not result.sources:
        return None
    parts = []
    for s in result.sources:
        dated = f" ({s['date']})" if s.get("date") else ""  # the document's date
        label = f"[{s.get('ref')}] {s['source']}: {s['title']}{dated}"
        uri = str(s["uri"])
        parts.append(link(uri, label) if uri.startswith(("https://", "http://")) else escape(label))
    return "Sources: " + " · ".join(parts)


def footer_line(result: ExchangeResult, offline_models: frozenset[str] = frozenset()) -> str:
    bits = []
    if result.model:
        bits.append(f"Answered by {escape(result.model)}")
        if result.model in offline_models:
            bits.append("offline mode: quoted from the sources")
    bits.append(f"{result.total_ms / 1000:.1f} s")
    if result.outcome == "incomplete":
        bits.append("incomplete answer")
    return " · ".join(bits)


def feedback_block(exchange_id: str) -> ContextActionsBlock:
    return ContextActionsBlock(
        block_id=f"feedback:{exchange_id}",
        elements=[
            FeedbackButtonsElement(
                action_id=ids.FEEDBACK_ACTION,
                positive_button=FeedbackButtonObject(
                    text="👍", accessibility_label="Helpful", value=f"up:{exchange_id}"
                ),
                negative_button=FeedbackButtonObject(
                    text="👎", accessibility_label="Not helpful", value=f"down:{exchange_id}"
                ),
            )
        ],
    )


def answer_blocks(
    text: str,
    result: ExchangeResult,
    *,
    feedback: bool = True,
    offline_models: frozenset[str] = frozenset(),
    include_text: bool = True,
) -> list[Any]:
    """The final message of an answer: text, sources, footer and feedback buttons.

    ``text`` is the (last part of the) answer, already escaped for Slack. With native
    streaming the text is already in the message, so only the rest is added.
    """
    blocks: list[Any] = []
    if include_text and text:
        blocks += [MarkdownBlock(text=part) for part in split_text(text, MARKDOWN_LIMIT)]
    cites = citation_line(result)
    context = [MarkdownTextObject(text=cites)] if cites else []
    context.append(MarkdownTextObject(text=footer_line(result, offline_models)))
    blocks.append(ContextBlock(elements=context))
    if feedback and result.outcome in ("answered", "incomplete", "no_answer"):
        blocks.append(feedback_block(result.exchange_id))
    return [b.to_dict() for b in blocks]


def feedback_modal(exchange_id: str) -> dict[str, Any]:
    view = View(
        type="modal",
        callback_id=ids.FEEDBACK_MODAL,
        private_metadata=exchange_id,
        title=PlainTextObject(text="What went wrong?"),
        submit=PlainTextObject(text="Send"),
        close=PlainTextObject(text="Skip"),
        blocks=[
            InputBlock(
                block_id=ids.FEEDBACK_CATEGORY_BLOCK,
                label=PlainTextObject(text="The answer was…"),
                optional=True,
                element=StaticSelectElement(
                    action_id=ids.FEEDBACK_CATEGORY_ACTION,
                    placeholder=PlainTextObject(text="Choose one"),
                    options=[Option(value=v, text=label) for v, label in CATEGORIES],
                ),
            ),
            InputBlock(
                block_id=ids.FEEDBACK_TEXT_BLOCK,
                label=PlainTextObject(text="Anything else the owners should know?"),
                optional=True,
                element=PlainTextInputElement(
                    action_id=ids.FEEDBACK_TEXT_ACTION, multiline=True, max_length=2000
                ),
            ),
        ],
    )
    return view.to_dict()


HELP = (
    "Ask me anything about how things work here: mention me in a channel, message me "
    "directly, or open me in the assistant panel. I answer from the sources you may read and "
    "cite them.\n"
    "• `/concierge QUESTION` — ask privately\n"
    "• `/concierge access …` — admins: grant, revoke, list, who-can, audit\n"
    "• `/concierge report [7d|30d]` — owners: the feedback report, by DM\n"
    "• `/concierge help` — this message"
)
