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
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from langchain_core.messages import AIMessageChunk, BaseMessage, HumanMessage, SystemMessage

from bot.core.breaker import Breaker, LocalBreaker
from bot.core.models import RegisteredModel
from bot.core.offline import CONTEXT_KEY, estimate_tokens
from bot.core.redaction import Redactor
from bot.core.types import Attempt
from bot.telemetry import tracer


@dataclass
class Generation:
    """What the router produced, filled in as it streams."""

    text: str = ""
    model: str | None = None
    attempts: list[Attempt] = field(default_factory=list)
    no_answer: bool = False
    complete: bool = False
    refused: bool = False  # the provider declined to answer (content policy)
    truncated: bool = False  # stopped at the answer length cap
    error: str | None = None

    @property
    def models_tried(self) -> list[str]:
        return [a.model for a in self.attempts if a.outcome != "skipped"]


@dataclass(frozen=True)
class RouterTimings:
    first_token_timeout_s: float = 4.0
    hedge_after_s: float | None = None  # start the next link too if none has started by then
    stall_timeout_s: float = 20.0
    total_timeout_s: float = 60.0


Status = Callable[[str], Awaitable[None]]
# A smaller prompt for the n-th retry after a context-length error, or None when nothing is left
# to trim.
Shrink = Callable[[int], tuple[str, str] | None]

_CONTEXT = re.compile(
    r"context[ _]length|maximum context|context window|prompt is too long|too many tokens"
    r"|reduce the length",
    re.I,
)
_REFUSAL = re.compile(r"content[ _]filter|content[ _]policy|content_management_policy", re.I)


class ContentRefused(Exception):
    """The provider declined to produce (or finish) an answer on content grounds."""


def classify(exc: BaseException) -> str:
    """An error class the router acts on: timeout, rate_limited, server_error, connection,
    context_length, content_refusal, not_configured (401/403: the key is missing or
    wrong); otherwise the exception's class name."""
    name = exc.__class__.__name__
    status = getattr(exc, "status_code", None) or getattr(
        getattr(exc, "response", None), "status_code", None
    )
    code = str(getattr(exc, "code", "") or "")
    text = f"{code} {exc}"
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, ContentRefused) or _REFUSAL.search(text):
        return "content_refusal"
    if status == 429 or "RateLimit" in name:
        return "rate_limited"
    if isinstance(status, int) and status >= 500:
        return "server_error"
    if status in (400, 413) and _CONTEXT.search(text):
        return "context_length"
    if status in (401, 403) or "Authentication" in name or "PermissionDenied" in name:
        return "not_configured"  # the key is missing, wrong or lacks access to the model
    if "Connection" in name or "APIConnection" in name:
        return "connection"
    return name


def retry_after_s(exc: BaseException) -> float | None:
    """Seconds the provider asked us to wait (Retry-After / retry-after-ms), if it said."""
    headers = getattr(getattr(exc, "response", None), "headers", None)
    if not headers:
        return None
    try:
        if headers.get("retry-after-ms"):
            return max(0.0, float(headers["retry-after-ms"]) / 1000)
        if headers.get("retry-after"):
            return max(0.0, float(headers["retry-after"]))
    except (TypeError, ValueError):  # an HTTP date: too far to wait for within an answer
        return None
    return None


