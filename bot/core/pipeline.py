"""The question pipeline: identity -> limits -> access -> retrieve -> prompt -> generate ->
emit -> record. Slack-free and async; a front end builds a Question and a Sink and calls
``Pipeline.ask``. Every question that reaches ``ask`` is recorded exactly once, whatever
happens on the way.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from bot.config import WorkspaceConfig
from bot.core.access import AccessDecision, AccessPolicy, ActiveGrant
from bot.core.budgets import Budgets, refusal_message
from bot.core.citations import CitationNumbers
from bot.core.generate import Generation, ModelRouter
from bot.core.greeting import greeting_reply
from bot.core.identity import IdentityResolver, UnknownPerson
from bot.core.labels import Labels
from bot.core.limits import RateLimiter
from bot.core.offers import offer_note, offers
from bot.core.offline import AnswerContext, PassageView, estimate_tokens
from bot.core.prompts import PromptTemplate
from bot.core.query import Understood, small_talk, understand
from bot.core.redaction import Redactor
from bot.core.retrieve import Retrieval, Retriever
from bot.core.review import ReviewDesk
from bot.core.rewrite import QueryRewriter
from bot.core.sinks import Sink
from bot.core.synonyms import Vocabulary
from bot.core.types import Asker, Attempt, ExchangeResult, Passage, Question, Turn
from bot.telemetry import record_exchange as record_metrics
from bot.telemetry import request_id, tracer

log = logging.getLogger("concierge.pipeline")

PRIVATE_NOTE = (
    "A fuller answer is available privately from sources only you can see: "
    "ask me in a direct message."
)
REFUSED_NOTE = (
    "The {model} model declined to answer this under its provider's content policy. "
    "Try rephrasing the question, or ask the source's owner directly."
)
STOPPED_NOTE = "\n\n…(Concierge restarted before finishing this answer.)"
# The message a front end cancels an answer's task with when the person stopped it (Ctrl-C
# in the terminal): ``task.cancel(ASKER_STOPPED)``.
ASKER_STOPPED = "concierge: stopped by the asker"
ASKER_STOPPED_NOTE = "\n\n…(You stopped this answer.)"
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
    rewriter: QueryRewriter | None = None  # optional hosted query rewrite (retrieval.rewrite)
    synonyms: Vocabulary | None = None  # query expansion (built-in and retrieval.synonyms)


@dataclass
class Run:
    """One question's state as it passes through the steps (each step fills its part)."""

    question: Question
    result: ExchangeResult
    emit: Callable[[str], Awaitable[None]]
    sink: Sink
    text: str
    asker: Asker = field(default_factory=lambda: Asker(""))
    step_down: bool = False
    access: AccessDecision = field(
        default_factory=lambda: AccessDecision(frozenset(), (), (), frozenset())
    )
    turns: tuple[Turn, ...] = ()
    asked: Understood = field(default_factory=lambda: Understood(""))
    rewrite: Attempt | None = None  # the query rewrite's call, when one was made
    found: Retrieval = field(default_factory=Retrieval)
    nearest: list[tuple[str, Passage]] = field(default_factory=list)
    carried: Labels = field(default_factory=Labels)
    system: str = ""
    user: str = ""
    shrink: Callable[[int], tuple[str, str] | None] | None = None
    held: set[str] = field(default_factory=set)
    gen: Generation = field(default_factory=Generation)
    buffered: list[str] | None = None
    numbers: CitationNumbers = field(default_factory=lambda: CitationNumbers(0))
    out: Callable[[str], Awaitable[None]] = field(default=lambda _piece: asyncio.sleep(0))


def visible_turns(turns: tuple[Turn, ...], access: AccessDecision) -> tuple[Turn, ...]:
    """The turns whose labels every reader of the audience satisfies (private: the asker)."""
    return tuple(t for t in turns if t.labels.readable_by(access.audience_principals))


NEAREST = 3


def too_weak(passages: list[Passage], floor: float) -> bool:
    """True when every passage says how relevant it is and even the best is below
    ``floor``: an answer from them would be a stretch (sources that cannot tell, such as
    sql rows, never make a question unanswerable this way)."""
    scores = [p.relevance for p in passages]
    return bool(scores) and floor > 0 and all(s is not None and s < floor for s in scores)


RELATIVE_FLOOR = 0.5


