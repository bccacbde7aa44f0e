"""Optional query rewrite before retrieval (``retrieval.rewrite`` in the config; off unless it
names a hosted model).

People ask with their own words and abbreviations ("how much PTO rolls over?"); documents use
their own ("annual leave carry-over"). A hosted model turns the question into search terms,
which are searched together with the question itself, so a poor rewrite can add noise but
never lose the words the person used.

What is sent, and to whom, follows the same rules as an answer prompt:
- only the cleaned question and the earlier questions a follow-up borrows (from the turns the
  audience may read); never passages, answers or anything retrieved;
- the model must accept every data class that text carries (the borrowed turns' labels; the
  question itself counts as ``internal``), else the step is skipped;
- ``redact: true`` models get the text redacted;
- it has its own deadline (``timeout_s``): on timeout or error the question is searched as
  asked. The call is an attempt of the exchange (purpose ``rewrite``): its tokens and cost are
  recorded and counted against the budgets; it is not one of the ``models_tried`` to answer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from langchain_core.messages import HumanMessage, SystemMessage

from bot.config import QueryRewrite
from bot.core.labels import Labels
from bot.core.models import RegisteredModel
from bot.core.offline import estimate_tokens
from bot.core.prompts import PromptTemplate, load_prompt
from bot.core.query import Understood
from bot.core.redaction import Redactor
from bot.core.types import Attempt, Turn
from bot.telemetry import tracer

log = logging.getLogger("concierge.rewrite")

# The question is the asker's own text: treated as internal (never sent where internal is not).
QUESTION_CLASS = Labels(frozenset({"internal"}))


@dataclass
class Rewritten:
    """The search terms (empty when the step was skipped or failed) and the call's record."""

    terms: str
    attempt: Attempt | None = None


class QueryRewriter:
    def __init__(
        self,
        link: RegisteredModel,
        settings: QueryRewrite,
        prompt: PromptTemplate | None = None,
        workspace: str = "the company",
    ) -> None:
        self.link = link
        self.settings = settings
        self.prompt = prompt or load_prompt("rewrite")
        self.workspace = workspace

    def _sendable(self, borrowed_from: Sequence[Turn]) -> bool:
        carried = Labels.join_all([QUESTION_CLASS, *(t.labels for t in borrowed_from)])
        return carried.acceptable_to(self.link.spec.accepted_classes)

    async def rewrite(self, asked: Understood, turns: Sequence[Turn]) -> Rewritten:
        """Search terms for ``asked`` (a follow-up's borrowed turns are the last two of
        ``turns``, already filtered for the audience)."""
        borrowed_from = tuple(turns[-2:]) if asked.borrowed else ()
        attempt = Attempt(model=self.link.name, purpose="rewrite")
        attempt.notes.append(f"prompt {self.prompt.name} v{self.prompt.version}")
        if not self._sendable(borrowed_from):
            attempt.outcome = "skipped"
            attempt.notes.append("the thread carries text this model may not receive")
            return Rewritten("", attempt)
        system, user = self.prompt.render(
            question=asked.question, passages=[], history=borrowed_from, workspace=self.workspace
        )
        # Only the earlier questions go out: the history template shows no answers.
        if self.link.spec.redact:
            (system, user), counts = Redactor().redact_all([system, user])
            if counts:
                found = ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items()))
                attempt.notes.append(f"redacted before sending: {found}")
        messages = [SystemMessage(system), HumanMessage(user)]
        attempt.prompt = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        started = time.perf_counter()
        with tracer.start_as_current_span("rewrite") as span:
            span.set_attribute("concierge.model", self.link.name)
            try:
                reply = await asyncio.wait_for(
                    self.link.chat.ainvoke(messages), self.settings.timeout_s
                )
            except TimeoutError:
                attempt.outcome, attempt.error = "timeout", "no reply within the rewrite deadline"
                reply = None
            except Exception as exc:  # any provider error: search the question as asked
                attempt.outcome, attempt.error = "failed", exc.__class__.__name__
                reply = None
            attempt.ended_ms = (time.perf_counter() - started) * 1000
            span.set_attribute("concierge.outcome", attempt.outcome)
        if reply is None:
            log.info("query rewrite by %s: %s", self.link.name, attempt.error)
            return Rewritten("", attempt)
        terms = " ".join(str(reply.content).split())[: self.settings.max_chars]
        usage = getattr(reply, "usage_metadata", None) or {}
        attempt.input_tokens = int(usage.get("input_tokens") or 0)
        attempt.output_tokens = int(usage.get("output_tokens") or 0)
        if not usage:
            attempt.tokens_estimated = True
            attempt.input_tokens = estimate_tokens(system) + estimate_tokens(user)
            attempt.output_tokens = estimate_tokens(terms)
        attempt.cost_usd = self.link.cost(attempt.input_tokens, attempt.output_tokens)
        attempt.outcome = "answered"
        return Rewritten(terms, attempt)