class ModelRouter:
    def __init__(
        self,
        chain: list[RegisteredModel],
        timings: RouterTimings | None = None,
        breaker: Breaker | None = None,
    ) -> None:
        self.chain = chain
        self.timings = timings or RouterTimings()
        self.breaker = breaker or LocalBreaker()

    def last_resort(self) -> ModelRouter:
        """A router with only the last link of the chain (the offline model)."""
        return ModelRouter(self.chain[-1:], self.timings, self.breaker)

    async def stream(
        self,
        *,
        system: str,
        user: str,
        data_classes: set[str],
        result: Generation,
        status: Status,
        started: float,
        shrink: Shrink | None = None,
        max_chars: int | None = None,
        context: Mapping[str, Any] | None = None,
    ) -> AsyncIterator[str]:
        """Yield answer text; ``result`` holds the attempts, usage and outcome.

        ``context`` is the structured form of the prompt (passages, the cleaned question)
        for the offline model, which reads it instead of parsing the rendered text. It is
        attached only to offline links' messages and never sent to a provider.

        ``max_chars`` caps the answer: a model that runs on past it is stopped there (billed
        for what it produced) and the answer is marked truncated.

        Until some model shows its first token, links race: the next link starts when the
        current ones fail, pass their first-token deadline, or (hedging) have shown nothing
        after ``hedge_after_s``. The first to produce a token wins; the others are cancelled
        and their attempts (and cost) recorded. After that the winner streams alone.
        """
        messages: list[BaseMessage] = [SystemMessage(system), HumanMessage(user)]
        deadline = time.monotonic() + self.timings.total_timeout_s
        links = iter(self.chain)
        racing: list[_Runner] = []
        previous: str | None = None

        last = self.chain[-1].name if self.chain else None

        async def start_next() -> bool:
            for link in links:
                attempt = Attempt(model=link.name, started_ms=_ms(started))
                result.attempts.append(attempt)
                if link.unusable is not None:  # no key or no package: said at start-up
                    attempt.outcome, attempt.error = "skipped", "not_configured"
                    continue
                if not data_classes <= link.spec.accepted_classes:
                    attempt.outcome, attempt.error = "skipped", "data_class"
                    continue
                if link.name != last and await self.breaker.is_open(link.name):
                    attempt.outcome, attempt.error = "skipped", "circuit_open"
                    continue
                sent = messages
                if context is not None and link.spec.provider == "offline":
                    extra = {CONTEXT_KEY: dict(context)}
                    sent = [SystemMessage(system), HumanMessage(user, additional_kwargs=extra)]
                racing.append(_Runner(self, link, sent, attempt, deadline, started, user, shrink))
                return True
            return False

        await start_next()
        winner: _Runner | None = None
        first_piece = ""
        while winner is None:
            if not racing:
                result.error = result.error or "no model could answer"
                return
            now = time.monotonic()
            hedge = self.timings.hedge_after_s
            newest = racing[-1]
            wake = min(r.first_deadline for r in racing)
            if hedge is not None and len(racing) == 1:  # one hedge at a time, to bound cost
                wake = min(wake, newest.begun + hedge)
            item = await _first_of(racing, max(0.0, min(wake, deadline) - now))
            if item is None:  # a deadline or the hedge delay passed
                now = time.monotonic()
                for r in [r for r in racing if now >= r.first_deadline or now >= deadline]:
                    await r.stop("timeout", "timeout")
                    await self.breaker.record(r.link.name, False)
                    racing.remove(r)
                    previous = r.link.name
                    result.error = f"{r.link.name}: timeout"
                hedge_due = (
                    hedge is not None and len(racing) == 1 and now >= racing[0].begun + hedge
                )
                if (not racing or hedge_due) and await start_next():
                    lead = previous or racing[0].link.name
                    verb = "is unavailable" if previous and len(racing) == 1 else "is slow"
                    await status(f"The {lead} model {verb}; answering with {racing[-1].link.name}.")
                continue
            runner, kind, payload = item
            if kind == "chunk":
                winner, first_piece = runner, str(payload)
                for other in [r for r in racing if r is not runner]:
                    await other.stop("cancelled", "lost_hedge")
                break
            racing.remove(runner)
            if kind == "error" and classify(payload) == "content_refusal":  # type: ignore[arg-type]
                # A policy decision, not an outage: report it rather than shop for a model
                # that will say something else.
                for other in racing:
                    await other.stop("cancelled", "refused_elsewhere")
                await runner.stop("refused", "content_refusal")
                result.refused = True
                result.model = runner.link.name
                result.error = f"{runner.link.name}: content_refusal"
                return
            await self.breaker.record(runner.link.name, False)
            if runner.hold_s:
                await self.breaker.hold(runner.link.name, runner.hold_s)
            if kind == "end":  # finished without a word: treat as a failure of that link
                await runner.stop("failed", "empty")
            else:
                exc = payload if isinstance(payload, BaseException) else RuntimeError(payload)
                await runner.stop(
                    "timeout" if isinstance(exc, TimeoutError) else "failed", classify(exc)
                )
            previous = runner.link.name
            result.error = f"{runner.link.name}: {runner.attempt.error}"
            if not racing and await start_next():
                await status(
                    f"The {previous} model is unavailable; answering with {racing[-1].link.name}."
                )
        attempt = winner.attempt
        if max_chars is not None:
            first_piece = first_piece[:max_chars]
        result.text += first_piece
        yield first_piece
        while True:
            if max_chars is not None and len(result.text) >= max_chars:
                await winner.stop("incomplete", "answer_too_long")
                result.truncated = True
                result.model = winner.link.name
                result.error = f"{winner.link.name}: answer_too_long"
                return
            kind, payload = await winner.next()
            if kind == "chunk":
                piece = str(payload)
                if max_chars is not None:
                    piece = piece[: max(0, max_chars - len(result.text))]
                result.text += piece
                yield piece
                continue
            if kind == "end":
                await self.breaker.record(winner.link.name, True)
                attempt.outcome = "answered"
                attempt.ended_ms = _ms(started)
                self._estimate_usage(winner.link, attempt, user, winner.shown)
                result.no_answer = attempt.no_answer
                result.model = winner.link.name
                result.complete = True
                result.error = None
                return
            # Text was shown: never present a broken stream as a complete answer.
            exc = payload if isinstance(payload, BaseException) else RuntimeError(payload)
            error = classify(exc)
            await winner.stop("incomplete", error)
            if error == "content_refusal":
                result.refused = True
            else:
                await self.breaker.record(winner.link.name, False)
            result.model = winner.link.name
            result.error = f"{winner.link.name}: {attempt.error} after partial output"
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
                meta = chunk.response_metadata or {}
                if (
                    meta.get("finish_reason") == "content_filter"
                    or meta.get("stop_reason") == "refusal"
                    or chunk.additional_kwargs.get("refusal")
                ):
                    raise ContentRefused(str(chunk.additional_kwargs.get("refusal") or ""))
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


