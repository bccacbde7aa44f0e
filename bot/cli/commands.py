"""``db``, ``access``, ``report`` and ``jobs`` commands."""

from __future__ import annotations

import argparse

from bot.cli.output import err, out
from bot.config import WorkspaceConfig, load_config, nearest
from bot.core.access import AccessPolicy
from bot.core.admin import AccessAdmin, Requests, format_time, parse_duration
from bot.core.identity import DirectoryResolver
from bot.core.offers import who_decides
from bot.core.types import Audience
from bot.errors import UsageError
from bot.settings import Settings
from bot.store import repo
from bot.store.db import Store, make_engine, upgrade


def db_upgrade(settings: Settings) -> int:
    engine = make_engine(settings.effective_database_url)
    try:
        done = upgrade(engine)
    finally:
        engine.dispose()
    out(f"database {engine.url.render_as_string(hide_password=True)}: {done.summary}")
    return 0


def grant_warnings(
    settings: Settings, admin: AccessAdmin, config: WorkspaceConfig, who: str, what: str
) -> list[str]:
    """The warnings a grant needs ``--yes`` for. A person is known when the config's
    directory names them or, with SLACK_BOT_TOKEN set, Slack has a user with the email."""
    directory = DirectoryResolver(config)
    slack = settings.slack_bot_token is not None

    def known(email: str) -> bool:
        if email in directory.known:
            return True
        if not slack:
            return False
        from bot.slack.directory import in_workspace_now

        return in_workspace_now(settings, email)

    where = f"the config's people ({config.path})" + (" or this Slack workspace" if slack else "")
    return admin.grant_warnings(who, what, known=known, directory=where)


def access(settings: Settings, args: argparse.Namespace) -> int:
    config = load_config(settings.concierge_config)
    store = Store.open(settings.effective_database_url)
    admin = AccessAdmin(store, config)
    try:
        if args.op in ("grant", "revoke"):
            actor = args.actor.strip().lower()
            if actor != "cli" and "@" not in actor:
                raise UsageError("--actor is an email address")
            if args.op == "grant":
                duration = parse_duration(args.for_) if args.for_ else None
                warnings = grant_warnings(settings, admin, config, args.who, args.what)
                if warnings and not args.yes:
                    for warning in warnings:
                        err(f"warning: {warning}")
                    raise UsageError("nothing was granted: repeat with --yes to grant anyway")
                result = admin.grant(
                    actor=actor,
                    who=args.who,
                    what=args.what,
                    duration=duration,
                    reason=args.because,
                    warnings=warnings,
                )
            else:
                result = admin.revoke(
                    actor=actor, who=args.who, what=args.what, reason=args.because
                )
            out(result.message)
        elif args.op == "request":
            requests = Requests(admin)
            directory = DirectoryResolver(config)
            asker = directory.lookup(args.as_ or directory.default_ref())
            with store.session() as s:
                grants = repo.active_grant_pairs(s)
            readable = {
                src.name for src in AccessPolicy(config).decide(asker, Audience(), grants).readable
            }
            req = requests.create(
                requester=asker.email,
                source_name=args.source,
                reason=args.because,
                already_readable=args.source.strip().lower() in readable,
            )
            who = who_decides(config, config.source(req.source))
            out(f"Request #{req.id} for {req.source} is waiting for {who}.")
        elif args.op in ("approve", "deny"):
            req, grant = Requests(admin).decide(
                request_id=args.request_id,
                actor=args.actor.strip().lower(),
                approve=args.op == "approve",
                reason=args.because,
            )
            until = f" until {format_time(grant.expires_at)}" if grant and grant.expires_at else ""
            out(f"Request #{req.id} {req.status}: {req.requester} -> {req.source}{until}.")
        elif args.op == "requests":
            pending = Requests(admin).pending()
            if not pending:
                out("No pending access requests.")
            for r in pending:
                asks = ", ".join(r.approvers)
                out(f"#{r.id} {r.requester} -> {r.source} (asks {asks}): {r.reason}")
        elif args.op == "list":
            rows = admin.list_grants(args.filter)
            if not rows:
                out("No active grants" + (f" for {args.filter}." if args.filter else "."))
            for g in rows:
                until = f", until {format_time(g.expires_at)}" if g.expires_at else ""
                why = f", because {g.reason}" if g.reason else ""
                out(f"#{g.id} {g.principal} -> {g.target} (by {g.granted_by}{until}{why})")
        elif args.op == "who-can":
            for line in admin.who_can(args.source):
                out(line)
        elif args.op == "audit":
            events = admin.audit_log(args.n)
            if not events:
                out("The audit log is empty.")
            for a in events:
                why = f" because {a.reason}" if a.reason else ""
                out(
                    f"{format_time(a.at)} {a.actor} {a.action} {a.target or ''} "
                    f"{a.subject or ''}{why}".rstrip()
                )
        return 0
    finally:
        store.close()


