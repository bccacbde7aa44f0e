"""Human review and verified answers (front-end free).

- A source with ``review: required``: an answer that cites it is held as a draft in the
  ``reviews`` table; a reviewer (the source's owner, else the bot's owners) approves, edits or
  rejects it, and only then does the asker get it (or the reason).
- A thumbs-down with a reason lands in the cited sources' owners' queue (kind ``feedback``);
  an owner may save a corrected answer as *verified*. Concierge then answers the same question
  with it, labelled, for as long as every cited document is unchanged and readable by the
  asker and the audience.

Every decision is an audit row (actor, what, when, why, edits).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from bot.config import WorkspaceConfig
from bot.core.access import AccessDecision
from bot.core.labels import Labels
from bot.core.types import ExchangeResult
from bot.errors import UsageError
from bot.store import repo
from bot.store.db import Store, StoreUnavailable
from bot.store.models import Review, VerifiedAnswer, utcnow
from bot.store.spool import Deferred
from connectors.base import Connector

log = logging.getLogger("concierge.review")

WORD = re.compile(r"[a-z0-9]+")
_STOPWORDS = """a an and are at be can do does for from how i in is it me my of on or our
should the to we what when where which who why with you your"""
STOP = frozenset(_STOPWORDS.split())
SIMILAR = 0.8  # share of content words two questions must have in common
MAX_TEXT = 20_000

Listener = Callable[[Review], Awaitable[None]]
PrincipalsOf = Callable[[str], Awaitable[frozenset[str]]]
# Decisions that show or republish the item's text: only someone who may read it all.
READS_TEXT = frozenset({"approve", "edit", "verify", "open"})


def question_key(text: str) -> str:
    """Content words, sorted: the same question asked with other words around it."""
    words = sorted({w for w in WORD.findall(text.lower()) if w not in STOP})
    return " ".join(words)[:500]


def _sha(text: str | None) -> str:
    return hashlib.sha256((text or "").encode()).hexdigest()


def _similar(a: str, b: str) -> bool:
    x, y = set(a.split()), set(b.split())
    if not x or not y:
        return False
    return len(x & y) / len(x | y) >= SIMILAR


def feedback_handler(config: WorkspaceConfig) -> Callable[[Session, dict[str, Any]], Review | None]:
    """Builds the thumbs-down item of ``{exchange_id, voter, reason}`` in a session (also the
    spool's replay handler: then ``spool_id`` and ``happened_at`` come along and go into the
    audit row). The item goes to the owners of the cited sources, else the bot's owners."""

    def add(s: Session, data: dict[str, Any]) -> Review | None:
        exchange_id, voter, reason = data["exchange_id"], data["voter"], data.get("reason")
        exchange = repo.get_exchange(s, exchange_id)
        if exchange is None:
            if "spool_id" in data:  # recorded by an instance that may still be spooling it
                raise Deferred("its exchange is not recorded yet")
            return None
        cited = {str(c.get("source")) for c in exchange.sources or []}
        owned = [src.owner for n in sorted(cited) if (src := config.source(n)) and src.owner]
        people = list(dict.fromkeys(owned)) or list(config.owners)
        review = Review(
            kind="feedback",
            exchange_id=exchange_id,
            sources=sorted(cited),
            reviewers=people,
            question=exchange.question,
            draft=exchange.answer,
            citations=list(exchange.sources or []),
            reason=reason,
            asker=exchange.asker,
            asker_ref=exchange.asker_ref,
            channel=exchange.channel,
            thread=exchange.thread,
            # The answer, and a reason that may quote it, carry the exchange's labels.
            labels=Labels.from_json(exchange.labels).to_json(),
        )
        repo.add_review(s, review)
        details: dict[str, Any] = {"review_id": review.id, "exchange_id": exchange_id}
        for key in ("spool_id", "happened_at"):
            if key in data:
                details[key] = data[key]
        repo.audit(
            s,
            actor=voter,
            action="review.feedback",
            target=exchange.asker,
            subject=",".join(sorted(cited)),
            reason=reason,
            details=details,
        )
        return review

    return add


