"""The generate step: a model router over the configured chain.

Runs on the event loop; every model call is async streaming. Each link has a first-token
deadline; the whole answer has a total deadline. A model that fails before showing text is
replaced by the next link with a short status for the user; one that breaks after text was
shown is never presented as complete (the exchange is marked incomplete), unless the next
link takes it over after a stall (continued, or restarted by the offline model) and says so.
A model is skipped when a passage's data class may not be sent to it, or while its circuit
breaker is open. The offline model ends every chain and is the last resort, never a hedge.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    SystemMessage,
)

from bot.core.breaker import Breaker, LocalBreaker
from bot.core.hedging import FirstTokenWindow
from bot.core.models import RegisteredModel
from bot.core.offline import CONTEXT_KEY, estimate_tokens
from bot.core.prompts import continuation_prompt
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
    # Said with the answer: another model continued or restarted it after a stall.
    notes: list[str] = field(default_factory=list)

    @property
    def models_tried(self) -> list[str]:
        return [a.model for a in self.attempts if a.outcome != "skipped"]


@dataclass(frozen=True)
class RouterTimings:
    first_token_timeout_s: float = 4.0
    hedge_after_s: float | None = None  # start the next link too if none has started by then
    stall_timeout_s: float = 5.0  # a started stream silent this long is taken over
    total_timeout_s: float = 60.0


Status = Callable[[str], Awaitable[None]]
# Drop the answer text shown so far (the offline model starts the answer over).
Replace = Callable[[], Awaitable[None]]
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


class Stalled(TimeoutError):
    """A stream that had started went silent for ``stall_timeout_s``."""


@dataclass
class _Answer:
    """What every attempt of one answer shares."""

    system: str
    user: str
    data_classes: set[str]
    result: Generation
    status: Status
    started: float
    deadline: float
    shrink: Shrink | None
    context: Mapping[str, Any] | None
    replace: Replace | None


class ModelRouter:
    def __init__(
        self,
        chain: list[RegisteredModel],
        timings: RouterTimings | None = None,
        breaker: Breaker | None = None,
        window: FirstTokenWindow | None = None,
    ) -> None:
        self.chain = chain
        self.timings = timings or RouterTimings()
        self.breaker = breaker or LocalBreaker()
        self.window = window or FirstTokenWindow()
        # Lost races still running until their first token or deadline (see ``_lose``).
        self._watchers: set[asyncio.Task[None]] = set()

    def last_resort(self) -> ModelRouter:
        """A router with only the last link of the chain (the offline model)."""
        return ModelRouter(self.chain[-1:], self.timings, self.breaker, self.window)

    def hedge_delay(self, model: str) -> float | None:
        """How long ``model`` may show nothing before a comparable model is started too."""
        cap = self.timings.hedge_after_s
        return None if cap is None else self.window.hedge_delay(model, cap)

    async def settle(self) -> None:
        """Wait until every lost race this router left running has been judged (tests and
        benchmarks: the breaker and the latency window are then up to date)."""
        while self._watchers:
            await asyncio.gather(*list(self._watchers), return_exceptions=True)

    @staticmethod
    def _last_resort(link: RegisteredModel) -> bool:
        """The offline model: it answers when the others fail or miss their deadlines, and is
        never a hedge (it would beat every slightly slow model of better quality)."""
        return link.spec.provider == "offline"

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
        replace: Replace | None = None,
    ) -> AsyncIterator[str]:
        """Yield answer text; ``result`` holds the attempts, usage and outcome.

        ``context`` is the structured form of the prompt (passages, the cleaned question)
        for the offline model, which reads it instead of parsing the rendered text. It is
        attached only to offline links' messages and never sent to a provider.

        ``max_chars`` caps the answer: a model that runs on past it is stopped there (billed
        for what it produced) and the answer is marked truncated.

        Until some model shows its first token, links race: the next link starts when the
        current ones fail or pass their first-token deadline, or, when it is a model of
        comparable quality (not the offline one), once the current one has shown nothing for
        its hedge delay. The first to produce a token wins; the others are cancelled and
        their attempts (and cost) recorded. After that the winner streams alone.

        A stream silent for ``stall_timeout_s`` after it started is taken over by the next
        link of the chain: a hosted model continues the text so far; the offline model, which
        cannot continue, starts over, and ``replace`` tells the sink to drop the text shown
        (without ``replace`` the answer ends there, marked incomplete).
        """
        ctx = _Answer(
            system=system,
            user=user,
            data_classes=data_classes,
            result=result,
            status=status,
            started=started,
            deadline=time.monotonic() + self.timings.total_timeout_s,
            shrink=shrink,
            context=context,
            replace=replace,
        )
        found = await self._race(ctx, self.chain, lambda link: self._messages(ctx, link))
        while found is not None:
            winner, piece = found
            async for shown in self._follow(ctx, winner, piece, max_chars):
                yield shown
            if not isinstance(winner.failure, Stalled):
                return
            error = result.error
            found = await self._take_over(ctx, winner)
            if found is None:
                result.error = error  # the stall, not the failed take-over, is the story
            if found is not None and self._last_resort(found[0].link):
                assert ctx.replace is not None  # _take_over offers offline only then
                await ctx.replace()
                result.text = ""
                del result.notes[:-1]  # only the restart's own note still applies

    def _messages(self, ctx: _Answer, link: RegisteredModel) -> list[BaseMessage]:
        """The question's messages; an offline link also gets the structured context."""
        if ctx.context is not None and self._last_resort(link):
            extra = {CONTEXT_KEY: dict(ctx.context)}
            return [SystemMessage(ctx.system), HumanMessage(ctx.user, additional_kwargs=extra)]
        return [SystemMessage(ctx.system), HumanMessage(ctx.user)]

    async def _race(
        self,
        ctx: _Answer,
        links: list[RegisteredModel],
        compose: Callable[[RegisteredModel], list[BaseMessage]],
        *,
        stalled: str | None = None,
    ) -> tuple[_Runner, str] | None:
        """Race ``links`` until one shows its first token: that runner and its first piece,
        or None when none could (``ctx.result`` says why)."""
        result = ctx.result
        pending = list(links)
        racing: list[_Runner] = []
        previous: str | None = None
        last = self.chain[-1].name if self.chain else None

        async def start_next(hedge: bool) -> bool:
            while pending:
                link = pending[0]
                if hedge and self._last_resort(link):
                    return False  # never a hedge: only when the others are out
                pending.pop(0)
                attempt = Attempt(model=link.name, started_ms=_ms(ctx.started))
                result.attempts.append(attempt)
                if link.unusable is not None:  # no key or no package: said at start-up
                    attempt.outcome, attempt.error = "skipped", "not_configured"
                    continue
                if not ctx.data_classes <= link.spec.accepted_classes:
                    attempt.outcome, attempt.error = "skipped", "data_class"
                    continue
                if (
                    link.name != last
                    and not self._last_resort(link)
                    and await self.breaker.is_open(link.name)
                ):
                    attempt.outcome, attempt.error = "skipped", "circuit_open"
                    continue
                messages = compose(link)
                prompt = "\n\n".join(str(m.content) for m in messages[1:])
                shrink = ctx.shrink if stalled is None else None
                if stalled is not None:
                    verb = "restarted the answer" if self._last_resort(link) else "continued"
                    attempt.notes.append(f"{verb} after {stalled} stalled")
                runner = _Runner(
                    self, link, messages, attempt, ctx.deadline, ctx.started, prompt, shrink
                )
                if stalled is not None:
                    # The person already waited a stall timeout: a model taking over gets no
                    # longer than that to start, so the answer is never frozen for long.
                    runner.first_deadline = runner.begun + min(
                        self.timings.first_token_timeout_s, self.timings.stall_timeout_s
                    )
                racing.append(runner)
                return True
            return False

        await start_next(hedge=False)
        if stalled is not None and racing:
            link = racing[-1].link
            verb = "starting over" if self._last_resort(link) else "continuing"
            await ctx.status(f"The {stalled} model stalled; {verb} with {link.name}.")
        while True:
            if not racing:
                result.error = result.error or "no model could answer"
                return None
            now = time.monotonic()
            wake = min(r.first_deadline for r in racing)
            hedge_at: float | None = None
            delay = self.hedge_delay(racing[0].link.name)
            # One hedge at a time, to bound cost; and only with a model of comparable quality.
            if (
                delay is not None
                and len(racing) == 1
                and pending
                and not self._last_resort(pending[0])
            ):
                hedge_at = racing[0].begun + delay
                wake = min(wake, hedge_at)
            item = await _first_of(racing, max(0.0, min(wake, ctx.deadline) - now))
            if item is None:  # a deadline or the hedge delay passed
                now = time.monotonic()
                for r in [r for r in racing if now >= r.first_deadline or now >= ctx.deadline]:
                    await r.stop("timeout", "timeout")
                    await self.breaker.record(r.link.name, False)
                    self.window.add(r.link.name, self.timings.first_token_timeout_s)
                    racing.remove(r)
                    previous = r.link.name
                    result.error = f"{r.link.name}: timeout"
                hedge_due = hedge_at is not None and len(racing) == 1 and now >= hedge_at
                if not racing and await start_next(hedge=False):
                    lead = previous or racing[0].link.name
                    await ctx.status(
                        f"The {lead} model is unavailable; answering with {racing[-1].link.name}."
                    )
                elif hedge_due and await start_next(hedge=True):
                    await ctx.status(
                        f"The {racing[0].link.name} model is slow; "
                        f"answering with {racing[-1].link.name}."
                    )
                continue
            runner, kind, payload = item
            if kind == "chunk":
                self.window.add(runner.link.name, time.monotonic() - runner.begun)
                for other in [r for r in racing if r is not runner]:
                    self._lose(other, result)
                return runner, str(payload)
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
                return None
            await self.breaker.record(runner.link.name, False)
            if runner.hold_s:
                await self.breaker.hold(runner.link.name, runner.hold_s)
            if kind == "end":  # finished without a word: treat as a failure of that link
                await runner.stop("failed", "empty")
            else:
                exc = payload if isinstance(payload, BaseException) else RuntimeError(payload)
                if isinstance(exc, TimeoutError):
                    self.window.add(runner.link.name, self.timings.first_token_timeout_s)
                await runner.stop(
                    "timeout" if isinstance(exc, TimeoutError) else "failed", classify(exc)
                )
            previous = runner.link.name
            result.error = f"{runner.link.name}: {runner.attempt.error}"
            if not racing and await start_next(hedge=False):
                await ctx.status(
                    f"The {previous} model is unavailable; answering with {racing[-1].link.name}."
                )

    def _lose(self, runner: _Runner, result: Generation) -> None:
        """``runner`` lost the race. Its attempt is recorded now, cancelled and billed; the
        call itself runs on (in the background, output unused) until its first token or its
        first-token deadline, so that a hung model still counts against its breaker and a
        slow one's first-token latency is still observed."""
        recorded = runner.settle("cancelled", "lost_hedge")
        result.attempts[:] = [recorded if a is runner.attempt else a for a in result.attempts]
        task = asyncio.create_task(self._judge(runner))
        self._watchers.add(task)
        task.add_done_callback(self._watchers.discard)

    async def _judge(self, runner: _Runner) -> None:
        name = runner.link.name
        try:
            wait = max(0.0, runner.first_deadline - time.monotonic())
            try:
                kind, _ = await asyncio.wait_for(runner.next(), wait)
            except TimeoutError:
                kind = "timeout"
            if kind == "chunk":
                self.window.add(name, time.monotonic() - runner.begun)
                await self.breaker.record(name, True)
            else:
                self.window.add(name, self.timings.first_token_timeout_s)
                await self.breaker.record(name, False)
                if runner.hold_s:
                    await self.breaker.hold(name, runner.hold_s)
        finally:
            await runner.cancel()

    async def _follow(
        self, ctx: _Answer, winner: _Runner, first_piece: str, max_chars: int | None
    ) -> AsyncIterator[str]:
        """Stream the winner to its end. ``winner.failure`` is set when it broke off."""
        result, attempt = ctx.result, winner.attempt
        piece = first_piece
        while True:
            if max_chars is not None:
                piece = piece[: max(0, max_chars - len(result.text))]
            if piece:
                result.text += piece
                yield piece
            if max_chars is not None and len(result.text) >= max_chars:
                await winner.stop("incomplete", "answer_too_long")
                result.truncated = True
                result.model = winner.link.name
                result.error = f"{winner.link.name}: answer_too_long"
                return
            kind, payload = await winner.next()
            if kind == "chunk":
                piece = str(payload)
                continue
            if kind == "end":
                await self.breaker.record(winner.link.name, True)
                attempt.outcome = "answered"
                attempt.ended_ms = _ms(ctx.started)
                self._estimate_usage(winner.link, attempt, winner.prompt, winner.shown)
                result.no_answer = attempt.no_answer
                result.model = winner.link.name
                result.complete = True
                result.error = None
                return
            # Text was shown: never present a broken stream as a complete answer.
            exc = payload if isinstance(payload, BaseException) else RuntimeError(payload)
            winner.failure = exc
            error = "stalled" if isinstance(exc, Stalled) else classify(exc)
            await winner.stop("incomplete", error)
            if error == "content_refusal":
                result.refused = True
            else:
                await self.breaker.record(winner.link.name, False)
            result.model = winner.link.name
            result.error = f"{winner.link.name}: {attempt.error} after partial output"
            return

    async def _take_over(self, ctx: _Answer, stalled: _Runner) -> tuple[_Runner, str] | None:
        """The links after the stalled one race to carry the answer on: a hosted model is
        given the text so far and asked to continue it; the offline model (offered only when
        the sink can replace the text) answers from the start."""
        index = next(i for i, link in enumerate(self.chain) if link.name == stalled.link.name)
        links = [
            link
            for link in self.chain[index + 1 :]
            if ctx.replace is not None or not self._last_resort(link)
        ]
        if not links or time.monotonic() >= ctx.deadline:
            return None
        partial = ctx.result.text
        instruction = continuation_prompt()

        def compose(link: RegisteredModel) -> list[BaseMessage]:
            if self._last_resort(link):
                return self._messages(ctx, link)
            return [
                SystemMessage(ctx.system),
                HumanMessage(ctx.user),
                AIMessage(partial),
                HumanMessage(instruction),
            ]

        found = await self._race(ctx, links, compose, stalled=stalled.link.name)
        if found is not None:
            verb = "Restarted by" if self._last_resort(found[0].link) else "Continued by"
            ctx.result.notes.append(
                f"{verb} {found[0].link.name} after {stalled.link.name} stalled."
            )
        return found

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
        last_text = time.monotonic()  # chunks without text are no sign of life
        try:
            while True:
                now = time.monotonic()
                remaining = deadline - now
                if remaining <= 0:
                    raise TimeoutError("total deadline")
                if first:
                    wait = self.timings.first_token_timeout_s
                else:
                    wait = last_text + self.timings.stall_timeout_s - now
                try:
                    chunk = await asyncio.wait_for(
                        stream.__anext__(), max(0.0, min(wait, remaining))
                    )
                except StopAsyncIteration:
                    return
                except TimeoutError:
                    if not first and wait <= remaining:
                        raise Stalled(f"silent for {self.timings.stall_timeout_s:g}s") from None
                    raise
                if not isinstance(chunk, AIMessageChunk):
                    continue
                self._take_usage(link, attempt, chunk)
                text = chunk.content if isinstance(chunk.content, str) else chunk.text
                if text:
                    if first:
                        attempt.first_token_ms = _ms(started)
                        first = False
                    last_text = time.monotonic()
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
        if router._last_resort(link):
            # The local model is the last resort: under a burst its CPU time may pass a
            # remote model's first-token deadline, and giving up on it leaves no answer at all.
            self.first_deadline = max(self.first_deadline, deadline)
        self.shown = ""
        self.failure: BaseException | None = None  # why the stream broke off after text
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
        await self.cancel()
        self.settle(outcome, error)

    async def cancel(self) -> None:
        if not self.task.done():
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task

    def settle(self, outcome: str, error: str | None) -> Attempt:
        """Record this attempt's outcome and bill it; a copy of the record, for a call that
        runs on after its attempt was recorded (a lost race being judged)."""
        self.attempt.outcome = outcome
        self.attempt.error = error
        self.attempt.ended_ms = self.attempt.ended_ms or _ms_since(self.begun, self.attempt)
        if not (outcome == "failed" and not self.shown):
            # (a rejected request, 4xx/5xx or a refused connection, is not billed)
            self.router._estimate_usage(self.link, self.attempt, self.prompt, self.shown)
        return dataclasses.replace(self.attempt, notes=list(self.attempt.notes))


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