def report(settings: Settings, args: argparse.Namespace) -> int:
    import asyncio
    from pathlib import Path

    from bot.reports import build, render
    from bot.reports.metrics import Report, plural
    from bot.runtime import build_runtime

    if not 1 <= args.days <= 3660:
        raise UsageError("--days is between 1 and 3660")

    async def make() -> Report:
        runtime = await build_runtime(settings, prepare=False, degraded=False)
        try:
            # Written for the owners (or the people named): text only they may all read.
            readers = args.for_ or runtime.config.owners
            for email in args.for_ or ():
                runtime.directory.lookup(email)  # an unknown person is a usage error
            return await build.build(runtime, days=args.days, readers=readers)
        finally:
            runtime.close()

    data = asyncio.run(make())
    files = render.write(data, Path(args.out), fmt=args.format)
    sat = data.satisfaction
    out(
        f"{plural(data.questions, 'question')} from {plural(data.askers, 'person')} in the last "
        f"{plural(args.days, 'day')}; {len(data.unanswered)} not answered in "
        f"{plural(len(data.gaps), 'topic')}; satisfaction "
        f"{'n/a' if sat is None else f'{sat * 100:.0f}%'}; cost ${data.cost:.4f}."
    )
    for f in files:
        out(f"wrote {f}")
    return 0


def jobs(settings: Settings, args: argparse.Namespace) -> int:
    import asyncio

    from bot.config import JOB_NAMES
    from bot.jobs.scheduler import JobHost, Scheduler, recent_runs
    from bot.runtime import build_runtime

    config = load_config(settings.concierge_config)
    schedule = config.jobs.schedule()
    if args.op == "list":
        store = Store.open(settings.effective_database_url)
        try:
            runs = recent_runs(store, 50)
        finally:
            store.close()
        for name in JOB_NAMES:
            last = next((r for r in runs if r.job == name), None)
            when = schedule.get(name, "off")
            seen = (
                f"last run {format_time(last.started_at)} {last.status}: {last.detail or ''}"
                if last
                else "not run yet"
            )
            out(f"{name:<17} {when:<15} {seen}")
        return 0
    if args.name not in JOB_NAMES:
        near = nearest(args.name, JOB_NAMES)
        hint = f"did you mean {near}? " if near else ""
        raise UsageError(f"unknown job {args.name!r}; {hint}jobs: {', '.join(JOB_NAMES)}")

    async def run_now() -> int:
        runtime = await build_runtime(settings, config=config, prepare=False)
        try:
            scheduler = Scheduler.from_config(
                JobHost(runtime.store, runtime), {args.name: "* * * * *"}, config.jobs.timezone
            )
            from datetime import UTC, datetime

            now = datetime.now(UTC)
            if not await scheduler.run(args.name, slot=now, now=now):
                out(f"{args.name} is already running elsewhere for this moment")
                return 0
            run = next(r for r in recent_runs(runtime.store, 10) if r.job == args.name)
            out(f"{args.name}: {run.status}: {run.detail or ''}")
            return 0 if run.status == "ok" else 1
        finally:
            runtime.close()

    return asyncio.run(run_now())