class NotAReviewer(UsageError):
    """Someone who is not a reviewer of the item tried to decide it (audited)."""


@dataclass
class Verified:
    row: VerifiedAnswer
    text: str  # the answer with its label
    labels: Labels  # what the verified text carries (its cited passages)


class ReviewDesk:
    def __init__(
        self,
        store: Store,
        config: WorkspaceConfig,
        connectors: dict[str, Connector],
        principals_of: PrincipalsOf | None = None,
    ) -> None:
        self.store = store
        self.config = config
        self.connectors = connectors
        self.listeners: list[Listener] = []  # front ends post new items to reviewers
        # What a person (by email) holds: the same rules the access step applies to askers.
        self.principals_of = principals_of

    # -- who may see an item's text ---------------------------------------------------------
    async def may_see(self, review: Review, email: str) -> bool:
        """Whether ``email`` may read everything the item's text carries (its labels): the
        draft or voted-down answer, the question and a reason that may quote them. Being a
        reviewer, an owner or an admin gives no read access by itself."""
        labels = Labels.from_json(review.labels)
        if labels.is_public:
            return True
        if self.principals_of is None:
            return False
        return labels.readable_by(await self.principals_of(email))

    async def refusal(self, review: Review, actor: str, action: str) -> str | None:
        """Why ``actor`` may not do ``action`` on the item (None: they may)."""
        if not self.may_decide(review, actor):
            return self.not_a_reviewer(review)
        if action in READS_TEXT and not await self.may_see(review, actor):
            return (
                f"You may not read {', '.join(review.sources) or 'its sources'}, so you cannot "
                "see or approve this answer. Ask an admin for access, or leave it to a reviewer "
                "who may read it."
            )
        return None

    # -- held drafts -----------------------------------------------------------------------
    def needs_review(self, sources: set[str], asker: str, private: bool) -> set[str]:
        """Which of ``sources`` require review for this asker. A reviewer asking privately
        about their own source is not asked to review themselves."""
        held = set()
        for name in sources:
            source = self.config.source(name)
            if source is None or source.review != "required":
                continue
            if private and asker in self.config.reviewers(source):
                continue
            held.add(name)
        return held

    def reviewers_for(self, sources: set[str]) -> tuple[list[str], str | None]:
        people: list[str] = []
        channel = None
        for name in sorted(sources):
            source = self.config.source(name)
            if source is None:
                continue
            people += [p for p in self.config.reviewers(source) if p not in people]
            channel = channel or source.review_channel
        return people, channel

    async def hold(self, result: ExchangeResult, draft: str, sources: set[str]) -> Review:
        """Store the draft of a recorded exchange for review and tell the front ends."""
        people, channel = self.reviewers_for(sources)
        fields: dict[str, Any] = {
            "kind": "draft",
            "exchange_id": result.exchange_id,
            "sources": sorted(sources),
            "reviewers": people,
            "review_channel": channel,
            "question": result.question,
            "draft": draft,
            "citations": list(result.sources),
            "asker": result.asker,
            "asker_ref": result.asker_ref,
            "channel": result.channel,
            "thread": result.thread,
            "labels": result.labels.to_json(),
        }
        review = Review(**fields)
        try:
            review = await self.store.call(functools.partial(self._add, review))
        except StoreUnavailable:
            if self.store.spool is None:
                raise
            # Held until the database returns (with its labels); ``serve`` announces it to the
            # reviewers then (bot/store/replay.py), since nobody can open an unsaved review.
            await asyncio.to_thread(self.store.spool.append, "review", repo.storable(fields))
            return review
        await self.announce(review)
        return review

    def _add(self, review: Review) -> Review:
        with self.store.session() as s:
            repo.hold_review(s, review)
        return review

    async def announce(self, review: Review) -> None:
        """Tell the front ends' listeners (reviewers, the asker) about a held review."""
        for listener in self.listeners:
            try:
                await listener(review)
            except Exception:
                log.exception("could not announce review #%s", review.id)

    def may_decide(self, review: Review, actor: str) -> bool:
        return actor in review.reviewers or actor in self.config.owners

    def not_a_reviewer(self, review: Review) -> str:
        """Names everyone who may decide: the item's reviewers and the bot's owners."""
        owners = [o for o in self.config.owners if o not in review.reviewers]
        also = f"; or a bot owner: {', '.join(owners)}" if owners else ""
        return (
            f"Only the reviewers of {', '.join(review.sources)} can decide this "
            f"({', '.join(review.reviewers)}{also})."
        )

    async def decide(
        self,
        review_id: int,
        *,
        actor: str,
        action: str,
        text: str | None = None,
        reason: str | None = None,
    ) -> Review:
        """approve | edit | reject (drafts), verify | dismiss (feedback). Raises UsageError
        with a message for the reviewer when it cannot be done."""
        statuses = {
            "approve": "approved",
            "edit": "edited",
            "reject": "rejected",
            "verify": "verified",
            "dismiss": "dismissed",
        }
        if action not in statuses:
            raise UsageError(f"unknown review action {action!r}")
        if text is not None:
            text = text.strip()
            if not text:
                raise UsageError("The answer cannot be empty.")
            if len(text) > MAX_TEXT:
                raise UsageError(f"The answer is longer than {MAX_TEXT:,} characters.")
        if reason is not None:
            reason = reason.strip()[:2000] or None

        def load() -> Review | None:
            with self.store.session() as s:
                return repo.get_review(s, review_id)

        current = await asyncio.to_thread(load)
        if current is None:
            raise UsageError(f"There is no review #{review_id}.")
        refused = await self.refusal(current, actor, action)
        if refused is not None:
            await asyncio.to_thread(self.record_refusal, review_id, actor, action)
            raise NotAReviewer(refused)

        def write() -> Review:
            with self.store.session() as s:
                review = repo.get_review(s, review_id)
                if review is None:
                    raise UsageError(f"There is no review #{review_id}.")
                if review.status != "pending":
                    raise UsageError(
                        f"Review #{review_id} was already {review.status} by {review.decided_by}."
                    )
                final = text if action in ("edit", "verify") else None
                if action == "approve":
                    final = review.draft
                done = repo.decide_review(
                    s,
                    review_id,
                    status=statuses[action],
                    actor=actor,
                    final=final,
                    reason=reason if action in ("reject", "dismiss") else None,
                )
                if done is None:  # another reviewer decided a moment ago
                    s.rollback()
                    raise UsageError(f"Review #{review_id} was already decided.")
                exchange = repo.get_exchange(s, done.exchange_id)
                if done.kind == "draft" and exchange is not None:
                    if action == "reject":
                        exchange.outcome, exchange.error = "refused", "review_rejected"
                    else:
                        exchange.outcome, exchange.answer = "answered", final
                details: dict[str, Any] = {"review_id": review_id}
                if action == "edit":
                    # The texts themselves stay in the review row, which retention may purge;
                    # the append-only audit log keeps fingerprints of both.
                    details["draft_sha256"] = _sha(review.draft)
                    details["final_sha256"] = _sha(final)
                repo.audit(
                    s,
                    actor=actor,
                    action=f"review.{action}",
                    target=done.asker,
                    subject=",".join(done.sources),
                    reason=reason,
                    details=details,
                )
                return done

        return await asyncio.to_thread(write)

    def record_refusal(self, review_id: int, actor: str, action: str) -> None:
        with self.store.session() as s:
            review = repo.get_review(s, review_id)
            repo.audit(
                s,
                actor=actor,
                action="refused",
                target=review.asker if review else None,
                subject=f"review.{action}",
                reason="not a reviewer of " + ",".join(review.sources if review else []),
                details={"review_id": review_id},
            )

    # -- thumbs-down and verified answers ---------------------------------------------------
    async def feedback(self, exchange_id: str, voter: str, reason: str | None) -> Review | None:
        """A thumbs-down with its reason goes to the owners of the sources it cited. While the
        database cannot be reached it is spooled and the owners are told once it is written
        (None is returned then)."""
        data = {"exchange_id": exchange_id, "voter": voter, "reason": reason}
        add = feedback_handler(self.config)

        def write() -> Review | None:
            with self.store.session() as s:
                return add(s, data)

        try:
            review = await self.store.call(write)
        except StoreUnavailable:
            if self.store.spool is None:
                raise
            await asyncio.to_thread(self.store.spool.append, "feedback", data)
            return None
        if review is not None:
            await self.announce(review)
        return review

    async def verify(self, review_id: int, *, actor: str, text: str) -> VerifiedAnswer:
        """Save an owner's corrected answer as verified (the review becomes ``verified``)."""
        review = await self.decide(review_id, actor=actor, action="verify", text=text)
        prints: dict[str, str | None] = {}
        for c in review.citations:
            connector = self.connectors.get(str(c.get("source")))
            location = str(c.get("location") or c.get("uri") or "")
            if connector is not None and location:
                prints[f"{connector.name}|{location}"] = await connector.document_state(
                    location, None
                )
        row = VerifiedAnswer(
            question=review.question or "",
            question_key=question_key(review.question or ""),
            answer=review.final or text,
            citations=list(review.citations),
            fingerprints=prints,
            verified_by=actor,
            review_id=review.id,
            labels=Labels.from_json(review.labels).to_json(),
        )

        def save() -> VerifiedAnswer:
            with self.store.session() as s:
                s.add(row)
                s.flush()
                return row

        return await asyncio.to_thread(save)

    async def verified_for(self, question: str, access: AccessDecision) -> Verified | None:
        """A verified answer for this question that this asker and audience may see, with
        every cited document unchanged. One whose document changed is retired (stale)."""
        key = question_key(question)
        if not key:
            return None

        def candidates() -> list[VerifiedAnswer]:
            with self.store.session() as s:
                return [v for v in repo.active_verified(s) if _similar(v.question_key, key)]

        try:
            found = await self.store.call(candidates)
        except StoreUnavailable:
            return None  # the database is away: answer the usual way
        shared = {s.name for s in access.shared}
        for v in sorted(found, key=lambda v: v.question_key != key):
            names = {str(c.get("source")) for c in v.citations}
            labels = Labels.from_json(v.labels)
            if not names <= shared or not (
                labels.readable_by(access.principals)
                and labels.readable_by(access.audience_principals)
            ):
                continue  # not for this asker or audience: answer the usual way
            changed = await self._changed(v, access)
            if changed is None:
                label = (
                    f"\n\n_Verified by {v.verified_by} on "
                    f"{repo.as_utc(v.verified_at) or utcnow():%Y-%m-%d}._"
                )
                return Verified(v, v.answer + label, labels)
            if changed:
                # Retired next time if the database is away; this answer is not used either way.
                with contextlib.suppress(StoreUnavailable):
                    await self.store.call(functools.partial(self._retire, v.id, changed))
        return None

    async def _changed(self, v: VerifiedAnswer, access: AccessDecision) -> str | None:
        """None when every cited document is unchanged and visible; else what changed ("" if
        a document is merely hidden from this asker or audience)."""
        for key, stored in (v.fingerprints or {}).items():
            name, _, location = key.partition("|")
            connector = self.connectors.get(name)
            if connector is None:
                return f"source {name} is gone"
            now = await connector.document_state(location, None)
            if stored is not None and now != stored:
                return f"{name}/{location.split('#')[0]} changed"
            for principals in {access.principals, access.audience_principals}:
                if await connector.document_state(location, principals) == "":
                    return ""
        return None

    def _retire(self, verified_id: int, why: str) -> None:
        with self.store.session() as s:
            row = s.get(VerifiedAnswer, verified_id)
            if row is not None and row.status == "active":
                row.status, row.stale_reason = "stale", why
                log.info("verified answer #%s retired: %s", verified_id, why)
