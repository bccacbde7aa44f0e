"""``review list|show|approve|edit|reject``: held drafts from the command line, with the same
rules and audit as Slack (only a reviewer who may read the draft decides; every decision and
refusal is an audit row)."""

from __future__ import annotations

import argparse
import asyncio
import sys

from bot.cli.output import out
from bot.errors import UsageError
from bot.runtime import Runtime, build_runtime
from bot.settings import Settings
from bot.store import repo
from bot.store.models import Review


def review(settings: Settings, args: argparse.Namespace) -> int:
    return asyncio.run(_review(settings, args))


async def _review(settings: Settings, args: argparse.Namespace) -> int:
    runtime = await build_runtime(settings, prepare=False, degraded=False)
    try:
        if args.op == "list":
            return await _list(runtime)
        item = await _load(runtime, args.review_id)
        if args.op == "show":
            _show(item)
            return 0
        actor = args.actor.strip().lower()
        if "@" not in actor:
            raise UsageError("--actor is the reviewer's email address")
        text = None
        if args.op == "edit":
            text = args.text if args.text is not None else sys.stdin.read()
        action = {"approve": "approve", "edit": "edit", "reject": "reject"}[args.op]
        done = await runtime.reviews.decide(
            item.id,
            actor=actor,
            action=action,
            text=text,
            reason=getattr(args, "because", None) if action == "reject" else None,
        )
        out(f"review #{done.id}: {done.status} by {done.decided_by}")
        return 0
    finally:
        runtime.close()


async def _list(runtime: Runtime) -> int:
    def load() -> list[Review]:
        with runtime.store.session() as s:
            return repo.pending_reviews(s)

    items = await asyncio.to_thread(load)
    if not items:
        out("no review is waiting")
        return 0
    for r in items:
        when = repo.as_utc(r.created_at)
        out(
            f"#{r.id} {r.kind} from {r.asker} on {when:%Y-%m-%d %H:%M} UTC · sources "
            f"{', '.join(r.sources or [])} · reviewers {', '.join(r.reviewers or []) or 'none'}"
        )
    return 0


async def _load(runtime: Runtime, review_id: int) -> Review:
    def load() -> Review | None:
        with runtime.store.session() as s:
            return repo.get_review(s, review_id)

    item = await asyncio.to_thread(load)
    if item is None:
        raise UsageError(f"there is no review #{review_id} (see `review list`)")
    return item


def _show(r: Review) -> None:
    """The shell operator is trusted (as for ``exchange show``): the whole item."""
    out(f"Review #{r.id} ({r.kind}): {r.status}")
    out(f"  asked by {r.asker} · sources {', '.join(r.sources or [])}")
    out(f"  reviewers {', '.join(r.reviewers or []) or 'none'}")
    if r.decided_by:
        out(f"  decided by {r.decided_by} at {repo.as_utc(r.decided_at):%Y-%m-%d %H:%M} UTC")
    out("\nQuestion\n  " + (r.question or "(removed by retention)"))
    label = "Draft" if r.kind == "draft" else "Answer given"
    out(f"\n{label}\n  " + (r.draft or "(removed by retention)").replace("\n", "\n  "))
    if r.reason:
        out(f"\nReason\n  {r.reason}")
    if r.final and r.final != r.draft:
        out("\nFinal\n  " + r.final.replace("\n", "\n  "))
