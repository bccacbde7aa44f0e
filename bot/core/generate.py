"""The generate step: a model router over the configured chain.

Runs on the event loop; every model call is async streaming. Each link has a first-token
deadline; the whole answer has a total deadline. A model that fails before showing text is
replaced by the next link with a short status for the user; one that breaks after text was
shown is never presented as complete (the exchange is marked incomplete). A model is skipped
when a passage's data class may not be sent to it. The offline model ends every chain.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from langchain_core.messages import AIMessageChunk, BaseMessage, HumanMessage, SystemMessage

from bot.core.models import RegisteredModel
from bot.core.offline import estimate_tokens
from bot.core.types import Attempt


@dataclass
class Generation:
    """What the router produced, filled in as it streams."""

    text: str = ""
    model: str | None = None
    attempts: list[Attempt] = field(default_factory=list)
    no_answer: bool = False
    complete: bool = False
    error: str | None = None

    @property
    def models_tried(self) -> list[str]:
        return [a.model for a in self.attempts if a.outcome != "skipped"]


@dataclass(frozen=True)
class RouterTimings:
    first_token_timeout_s: float = 4.0
    stall_timeout_s: float = 20.0
    total_timeout_s: float = 60.0


Status = Callable[[str], Awaitable[None]]


def classify(exc: BaseException) -> str:
    name = exc.__class__.__name__
    status = getattr(exc, "status_code", None) or getattr(
        getattr(exc, "response", None), "status_code", None
    )
    if isinstance(exc, TimeoutError):
        return "timeout"
    if status == 429 or "RateLimit" in name:
        return "rate_limited"
    if isinstance(status, int) and status >= 500:
        return "server_error"
    if "Connection" in name or "APIConnection" in name:
        return "connection"
    return name


class ModelRouter:
    def __init__(self, chain: list[RegisteredModel], timings: RouterTimings | None = None) -> None:
        self.chain = chain
        self.timings = timings or RouterTimings()

    def last_resort(self) -> ModelRouter:
        """A router with only the last link of the chain (the offline model)."""
        return ModelRouter(self.chain[-1:], self.timings)

    async def stream(
        self,
        *,
        system: str,
        user: str,
        data_classes: set[str],
        result: Generation,
        status: Status,
        started: float,
    ) -> AsyncIterator[str]:
        """Yield answer text; ``result`` holds the attempts, usage and outcome."""
        messages: list[BaseMessage] = [SystemMessage(system), HumanMessage(user)]
        deadline = time.monotonic() + self.timings.total_timeout_s
        previous: str | None = None
        for link in self.chain:
            attempt = Attempt(model=link.name, started_ms=_ms(started))
            result.attempts.append(attempt)
            if not data_classes <= link.spec.accepted_classes:
                attempt.outcome = "skipped"
                attempt.error = "data_class"
                continue
            if previous is not None:
                await status(f"The {previous} model is unavailable; answering with {link.name}.")
            shown_before = len(result.text)
            try:
                async for piece in self._attempt(link, messages, attempt, deadline, started):
                    result.text += piece
                    yield piece
            except (Exception, TimeoutError) as exc:
                attempt.outcome = "failed" if not isinstance(exc, TimeoutError) else "timeout"
                attempt.error = classify(exc)
                attempt.ended_ms = _ms(started)
                self._estimate_usage(link, attempt, user, result.text[shown_before:])
                if len(result.text) > shown_before:
                    # Text was shown: never present a broken stream as a complete answer.
                    result.model = link.name
                    result.error = f"{link.name}: {attempt.error} after partial output"
                    attempt.outcome = "incomplete"
                    return
                previous = link.name
                result.error = f"{link.name}: {attempt.error}"
                continue
            attempt.outcome = "answered"
            attempt.ended_ms = _ms(started)
            self._estimate_usage(link, attempt, user, result.text[shown_before:])
            result.no_answer = attempt.no_answer
            result.model = link.name
            result.complete = True
            result.error = None
            return

    async def _attempt(
        self,
        link: RegisteredModel,
        messages: list[BaseMessage],
        attempt: Attempt,
        deadline: float,
        started: float,
    ) -> AsyncIterator[str]:
        stream = link.chat.astream(messages).__aiter__()
        first = True
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError("total deadline")
                wait = self.timings.first_token_timeout_s if first else self.timings.stall_timeout_s
                try:
                    chunk = await asyncio.wait_for(stream.__anext__(), min(wait, remaining))
                except StopAsyncIteration:
                    return
                if not isinstance(chunk, AIMessageChunk):
                    continue
                self._take_usage(link, attempt, chunk)
                text = chunk.content if isinstance(chunk.content, str) else chunk.text
                if text:
                    if first:
                        attempt.first_token_ms = _ms(started)
                        first = False
                    yield text
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                # Closing a broken stream must not mask its error.
                with contextlib.suppress(Exception):
                    await aclose()

    @staticmethod
    def _take_usage(link: RegisteredModel, attempt: Attempt, chunk: AIMessageChunk) -> None:
        meta = chunk.response_metadata or {}
        if meta.get("no_answer"):
            attempt.no_answer = True
        if chunk.usage_metadata:
            attempt.input_tokens += int(chunk.usage_metadata.get("input_tokens", 0))
            attempt.output_tokens += int(chunk.usage_metadata.get("output_tokens", 0))
            attempt.tokens_estimated = bool(meta.get("usage_estimated", attempt.tokens_estimated))
            attempt.cost_usd = link.cost(attempt.input_tokens, attempt.output_tokens)

    @staticmethod
    def _estimate_usage(link: RegisteredModel, attempt: Attempt, prompt: str, shown: str) -> None:
        """A provider that reported nothing is billed by estimate, flagged as such."""
        if attempt.input_tokens == 0 and attempt.output_tokens == 0:
            attempt.input_tokens = estimate_tokens(prompt)
            attempt.output_tokens = estimate_tokens(shown)
            attempt.tokens_estimated = True
            attempt.cost_usd = link.cost(attempt.input_tokens, attempt.output_tokens)


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)