def keep_relevant(passages: list[Passage], floor: float) -> list[Passage]:
    """The passages at least ``floor`` and RELATIVE_FLOOR of the best one's relevance (a
    passage that cannot tell its relevance is kept)."""
    best = max((p.relevance for p in passages if p.relevance is not None), default=0.0)
    cut = max(floor, RELATIVE_FLOOR * best)
    return [p for p in passages if p.relevance is None or p.relevance >= cut]


def nearest_documents(passages: list[Passage]) -> list[tuple[str, Passage]]:
    """The titles of the best few distinct documents, as places to look, each with the
    passage it comes from (whose labels the title carries)."""
    out: list[tuple[str, Passage]] = []
    for p in passages:
        label = f"{p.title} ({p.source})" if p.title else p.source
        if label not in (x for x, _ in out):
            out.append((label, p))
        if len(out) == NEAREST:
            break
    return out


def answer_context(asked: Understood, passages: list[Passage]) -> dict[str, object]:
    """The structured prompt for the offline model: the same passages, in the same order
    and numbering as the rendered prompt, and the question as understood."""
    views = tuple(
        PassageView(i, p.title, p.text, p.section or "", p.updated or "")
        for i, p in enumerate(passages, 1)
    )
    return AnswerContext(asked.question, views, asked.borrowed, asked.related).to_kwargs()


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

    def _stored_question(self, text: str, result: ExchangeResult | None = None) -> str:
        """The question as it may be stored and logged: redacted per config."""
        if not self.deps.config.redaction.questions:
            return text
        found = Redactor(self.deps.config.redaction.detectors).redact(text)
        if result is not None:
            result.redactions = dict(found.counts)
        return found.text

    def _redact_prompts(self, result: ExchangeResult) -> None:
        """The prompts kept with each attempt hold the question too: stored redacted."""
        if not self.deps.config.redaction.questions:
            return
        redactor = Redactor(self.deps.config.redaction.detectors)
        for attempt in result.attempts:
            attempt.prompt = [
                {**m, "content": redactor.redact(m.get("content", "")).text} for m in attempt.prompt
            ]

    def _new_result(self, question: Question) -> ExchangeResult:
        result = ExchangeResult(
            exchange_id=str(uuid.uuid4()),
            asker=question.asker_ref,
            asker_ref=question.asker_ref,
            question=question.text,  # replaced by its redacted form just below
            surface=question.surface,
            channel=question.channel_ref or question.audience.channel,
            thread=question.thread,
            audience=question.audience.label,
            prompt_name=self.deps.prompt.name,
            prompt_version=self.deps.prompt.version,
            request_key=question.request_key,
        )
        result.question = self._stored_question(question.text, result)
        return result

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
        result = self._new_result(question)
        # Every log line written while answering carries this id (the exchange's own).
        token = request_id.set(result.exchange_id)
        try:
            with tracer.start_as_current_span("concierge.question") as span:
                span.set_attribute("concierge.exchange_id", result.exchange_id)
                span.set_attribute("concierge.surface", question.surface)
                await self._answer(question, sink, result)
                span.set_attribute("concierge.outcome", result.outcome)
        finally:
            request_id.reset(token)
        return result

    async def _answer(self, question: Question, sink: Sink, result: ExchangeResult) -> None:
        started = question.received_at
        first_chunk: list[float] = []
        shown: list[str] = []

        async def emit(text: str) -> None:
            if not first_chunk:
                first_chunk.append(time.perf_counter())
            shown.append(text)
            await sink.write(text)

        try:
            await self._run(question, result, emit, sink)
        except asyncio.CancelledError as exc:
            # The process is stopping and its grace period is over, or the person stopped the
            # answer (a front end cancels with ASKER_STOPPED): the person keeps what was
            # shown, with a note saying why it ends there; the record says incomplete.
            by_asker = ASKER_STOPPED in exc.args
            note = ASKER_STOPPED_NOTE if by_asker else STOPPED_NOTE
            result.outcome = "incomplete"
            result.error = (
                "cancelled: the asker stopped the answer"
                if by_asker
                else "cancelled: the process stopped before the answer finished"
            )
            result.answer = "".join(shown) + note
            await _to_the_end(self._write_quietly(sink, note))
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
            await _to_the_end(self._close_and_record(sink, result))
            record_metrics(result)
        if result.outcome == "pending_review" and self.deps.reviews is not None:
            try:
                review = await self.deps.reviews.hold(
                    result, result.draft or "", set(result.review_sources)
                )
                result.review_id = review.id
            except Exception:
                log.exception("could not hold exchange %s for review", result.exchange_id)

    async def _write_quietly(self, sink: Sink, text: str) -> None:
        try:
            await sink.write(text)
        except Exception:
            log.exception("could not write the closing note")

    async def _close_and_record(self, sink: Sink, result: ExchangeResult) -> None:
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
        # After the person has the whole answer: redacting the kept prompts costs a few ms.
        self._redact_prompts(result)
        with tracer.start_as_current_span("concierge.record"):
            await self._record(result)

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
        """The named steps in order; each is one trace span and may end the question."""
        run = Run(question, result, emit, sink, text=question.text.strip())
        for name, step in (
            ("identity", self._identity),
            ("limits", self._limits),
            ("access", self._access),
            ("small_talk", self._small_talk),
            ("verified", self._verified),
            ("retrieve", self._retrieve),
            ("prompt", self._prompt),
            ("generate", self._generate),
            ("emit", self._finish),
        ):
            with tracer.start_as_current_span(f"concierge.{name}") as span:
                go_on = await step(run)
                span.set_attribute("concierge.outcome", result.outcome)
            if not go_on:
                return

    # -- 1 identity ---------------------------------------------------------------------------
    async def _identity(self, run: Run) -> bool:
        try:
            run.asker = await self.deps.identity.resolve(run.question.asker_ref)
        except UnknownPerson as exc:
            await self._refuse(
                run.result, run.emit, f"I don't know who you are: {exc}", "unknown_person"
            )
            return False
        run.result.asker = run.asker.email
        return True

    # -- 2 limits: length, rate, cost budgets ---------------------------------------------------
    async def _limits(self, run: Run) -> bool:
        cfg, text, result = self.deps.config, run.text, run.result
        if len(text) > cfg.limits.max_question_chars:
            result.question = self._stored_question(
                text[: cfg.limits.max_question_chars] + f" … [truncated from {len(text)} chars]"
            )
            await self._refuse(
                result,
                run.emit,
                f"Your question is {len(text):,} characters long; the limit is "
                f"{cfg.limits.max_question_chars:,}. Please shorten it and ask again.",
                "too_long",
            )
            return False
        decision = await self.deps.limiter.check(run.asker.email)
        if not decision.allowed:
            await self._refuse(
                result,
                run.emit,
                "You're asking faster than I can keep up with. Please try again in "
                f"{max(1, round(decision.retry_after_s))} seconds.",
                "rate_limited",
            )
            return False
        if self.deps.budgets is not None:
            budget = await self.deps.budgets.check(run.asker.email)
            if not budget.allowed:
                await self._refuse(
                    result,
                    run.emit,
                    refusal_message(budget, self.deps.budgets.clock()),
                    budget.reason or "budget",
                )
                return False
            run.step_down = budget.step_down
        return True

    # -- 3 access -----------------------------------------------------------------------------
    async def _access(self, run: Run) -> bool:
        grants = await self.deps.grants()
        run.access = self.deps.policy.decide(run.asker, run.question.audience, grants)
        if not run.access.readable:
            await self._refuse(
                run.result,
                run.emit,
                "You don't have access to any sources yet. Ask an admin for access"
                + (f" ({', '.join(self.deps.config.admins)})." if self.deps.config.admins else "."),
                "no_access",
            )
            return False
        return True

    # -- "hi", "thanks": what Concierge can do and which sources, not "no answer" -----------------
    async def _small_talk(self, run: Run) -> bool:
        """Recorded as ``answered`` with no model and no sources: the person got a complete
        reply, and a greeting is no gap in the documents (``no_answer`` would put "hi" in
        the owners' list of questions to fix)."""
        kind = small_talk(run.text)
        if kind is None:
            return True
        result = run.result
        result.outcome = "answered"
        result.answer = greeting_reply(
            kind,
            asker=run.asker,
            access=run.access,
            workspace=self.deps.config.name,
            private=run.question.audience.is_private,
        )
        await run.emit(result.answer)
        return False

    # -- a verified answer to this question, still true of its documents, comes first ----------
    async def _verified(self, run: Run) -> bool:
        if self.deps.reviews is None:
            return True
        verified = await self.deps.reviews.verified_for(run.text, run.access)
        if verified is None:
            return True
        result = run.result
        result.outcome = "answered"
        result.answer = verified.text
        result.labels = verified.labels
        result.verified_answer_id = verified.row.id
        result.sources = [dict(c) for c in verified.row.citations]
        result.sources_searched = []
        await run.emit(verified.text)
        return False

    # -- 4 retrieve ---------------------------------------------------------------------------
    async def _retrieve(self, run: Run) -> bool:
        cfg, result = self.deps.config, run.result
        # Earlier turns of the thread that every reader here may read (their labels): a turn
        # answered from a source this audience may not read never reaches the prompt.
        run.turns = visible_turns(run.question.history, run.access)
        # Greetings, mentions and pasted codes removed; a follow-up borrows from the visible
        # turns only, an unrelated next question stands on its own.
        run.asked = understand(run.text, run.turns)
        query = run.asked.query
        if self.deps.synonyms is not None:
            # The group-mates of the words used ("vacation" -> "paid time off") widen the
            # search; the offline model gives them part of a question word's credit.
            exact = self.deps.synonyms.exact.expand(run.asked.question)
            if exact:  # the workspace's own words: part of the question
                run.asked = dataclasses.replace(run.asked, question=f"{run.asked.question} {exact}")
                query = f"{query} {exact}"
            more = self.deps.synonyms.related.expand(run.asked.question)
            if more:
                query = f"{query} {more}"
                run.asked = dataclasses.replace(run.asked, related=more)
        if self.deps.rewriter is not None:
            # Search terms from a hosted model, searched beside the words the person used.
            rewritten = await self.deps.rewriter.rewrite(run.asked, run.turns)
            run.rewrite = rewritten.attempt
            if rewritten.terms:
                # Weighed like borrowed words: below the person's own (the offline model).
                borrowed = f"{run.asked.borrowed} {rewritten.terms}".strip()
                run.asked = dataclasses.replace(run.asked, borrowed=borrowed)
                query = f"{query} {rewritten.terms}"
        run.found = await self.deps.retriever.retrieve(
            query=query,
            access=run.access,
            audience=run.question.audience,
            k=cfg.retrieval.top_k,
        )
        found = run.found
        run.nearest = nearest_documents(found.passages)
        if too_weak(found.passages, cfg.retrieval.min_relevance):
            found.passages = []  # nothing relevant enough: no model is asked to stretch it
        else:  # far weaker passages add noise (and labels) to the prompt, not evidence
            found.passages = keep_relevant(found.passages, cfg.retrieval.min_relevance)
        result.sources_searched = found.searched
        result.sources_withheld = found.withheld_sources
        result.private_answer_available = bool(found.withheld)
        result.notices.extend(found.failures)
        if found.failed_sources:
            result.error = "sources unavailable: " + ", ".join(found.failed_sources)
        return True

    # -- 5 prompt -----------------------------------------------------------------------------
    async def _prompt(self, run: Run) -> bool:
        cfg, found, text = self.deps.config, run.found, run.text
        history = run.turns[-cfg.retrieval.history_turns :] if cfg.retrieval.history_turns else ()
        # Everything the prompt carries; which models may receive it is decided on all of it.
        run.carried = Labels.join_all(
            [*(p.labels for p in found.passages), *(t.labels for t in history)]
        )
        run.result.labels = run.carried
        run.system, run.user = self.deps.prompt.render(
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

        run.shrink = shrink
        # Sources whose answers a person reviews first: the answer is held, not streamed.
        if self.deps.reviews is not None:
            run.held = self.deps.reviews.needs_review(
                {p.source for p in found.passages},
                run.asker.email if run.asker.is_full_member else "",
                run.question.audience.is_private,
            )
        return True

    # -- 6 generate + 7 emit --------------------------------------------------------------------
    async def _generate(self, run: Run) -> bool:
        buffered: list[str] | None = [] if run.held else None
        run.buffered = buffered

        async def out(piece: str) -> None:
            if buffered is None:
                await run.emit(piece)
            else:
                buffered.append(piece)

        run.out = out

        async def replace() -> None:  # another model starts the answer over
            # Its citations are numbered afresh, and only its text is the answer.
            run.numbers = CitationNumbers(len(run.found.passages))
            if buffered is None:
                await run.sink.replace("")
            else:
                buffered.clear()

        router = self.deps.router
        if run.step_down and self.deps.step_down_router is not None:
            router = self.deps.step_down_router
            await run.sink.status(
                "You're close to the cost budget, so a cheaper model is answering."
            )
        # With nothing to answer from, only the free offline model is asked (it says so).
        if not run.found.passages:
            router = router.last_resort()
        # Citations renumbered in the order the answer cites them, as the text streams.
        run.numbers = CitationNumbers(len(run.found.passages))
        async for piece in router.stream(
            system=run.system,
            user=run.user,
            data_classes=set(run.carried.classes),
            result=run.gen,
            status=run.sink.status,
            started=run.question.received_at,
            shrink=run.shrink,
            max_chars=self.deps.config.limits.max_answer_chars,
            context=answer_context(run.asked, run.found.passages),
            replace=replace,
        ):
            shown = run.numbers.feed(piece)
            if shown:
                await out(shown)
        tail = run.numbers.flush()
        if tail:
            await out(tail)
        return True

    # -- the answer's notes, citations and outcome ------------------------------------------------
    async def _finish(self, run: Run) -> bool:
        gen, found, result, out = run.gen, run.found, run.result, run.out
        cfg = self.deps.config
        answer = run.numbers.text  # the model's text with its citations renumbered
        notes: list[str] = []
        if gen.refused:
            notes.append(
                ("\n\n" if gen.text else "") + REFUSED_NOTE.format(model=gen.model or "the model")
            )
        elif gen.truncated:
            notes.append(
                f"\n\n(The answer was cut at {cfg.limits.max_answer_chars:,} characters, "
                "the longest this workspace allows.)"
            )
        elif not gen.complete and gen.text:
            notes.append("\n\n(The answer was cut off: the model stopped before finishing.)")
        notes.extend(f"\n\n({note})" for note in gen.notes)
        if result.notices:
            notes.append(
                "\n\n(Note: " + "; ".join(result.notices) + ", so this answer may be incomplete.)"
            )
        if (gen.no_answer or not found.passages) and run.nearest and not gen.refused:
            # Titles only, of passages this audience may read (already filtered).
            notes.append(
                "\n\nThe nearest documents, which may help: "
                + "; ".join(title for title, _ in run.nearest)
                + "."
            )
            # The titles are document text: the answer now carries their labels too.
            result.labels = Labels.join_all([result.labels, *(p.labels for _, p in run.nearest)])
        offered = offers(
            cfg,
            access=run.access,
            asker=run.asker,
            audience=run.question.audience,
            surface=run.question.surface,
            question=run.text,
            unanswered=gen.no_answer or not found.passages,
        )
        if offered:
            result.requestable = [s.name for s in offered]
            note = offer_note(cfg, offered, surface=run.question.surface, email=run.asker.email)
            notes.append("\n\n" + note)
        if result.private_answer_available:
            private = PRIVATE_SENT_NOTE if run.question.private_followup else PRIVATE_NOTE
            notes.append(f"\n\n_{private}_")
        for note in notes:
            answer += note
            await out(note)
        result.answer = answer
        self._usage(run)
        self._outcome(run)
        if result.outcome == "failed":
            msg = "Sorry, no model could answer right now. Please try again in a minute."
            result.answer = msg
            await run.emit(msg)
        await self._hold_or_release(run)
        return True

    @staticmethod
    def _usage(run: Run) -> None:
        gen, result = run.gen, run.result
        result.model = gen.model
        result.models_tried = gen.models_tried
        # The query rewrite's call is recorded and paid for, but it answered nothing.
        attempts = ([run.rewrite] if run.rewrite is not None else []) + gen.attempts
        result.attempts = attempts
        result.input_tokens = sum(a.input_tokens for a in attempts)
        result.output_tokens = sum(a.output_tokens for a in attempts)
        result.tokens_estimated = any(a.tokens_estimated for a in attempts)
        result.cost_usd = sum(a.cost_usd for a in attempts) + run.found.embedding_cost_usd

    @staticmethod
    def _outcome(run: Run) -> None:
        """The sources, numbered as the answer cites them (every passage when it cites none),
        each with its document's date; and what happened."""
        gen, found, result = run.gen, run.found, run.result
        chosen = [found.passages[n - 1] for n in run.numbers.cited]
        if not chosen and not gen.no_answer:
            chosen = list(found.passages)
        for ref, p in enumerate(chosen, 1):
            result.sources.append(
                {"ref": ref, **p.citation(), "location": p.location, "date": p.updated}
            )
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

    async def _hold_or_release(self, run: Run) -> None:
        """A held answer becomes a draft for review (the asker is told who reviews it);
        otherwise what was buffered is shown."""
        if run.buffered is None:
            return
        result, gen = run.result, run.gen
        needing = run.held & {str(c["source"]) for c in result.sources}
        if needing and gen.text and not gen.refused:
            result.draft, result.answer = result.answer, self._review_notice(needing)
            result.review_sources = sorted(needing)
            result.outcome = "pending_review"
            await run.emit(result.answer)
        else:
            for piece in run.buffered:
                await run.emit(piece)
