"""The question pipeline: identity -> limits -> access -> retrieve -> prompt -> generate ->
emit -> record. Slack-free and async; a front end builds a Question and a Sink and calls
``Pipeline.ask``. Every question that reaches ``ask`` is recorded exactly once, whatever
happens on the way.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bot.config import Source, WorkspaceConfig
from bot.core.access import AccessDecision, AccessPolicy, ActiveGrant
from bot.core.budgets import Budgets, refusal_message
from bot.core.generate import Generation, ModelRouter
from bot.core.identity import IdentityResolver, UnknownPerson
from bot.core.labels import Labels
from bot.core.limits import RateLimiter
from bot.core.offline import estimate_tokens
from bot.core.prompts import PromptTemplate
from bot.core.retrieve import Retrieval, Retriever
from bot.core.review import ReviewDesk
from bot.core.sinks import Sink
from bot.core.types import Asker, ExchangeResult, Question, Turn

log = logging.getLogger("concierge.pipeline")

CITATION = re.compile(r"\[(\d+)\]")
PRIVATE_NOTE = (
    "A fuller answer is available privately from sources only you can see: "
    "ask me in a direct message."
)
REFUSED_NOTE = (
    "The {model} model declined to answer this under its provider's content policy. "
    "Try rephrasing the question, or ask the source's owner directly."
)
STOPPED_NOTE = "\n\n…(Concierge restarted before finishing this answer.)"
PRIVATE_SENT_NOTE = "A fuller answer from sources only you can see has been sent to you privately."


async def _to_the_end(work: Awaitable[None]) -> None:
    """Run ``work`` to its end even if this task is cancelled meanwhile (the stream must be
    closed and the exchange recorded), then let the cancellation go on."""
    future = asyncio.ensure_future(work)
    try:
        await asyncio.shield(future)
    except asyncio.CancelledError:
        await future
        raise


@dataclass
class PipelineDeps:
    config: WorkspaceConfig
    identity: IdentityResolver
    limiter: RateLimiter
    policy: AccessPolicy
    grants: Callable[[], Awaitable[list[ActiveGrant]]]
    retriever: Retriever
    prompt: PromptTemplate
    router: ModelRouter
    recorder: Callable[[ExchangeResult], Awaitable[None]]
    budgets: Budgets | None = None
    step_down_router: ModelRouter | None = None  # cheaper chain near a budget's soft limit
    reviews: ReviewDesk | None = None  # human review and verified answers


def visible_turns(turns: tuple[Turn, ...], access: AccessDecision) -> tuple[Turn, ...]:
    """The turns whose labels every reader of the audience satisfies (private: the asker)."""
    return tuple(t for t in turns if t.labels.readable_by(access.audience_principals))


def trim_history(turns: tuple[Turn, ...], max_turns: int, max_tokens: int) -> tuple[Turn, ...]:
    """The most recent turns that fit both the turn count and the token budget."""
    kept: list[Turn] = []
    used = 0
    for turn in reversed(turns[-max_turns:] if max_turns else ()):
        cost = estimate_tokens(turn.question) + estimate_tokens(turn.answer)
        if used + cost > max_tokens:
            break
        kept.append(turn)
        used += cost
    return tuple(reversed(kept))


class Pipeline:
    def __init__(self, deps: PipelineDeps) -> None:
        self.deps = deps

    def _new_result(self, question: Question) -> ExchangeResult:
        return ExchangeResult(
            exchange_id=str(uuid.uuid4()),
            asker=question.asker_ref,
            asker_ref=question.asker_ref,
            question=question.text,
            surface=question.surface,
            channel=question.channel_ref or question.audience.channel,
            thread=question.thread,
            audience=question.audience.label,
            prompt_name=self.deps.prompt.name,
            prompt_version=self.deps.prompt.version,
            request_key=question.request_key,
        )

    async def record_unanswerable(self, question: Question, reason: str) -> ExchangeResult:
        """A question the front end has no place to answer (a payload without a channel):
        recorded as failed and undelivered, with the reason, so it is not lost. No step runs
        (nothing could be shown, so nothing is searched or generated)."""
        result = self._new_result(question)
        result.error = reason
        result.delivery = "failed"
        await self._record(result)
        return result

    async def ask(self, question: Question, sink: Sink) -> ExchangeResult:
        started = question.received_at
        result = self._new_result(question)
        first_chunk: list[float] = []
        shown: list[str] = []

        async def emit(text: str) -> None:
            if not first_chunk:
                first_chunk.append(time.perf_counter())
            shown.append(text)
            await sink.write(text)

        try:
            await self._run(question, result, emit, sink)
        except asyncio.CancelledError:
            # The process is stopping and its grace period is over: the person keeps what was
            # shown, with a note saying why it ends there; the record says incomplete.
            result.outcome = "incomplete"
            result.error = "cancelled: the process stopped before the answer finished"
            result.answer = "".join(shown) + STOPPED_NOTE
            await _to_the_end(self._write_quietly(sink, STOPPED_NOTE))
            raise
        except Exception as exc:
            log.exception("exchange %s failed", result.exchange_id)
            result.outcome = "failed"
            result.error = exc.__class__.__name__
            if not first_chunk:
                result.answer = "Sorry, something went wrong while answering. It has been logged."
                await emit(result.answer)
        finally:
            end = time.perf_counter()
            result.ttft_ms = (first_chunk[0] - started) * 1000 if first_chunk else None
            result.total_ms = (end - started) * 1000
            await _to_the_end(self._finish(sink, result))
        if result.outcome == "pending_review" and self.deps.reviews is not None:
            try:
                review = await self.deps.reviews.hold(
                    result, result.draft or "", set(result.review_sources)
                )
                result.review_id = review.id
            except Exception:
                log.exception("could not hold exchange %s for review", result.exchange_id)
        return result

    async def _write_quietly(self, sink: Sink, text: str) -> None:
        try:
            await sink.write(text)
        except Exception:
            log.exception("could not write the closing note")

    async def _finish(self, sink: Sink, result: ExchangeResult) -> None:
        """Close the sink (the stream ends whatever happened), then record what the person
        was shown: an answer whose delivery failed is never recorded as ``answered``."""
        try:
            await sink.close(result)
        except Exception:
            log.exception("could not deliver exchange %s", result.exchange_id)
            result.delivery = "failed" if result.delivery == "delivered" else result.delivery
        if result.delivery != "delivered" and result.outcome == "answered":
            result.outcome = "incomplete"
            result.error = result.error or f"delivery {result.delivery}"
        await self._record(result)

    def _offers(self, access: AccessDecision, question: str, unanswered: bool) -> list[Source]:
        """Requestable sources the asker may not read, when they name one or nothing they may
        read answered. Decided from names only: such a source is never searched."""
        readable = {s.name for s in access.readable}
        candidates = [
            s for s in self.deps.config.sources if s.requestable and s.name not in readable
        ]
        low = question.lower()
        named = [
            s
            for s in candidates
            if s.name in low
            or s.name.replace("-", " ") in low
            or (s.title is not None and s.title.lower() in low)
        ]
        return named or (candidates[:3] if unanswered else [])

    def _review_notice(self, sources: set[str]) -> str:
        cfg = self.deps.config
        names = []
        people: list[str] = []
        for name in sorted(sources):
            source = cfg.source(name)
            if source is not None:
                names.append(source.title or source.name)
                people += [p for p in cfg.reviewers(source) if p not in people]
        who = ", ".join(people) or "its owner"
        return (
            f"This answer draws on {', '.join(names)}, which {who} reviews before answers are "
            "shared. I'll send it to you here as soon as it's approved."
        )

    async def _record(self, result: ExchangeResult) -> None:
        try:
            await self.deps.recorder(result)
        except Exception:
            log.exception("could not record exchange %s", result.exchange_id)
            raise
        if self.deps.budgets is not None and result.cost_usd > 0:
            try:
                await self.deps.budgets.charge(result.asker, result.cost_usd)
            except Exception:  # the exchange is recorded; the ledger reseeds from the store
                log.exception("could not charge exchange %s to the budgets", result.exchange_id)

    async def _refuse(
        self,
        result: ExchangeResult,
        emit: Callable[[str], Awaitable[None]],
        message: str,
        reason: str,
    ) -> None:
        result.outcome = "refused"
        result.error = reason
        result.answer = message
        await emit(message)

    async def _run(
        self,
        question: Question,
        result: ExchangeResult,
        emit: Callable[[str], Awaitable[None]],
        sink: Sink,
    ) -> None:
        cfg = self.deps.config
        # 1 identity
        try:
            asker: Asker = await self.deps.identity.resolve(question.asker_ref)
        except UnknownPerson as exc:
            await self._refuse(result, emit, f"I don't know who you are: {exc}", "unknown_person")
            return
        result.asker = asker.email
        # 2 limits
        text = question.text.strip()
        if len(text) > cfg.limits.max_question_chars:
            result.question = (
                text[: cfg.limits.max_question_chars] + f" … [truncated from {len(text)} chars]"
            )
            await self._refuse(
                result,
                emit,
                f"Your question is {len(text):,} characters long; the limit is "
                f"{cfg.limits.max_question_chars:,}. Please shorten it and ask again.",
                "too_long",
            )
            return
        decision = await self.deps.limiter.check(asker.email)
        if not decision.allowed:
            await self._refuse(
                result,
                emit,
                "You're asking faster than I can keep up with. Please try again in "
                f"{max(1, round(decision.retry_after_s))} seconds.",
                "rate_limited",
            )
            return
        step_down = False
        if self.deps.budgets is not None:
            budget = await self.deps.budgets.check(asker.email)
            if not budget.allowed:
                await self._refuse(
                    result,
                    emit,
                    refusal_message(budget, self.deps.budgets.clock()),
                    budget.reason or "budget",
                )
                return
            step_down = budget.step_down
        # 3 access
        grants = await self.deps.grants()
        access: AccessDecision = self.deps.policy.decide(asker, question.audience, grants)
        if not access.readable:
            await self._refuse(
                result,
                emit,
                "You don't have access to any sources yet. Ask an admin for access.",
                "no_access",
            )
            return
        # A verified answer to this question, still true of its documents, comes first.
        if self.deps.reviews is not None:
            verified = await self.deps.reviews.verified_for(text, access)
            if verified is not None:
                result.outcome = "answered"
                result.answer = verified.text
                result.labels = verified.labels
                result.verified_answer_id = verified.row.id
                result.sources = [dict(c) for c in verified.row.citations]
                result.sources_searched = []
                await emit(verified.text)
                return
        # Earlier turns of the thread that every reader here may read (their labels): a turn
        # answered from a source this audience may not read never reaches the prompt.
        turns = visible_turns(question.history, access)
        # 4 retrieve
        query = " ".join([*(t.question for t in turns[-1:]), text])
        found: Retrieval = await self.deps.retriever.retrieve(
            query=query, access=access, audience=question.audience, k=cfg.retrieval.top_k
        )
        result.sources_searched = found.searched
        result.sources_withheld = found.withheld_sources
        result.private_answer_available = bool(found.withheld)
        result.notices.extend(found.failures)
        if found.failed_sources:
            result.error = "sources unavailable: " + ", ".join(found.failed_sources)
        # 5 prompt
        history = turns[-cfg.retrieval.history_turns :] if cfg.retrieval.history_turns else ()
        # Everything the prompt carries; which models may receive it is decided on all of it.
        carried = Labels.join_all(
            [*(p.labels for p in found.passages), *(t.labels for t in history)]
        )
        result.labels = carried
        system, user = self.deps.prompt.render(
            question=text, passages=found.passages, history=history, workspace=cfg.name
        )
        # A smaller prompt after a context-length error: first without the thread's history,
        # then with half the passages each time (best first), down to one.
        # Then each passage cut to half its length, twice.
        smaller: list[tuple[tuple[Turn, ...], int, int]] = []
        if history:
            smaller.append(((), len(found.passages), 1))
        n = len(found.passages)
        while n > 1:
            n //= 2
            smaller.append(((), n, 1))
        if found.passages:
            smaller += [((), max(1, n), 2), ((), max(1, n), 4)]

        def shrink(level: int) -> tuple[str, str] | None:
            if level > len(smaller):
                return None
            turns, keep, divide = smaller[level - 1]
            passages = [
                dataclasses.replace(p, text=p.text[: max(40, len(p.text) // divide)])
                for p in found.passages[:keep]
            ]
            return self.deps.prompt.render(
                question=text, passages=passages, history=turns, workspace=cfg.name
            )

        # Sources whose answers a person reviews first: the answer is held, not streamed.
        held: set[str] = set()
        if self.deps.reviews is not None:
            held = self.deps.reviews.needs_review(
                {p.source for p in found.passages},
                # Only a full member can be the reviewer who skips reviewing themselves.
                asker.email if asker.is_full_member else "",
                question.audience.is_private,
            )
        buffered: list[str] | None = [] if held else None

        async def out(piece: str) -> None:
            if buffered is None:
                await emit(piece)
            else:
                buffered.append(piece)

        # 6 generate + 7 emit
        gen = Generation()
        # With nothing to answer from, only the free offline model is asked (it says so).
        router = self.deps.router
        if step_down and self.deps.step_down_router is not None:
            router = self.deps.step_down_router
            await sink.status("You're close to the cost budget, so a cheaper model is answering.")
        if not found.passages:
            router = router.last_resort()
        async for piece in router.stream(
            system=system,
            user=user,
            data_classes=set(carried.classes),
            result=gen,
            status=sink.status,
            started=question.received_at,
            shrink=shrink,
            max_chars=cfg.limits.max_answer_chars,
        ):
            await out(piece)
        answer = gen.text
        if gen.refused:
            note = ("\n\n" if gen.text else "") + REFUSED_NOTE.format(
                model=gen.model or "the model"
            )
            answer += note
            await out(note)
        elif gen.truncated:
            note = (
                f"\n\n(The answer was cut at {cfg.limits.max_answer_chars:,} characters, "
                "the longest this workspace allows.)"
            )
            answer += note
            await out(note)
        elif not gen.complete and gen.text:
            note = "\n\n(The answer was cut off: the model stopped before finishing.)"
            answer += note
            await out(note)
        if result.notices:
            note = (
                "\n\n(Note: " + "; ".join(result.notices) + ", so this answer may be incomplete.)"
            )
            answer += note
            await out(note)
        offers = self._offers(access, text, gen.no_answer or not found.passages)
        if offers:
            result.requestable = [s.name for s in offers]
            note = "\n\n" + " ".join(
                f"You can ask for access to {s.title or s.name} (owned by "
                f"{s.owner or 'the admins'}): request {s.name} because …."
                for s in offers
            )
            answer += note
            await out(note)
        if result.private_answer_available:
            note = f"\n\n_{PRIVATE_SENT_NOTE if question.private_followup else PRIVATE_NOTE}_"
            answer += note
            await out(note)
        result.answer = answer
        result.model = gen.model
        result.models_tried = gen.models_tried
        result.attempts = gen.attempts
        result.input_tokens = sum(a.input_tokens for a in gen.attempts)
        result.output_tokens = sum(a.output_tokens for a in gen.attempts)
        result.tokens_estimated = any(a.tokens_estimated for a in gen.attempts)
        result.cost_usd = sum(a.cost_usd for a in gen.attempts)
        cited = sorted({int(n) for n in CITATION.findall(gen.text)})
        chosen = [found.passages[n - 1] for n in cited if 0 < n <= len(found.passages)]
        if not chosen and not gen.no_answer:
            chosen = list(found.passages)
        numbers = cited if cited and chosen else list(range(1, len(chosen) + 1))
        for n, p in zip(numbers, chosen, strict=False):
            result.sources.append({"ref": n, **p.citation(), "location": p.location})
        if gen.refused:
            result.outcome = "refused"
            result.error = "content_refusal"
            result.sources = []
        elif gen.complete:
            if gen.no_answer or not found.passages:
                result.outcome = "no_answer"
                result.sources = []
            else:
                result.outcome = "answered"
        elif gen.text:
            result.outcome = "incomplete"
            result.error = gen.error
        else:
            result.outcome = "failed"
            result.error = gen.error or "no model could answer"
            msg = "Sorry, no model could answer right now. Please try again in a minute."
            result.answer = msg
            await emit(msg)
        if buffered is not None:
            needing = held & {str(c["source"]) for c in result.sources}
            if needing and gen.text and not gen.refused:
                result.draft, result.answer = result.answer, self._review_notice(needing)
                result.review_sources = sorted(needing)
                result.outcome = "pending_review"
                await emit(result.answer)
            else:
                for piece in buffered:
                    await emit(piece)