def _as_dicts(messages: list[BaseMessage]) -> list[dict[str, str]]:
    """Messages as stored with an attempt: role and text."""
    return [{"role": m.type, "content": str(m.content)} for m in messages]


class _Runner:
    """One model attempt running in its own task, feeding a queue of
    ("chunk", text) | ("end", None) | ("error", exception)."""

    def __init__(
        self,
        router: ModelRouter,
        link: RegisteredModel,
        messages: list[BaseMessage],
        attempt: Attempt,
        deadline: float,
        started: float,
        prompt: str,
        shrink: Shrink | None = None,
    ) -> None:
        self.router = router
        self.link = link
        self.attempt = attempt
        self.prompt = prompt
        self.shrink = shrink
        self.hold_s = 0.0  # Retry-After beyond this answer's deadlines: skip the model that long
        self.retry_wait = 0.0
        self.begun = time.monotonic()
        self.first_deadline = self.begun + router.timings.first_token_timeout_s
        self.shown = ""
        self.queue: asyncio.Queue[tuple[str, object]] = asyncio.Queue()
        self.peeked: tuple[str, object] | None = None
        messages = self._for_link(messages)
        self.task = asyncio.create_task(self._run(messages, deadline, started))

    def _for_link(self, messages: list[BaseMessage]) -> list[BaseMessage]:
        """The messages as this model may receive them (redacted for ``redact: true``),
        kept with the attempt."""
        if self.link.spec.redact:
            texts, counts = Redactor().redact_all([str(m.content) for m in messages])
            messages = [type(m)(content=t) for m, t in zip(messages, texts, strict=True)]
            if counts:
                found = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
                self.attempt.notes.append(f"redacted before sending: {found}")
        self.attempt.prompt = _as_dicts(messages)
        return messages

    async def _run(self, messages: list[BaseMessage], deadline: float, started: float) -> None:
        """The attempt, in one span with the GenAI attributes (its task inherits the
        generate step's span as parent)."""
        spec = self.link.spec
        with tracer.start_as_current_span(f"chat {spec.model or spec.name}") as span:
            span.set_attribute("gen_ai.operation.name", "chat")
            span.set_attribute("gen_ai.system", spec.provider)
            span.set_attribute("gen_ai.request.model", spec.model or spec.name)
            span.set_attribute("concierge.model", spec.name)
            try:
                await self._calls(messages, deadline, started)
            finally:
                span.set_attribute("gen_ai.usage.input_tokens", self.attempt.input_tokens)
                span.set_attribute("gen_ai.usage.output_tokens", self.attempt.output_tokens)
                span.set_attribute("concierge.attempt.outcome", self.attempt.outcome)

    async def _calls(self, messages: list[BaseMessage], deadline: float, started: float) -> None:
        trims = 0
        while True:
            try:
                async for piece in self.router._attempt(
                    self.link, messages, self.attempt, deadline, started
                ):
                    self.shown += piece
                    await self.queue.put(("chunk", piece))
                await self.queue.put(("end", None))
                return
            except asyncio.CancelledError:
                raise
            except BaseException as exc:  # every failure is reported to the router
                retry = None if self.shown else self._retry(exc, trims, deadline)
                if retry is None:
                    await self.queue.put(("error", exc))
                    return
                if retry == "trim":
                    trims += 1
                    system, user = self.shrink(trims)  # type: ignore[misc]
                    messages = self._for_link([SystemMessage(system), HumanMessage(user)])
                    self.prompt = user
                else:
                    await asyncio.sleep(self.retry_wait)

    def _retry(self, exc: BaseException, trims: int, deadline: float) -> str | None:
        """Whether to call the same model again: with a trimmed prompt after a context-length
        error, or after the provider's Retry-After when that fits within the deadlines."""
        error = classify(exc)
        if error == "context_length" and self.shrink is not None:
            if self.shrink(trims + 1) is not None:
                self.attempt.retries += 1
                self.attempt.notes.append(f"context_length: prompt trimmed ({trims + 1})")
                return "trim"
            return None
        if error in ("rate_limited", "server_error"):
            wait = retry_after_s(exc)
            if wait is None:
                return None
            limit = min(self.first_deadline, deadline) - 0.05
            if self.attempt.retries < 2 and time.monotonic() + wait < limit:
                self.attempt.retries += 1
                self.attempt.notes.append(f"{error}: retried after {wait:g}s")
                self.retry_wait = wait
                return "wait"
            self.hold_s = wait
        return None

    async def next(self) -> tuple[str, object]:
        if self.peeked is not None:
            item, self.peeked = self.peeked, None
            return item
        return await self.queue.get()

    async def stop(self, outcome: str, error: str | None) -> None:
        """End this attempt (cancelled, timed out or failed) and bill what it used."""
        if not self.task.done():
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task
        self.attempt.outcome = outcome
        self.attempt.error = error
        self.attempt.ended_ms = self.attempt.ended_ms or _ms_since(self.begun, self.attempt)
        if outcome == "failed" and not self.shown:
            return  # a rejected request (4xx/5xx, refused connection) is not billed
        self.router._estimate_usage(self.link, self.attempt, self.prompt, self.shown)


async def _first_of(runners: list[_Runner], wait_s: float) -> tuple[_Runner, str, object] | None:
    """The first item any runner produces, or None when ``wait_s`` passes first. Items taken
    from a queue but not chosen are kept in that runner's ``peeked`` slot, so none is lost
    and each runner's order is kept."""
    for r in runners:
        if r.peeked is not None:
            item, r.peeked = r.peeked, None
            return r, item[0], item[1]
    getters = {asyncio.ensure_future(r.queue.get()): r for r in runners}
    _, pending = await asyncio.wait(getters, timeout=wait_s, return_when=asyncio.FIRST_COMPLETED)
    for fut in pending:
        fut.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    completed = [f for f in getters if f.done() and not f.cancelled()]
    if not completed:
        return None
    for fut in completed[1:]:
        getters[fut].peeked = fut.result()
    kind, payload = completed[0].result()
    return getters[completed[0]], kind, payload


def _ms_since(begun: float, attempt: Attempt) -> float:
    return round(attempt.started_ms + (time.monotonic() - begun) * 1000, 2)
