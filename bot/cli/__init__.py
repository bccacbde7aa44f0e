"""The command line: ``python app.py COMMAND`` (also the ``concierge`` console script).

Exit codes: 0 for every recorded outcome and successful operation, 2 for a usage error
(bad arguments, empty question, unknown person, bad config file), 1 when the database or
another service cannot be used. Errors print one line on stderr, never a traceback.
``audit verify`` uses 1 for a broken chain, so for ``audit`` an unreadable database is 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from pydantic import ValidationError

from bot.errors import ConciergeError, ConfigError, UsageError
from bot.settings import Settings


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message} (see --help)")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="concierge", description="Concierge: answers from your company's sources.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    sub.add_parser(
        "serve",
        help="connect to Slack (Socket Mode with SLACK_APP_TOKEN, else HTTP on $PORT)",
    )

    chat = sub.add_parser("chat", help="a terminal conversation through the pipeline")
    chat.add_argument("--as", dest="as_", metavar="EMAIL", help="ask as this person")

    ask = sub.add_parser("ask", help="ask one question; the answer goes to stdout")
    ask.add_argument("question", help="the question, in quotes")
    ask.add_argument("--as", dest="as_", metavar="EMAIL", help="ask as this person")
    ask.add_argument("--channel", metavar="NAME", help="answer as if posted in this channel")
    ask.add_argument("--json", action="store_true", help="print the recorded exchange as JSON")

    rep = sub.add_parser("report", help="the owners' feedback report (Markdown/HTML, PNG, CSV)")
    rep.add_argument("--days", type=int, default=7, help="the period, in days (default 7)")
    rep.add_argument("--out", metavar="DIR", default="report", help="where to write the files")
    rep.add_argument("--format", choices=("md", "html"), default="md")

    access = sub.add_parser("access", help="grant, revoke and inspect access")
    asub = access.add_subparsers(dest="op", required=True, parser_class=_Parser)
    g = asub.add_parser("grant", help="grant WHO (email, group:X, channel:X) a source or role")
    g.add_argument("who")
    g.add_argument("what")
    g.add_argument("--for", dest="for_", metavar="DURATION", help="e.g. 30d, 12h, 2w")
    g.add_argument("--because", metavar="TEXT")
    g.add_argument("--actor", metavar="EMAIL", default="cli")
    r = asub.add_parser("revoke", help="revoke a grant")
    r.add_argument("who")
    r.add_argument("what")
    r.add_argument("--because", metavar="TEXT")
    r.add_argument("--actor", metavar="EMAIL", default="cli")
    lst = asub.add_parser("list", help="active grants, optionally for a person or source")
    lst.add_argument("filter", nargs="?")
    wc = asub.add_parser("who-can", help="who may read a source")
    wc.add_argument("source")
    rq = asub.add_parser("request", help="ask for access to a requestable source")
    rq.add_argument("source")
    rq.add_argument("--because", metavar="TEXT", required=True)
    rq.add_argument("--as", dest="as_", metavar="EMAIL", help="the person asking")
    for verb in ("approve", "deny"):
        d = asub.add_parser(verb, help=f"{verb} an access request (owner or admin)")
        d.add_argument("request_id", type=int)
        d.add_argument("--because", metavar="TEXT")
        d.add_argument("--actor", metavar="EMAIL", required=True)
    asub.add_parser("requests", help="pending access requests")
    au = asub.add_parser("audit", help="the most recent audit log rows")
    au.add_argument("n", nargs="?", type=int, default=20)

    jobs = sub.add_parser("jobs", help="scheduled jobs: their schedule, recent runs, run one now")
    jsub = jobs.add_subparsers(dest="op", required=True, parser_class=_Parser)
    jsub.add_parser("list", help="each job's schedule and its recent runs")
    jr = jsub.add_parser("run", help="run one job now (claimed like a scheduled run)")
    jr.add_argument(
        "name",
        help="weekly_report, retention_purge, reindex, review_reminders, grant_expiry, "
        "delivery_purge",
    )

    audit = sub.add_parser("audit", help="verify the audit log's hash chain, or export it")
    ausub = audit.add_subparsers(dest="op", required=True, parser_class=_Parser)
    ausub.add_parser(
        "verify", help="walk the hash chain: exit 0 intact, 1 broken, 2 database unreadable"
    )
    ex = ausub.add_parser("export", help="every audit row to stdout (CSV, or exact JSON lines)")
    ex.add_argument("--since", metavar="DATE", help="rows from this date or ISO time (UTC)")
    ex.add_argument("--format", choices=("csv", "jsonl"), default="csv")

    rev = sub.add_parser("review", help="held drafts: list, show, approve, edit, reject")
    rsub = rev.add_subparsers(dest="op", required=True, parser_class=_Parser)
    rsub.add_parser("list", help="the items waiting for review")
    rshow = rsub.add_parser("show", help="one item, with its draft")
    rshow.add_argument("review_id", type=int)
    for verb, helptext in (
        ("approve", "send the draft to the asker as it is"),
        ("edit", "send your text instead (--text, or standard input)"),
        ("reject", "tell the asker it will not be shared (--because: the reason they read)"),
    ):
        rv = rsub.add_parser(verb, help=helptext)
        rv.add_argument("review_id", type=int)
        rv.add_argument("--actor", metavar="EMAIL", required=True, help="the reviewer deciding")
        if verb == "edit":
            rv.add_argument("--text", help="the answer to send (default: read standard input)")
        if verb == "reject":
            rv.add_argument("--because", metavar="TEXT")

    exch = sub.add_parser("exchange", help="the whole record of one exchange")
    xsub = exch.add_subparsers(dest="op", required=True, parser_class=_Parser)
    xs = xsub.add_parser(
        "show", help="who asked, sources used and withheld, each attempt and its prompt"
    )
    xs.add_argument("exchange_id", help="the id that ask --json prints")
    xs.add_argument("--json", action="store_true", help="the record as JSON")

    ev = sub.add_parser(
        "eval", help="answer a question set with candidate configs and compare them"
    )
    ev.add_argument(
        "questions", help="a YAML/JSONL file of {question, as, expect}, recent:N or verified"
    )
    ev.add_argument(
        "--candidate",
        action="append",
        required=True,
        metavar="CONFIG",
        help="a workspace config to evaluate (repeat; the first is the baseline)",
    )
    ev.add_argument("--out", metavar="DIR", default="eval", help="where the report goes")
    ev.add_argument("--json", action="store_true", help="print one summary per candidate")

    flow = sub.add_parser(
        "dataflow", help="where every piece of text goes, from the live config (Mermaid diagram)"
    )
    flow.add_argument("--format", choices=("md", "html"), default="md")
    flow.add_argument("--out", metavar="FILE", help="write it here (default: standard output)")

    db = sub.add_parser("db", help="database maintenance")
    dsub = db.add_subparsers(dest="op", required=True, parser_class=_Parser)
    dsub.add_parser("upgrade", help="apply Alembic migrations")
    return p


# Libraries whose DEBUG records carry whole request and response bodies: answers (confidential
# ones too) for slack_sdk / slack_bolt, prompts with their passages for the model clients.
BODY_LOGGERS = ("slack_sdk", "slack_bolt", "openai", "anthropic", "httpx", "httpcore")


def _configure_logging(level: str, fmt: str = "text") -> None:
    """LOG_LEVEL for our own loggers (LOG_FORMAT=json: one JSON object a line, each with its
    question's request id); the libraries that log bodies never below INFO, so that no
    LOG_LEVEL puts answer or prompt text in the logs (they are not redacted there)."""
    from bot.telemetry import configure_logging

    numeric = getattr(logging, level.upper(), logging.WARNING)
    if not isinstance(numeric, int):
        numeric = logging.WARNING
    configure_logging(numeric, fmt)
    for name in BODY_LOGGERS:
        logging.getLogger(name).setLevel(max(numeric, logging.INFO))


def _replay_spool(settings: Settings) -> None:
    """Records an earlier run could not write (the database was away) are written first."""
    from bot.store.db import Timeouts
    from bot.store.replay import replay_for
    from bot.store.spool import Spool

    timeouts = Timeouts(settings.db_connect_timeout_s, settings.db_timeout_s)
    replay_for(settings.effective_database_url, Spool(settings.spool_dir), timeouts)


# Each command's module is imported only when that command runs (start-up stays quick).
COMMANDS = {
    "report": ("bot.cli.commands", "report"),
    "jobs": ("bot.cli.commands", "jobs"),
    "access": ("bot.cli.commands", "access"),
    "review": ("bot.cli.review", "review"),
    "exchange": ("bot.cli.exchange", "exchange"),
    "eval": ("bot.cli.evaluate", "eval_command"),
    "dataflow": ("bot.cli.dataflow", "dataflow"),
    "audit": ("bot.cli.audit", "audit"),
}


def run(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        try:
            settings = Settings()
        except ValidationError as exc:
            err = exc.errors()[0]
            raise UsageError(
                f"environment variable {str(err['loc'][0]).upper()}: {err['msg']}"
            ) from None
        _configure_logging(settings.log_level, settings.log_format)
        from bot.telemetry import configure_tracing

        configure_tracing(settings.otel_exporter_otlp_endpoint)
        if args.command not in ("db", "serve"):  # serve replays in the background
            _replay_spool(settings)
        if args.command == "db":
            from bot.cli.commands import db_upgrade

            return db_upgrade(settings)
        if args.command == "serve":
            import asyncio

            from bot.slack.server import serve

            return asyncio.run(serve(settings))
        if args.command in COMMANDS:
            module, name = COMMANDS[args.command]
            handler = getattr(importlib.import_module(module), name)
            return int(handler(settings, args))
        from bot.cli.terminal import ask, chat

        if args.command == "ask":
            return ask(settings, args)
        return chat(settings, args)
    except (UsageError, ConfigError) as exc:
        print(f"concierge: {exc}", file=sys.stderr)
        return 2
    except ConciergeError as exc:
        print(f"concierge: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("", file=sys.stderr)
        return 130
    except BrokenPipeError:  # stdout's reader left during a write outside bot.cli.output
        from bot.cli.output import stdout_closed

        stdout_closed()
        return 141  # as a shell reports a command stopped by SIGPIPE


def main(argv: Sequence[str] | None = None) -> None:
    sys.exit(run(argv))
