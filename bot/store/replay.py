"""Writing spooled records into the database, once (bot/store/spool.py says why they wait).

Each kind is idempotent on its own key, so an entry replayed twice (a crash between the write
and the spool's rewrite) or a record whose first write did land after all is stored once:
- ``exchange``: by exchange id (and request key); its denial audit row shares its transaction;
- ``vote``: an upsert per voter and exchange that keeps a newer vote; it waits (``Deferred``)
  while its exchange is not recorded yet (another instance may still be spooling it);
- ``feedback``: a thumbs-down item for the owners, built by the handler the runtime passes
  (it needs the workspace config); by the spool entry id its audit row carries. Without a
  handler (a command that does not build the runtime) it waits for one that has;
- ``review``: a held draft, by exchange and kind (with its audit row);
- ``audit``: appended through ``repo.audit`` (so the hash chain stays intact), unless a row
  carrying the entry's ``spool_id`` is already in the log; the original time is kept in
  ``details.happened_at`` because a row's ``at`` is the time it joined the chain.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from bot.store import repo
from bot.store.db import Store, StoreError, StoreUnavailable, Timeouts
from bot.store.models import Review
from bot.store.spool import Deferred, Spool

log = logging.getLogger("concierge.store.replay")

# A record's first write may land this long before its spool entry is written (the client-
# side bound on a call, with room to spare): a replayed audit row looks back this far.
LOOK_BACK = timedelta(minutes=10)


# Builds what a spooled entry of a kind the store cannot build itself stands for, in the
# session given; returns a review to announce, if any. Raises Deferred to wait.
Handler = Callable[[Session, dict[str, Any]], Review | None]


def apply_entry(
    store: Store,
    entry: dict[str, Any],
    held: list[Review] | None = None,
    handlers: Mapping[str, Handler] | None = None,
) -> None:
    """Write one spool entry in its own transaction (raises StoreUnavailable if it cannot,
    Deferred if it must wait). A held draft or thumbs-down item stored now is added to
    ``held`` (its reviewers have not been told yet)."""
    kind, data = entry["kind"], entry["data"]
    at = datetime.fromisoformat(entry["at"])
    with store.session() as s:
        if kind == "exchange":
            if repo.insert_exchange(s, data["row"]) and data.get("audit"):
                repo.audit(s, **data["audit"])
        elif kind == "vote":
            if repo.get_exchange(s, data["exchange_id"]) is None:
                raise Deferred("its exchange is not recorded yet")
            repo.set_vote(s, **data, at=at)
        elif kind == "feedback":
            handler = (handlers or {}).get(kind)
            if handler is None:
                raise Deferred("replayed by serve or a command that builds the runtime")
            if repo.has_spooled_audit(
                s, entry["id"], action="review.feedback", since=at - LOOK_BACK
            ):
                return
            review = handler(s, {**data, "spool_id": entry["id"], "happened_at": entry["at"]})
            if review is not None and held is not None:
                held.append(review)
        elif kind == "review":
            if not repo.has_review(s, data["exchange_id"], data["kind"]):
                review = repo.hold_review(s, Review(**data), happened_at=entry["at"])
                if held is not None:
                    held.append(review)
        elif kind == "audit":
            fields = dict(data)
            details = {**(fields.pop("details", None) or {}), "spool_id": entry["id"]}
            details.setdefault("happened_at", entry["at"])
            if not repo.has_spooled_audit(
                s, entry["id"], action=fields["action"], since=at - LOOK_BACK
            ):
                repo.audit(s, **fields, details=details)
        else:
            raise ValueError(f"unknown spool kind {kind!r}")


def audit_or_spool(store: Store, *, details: dict[str, Any] | None = None, **fields: Any) -> None:
    """Append an audit row recording something that already happened (a refusal); while the
    database is away, spool it (when the store has a spool). The row carries its entry id
    from the first attempt on, so a write that lands late is not appended twice. Changes to
    access (grants, revocations) are never spooled: they are refused while the database is
    away."""
    entry_id = str(uuid.uuid4())
    details = {**(details or {}), "spool_id": entry_id}
    try:
        with store.session() as s:
            repo.audit(s, **fields, details=details)
    except StoreUnavailable:
        if store.spool is None:
            raise
        store.spool.append("audit", {**fields, "details": details}, entry_id)


def replay(
    store: Store,
    spool: Spool,
    held: list[Review] | None = None,
    handlers: Mapping[str, Handler] | None = None,
) -> int:
    """Replay what waits (synchronous: call from a thread). Returns how many were written;
    held drafts and thumbs-down items stored are added to ``held``."""
    if not spool.path.exists():
        return 0
    if store.health.down and not store.probe():  # known down: ask once, now
        return 0
    return spool.replay(lambda entry: apply_entry(store, entry, held, handlers), StoreUnavailable)


def replay_for(url: str, spool: Spool, timeouts: Timeouts | None = None) -> int:
    """At the start of a command that does not build the runtime: replay what waits, if
    anything does and the database answers (bounded by the timeouts; never raises)."""
    if not spool.path.exists():
        return 0
    try:
        store = Store.open(url, migrate=False, timeouts=timeouts)
    except StoreError:
        return 0
    try:
        # Quietly: a database that cannot be used is the command's own one-line error next.
        with store.engine.connect():
            pass
    except SQLAlchemyError:
        store.close()
        return 0
    try:
        return replay(store, spool)
    except StoreError:
        return 0
    finally:
        store.close()


async def replay_when_possible(
    store: Store,
    spool: Spool,
    announce: Callable[[Review], Awaitable[None]] | None = None,
    idle_s: float = 1.0,
    handlers: Mapping[str, Handler] | None = None,
) -> None:
    """Runs until cancelled (``serve``): while records wait, probe the database with backoff
    and replay them as soon as it answers; held drafts stored then are ``announce``d."""
    wait = idle_s
    while True:
        await asyncio.sleep(wait)
        if not spool.path.exists():
            wait = idle_s
            continue
        try:
            reachable = await asyncio.wait_for(
                asyncio.to_thread(store.probe), store.timeouts.call_s
            )
            if reachable:
                held: list[Review] = []
                done = await asyncio.to_thread(replay, store, spool, held, handlers)
                for review in held:
                    if announce is not None:
                        await announce(review)
                # Entries left behind wait for something (their exchange): ask less often.
                wait = idle_s if done or not spool.path.exists() else min(15.0, wait * 2)
                continue
        except TimeoutError:
            store.health.failed("no answer within the timeout")
        except Exception as exc:  # the loop must outlive any one failure
            log.error("replaying the spool failed (%s); will try again", exc.__class__.__name__)
        wait = min(15.0, wait * 2)


async def replay_now(
    store: Store,
    spool: Spool,
    handlers: Mapping[str, Handler] | None = None,
    held: list[Review] | None = None,
) -> int:
    """At the start of a command: replay what waits if the database answers (bounded). Held
    drafts and thumbs-down items written are added to ``held``."""
    if not spool.path.exists():
        return 0
    with contextlib.suppress(TimeoutError, StoreUnavailable):
        return await asyncio.wait_for(
            asyncio.to_thread(replay, store, spool, held, handlers), store.timeouts.call_s * 2
        )
    return 0
