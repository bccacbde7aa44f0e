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
from typing import Any

from pydantic import ValidationError

from bot.errors import ConciergeError, ConfigError, UsageError
from bot.settings import Settings

ROOT_PROG = "concierge"


class _HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Examples keep their lines; an option's default is shown where it says something
    (not for flags, and not for "none")."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default in (None, False) or isinstance(action.default, list):
            return action.help
        return super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        # run() adds the one "concierge: " prefix; name the subcommand, not the program again.
        command = self.prog.removeprefix(ROOT_PROG).strip()
        where = f"{command}: " if command else ""
        raise UsageError(f"{where}{message} (see {self.prog} --help)")


MAIN_EXAMPLES = """\
examples:
  concierge chat                                   talk to the bundled example workspace
  concierge ask "How do I expense a taxi?" --as eve@acme.test
  concierge ask "Who approves expenses?" --json    the recorded exchange, as JSON
  concierge db upgrade                             create or migrate the database
  concierge report --days 30 --format html         the owners' report for a month
  concierge access grant eve@acme.test hr-policies --for 30d --because "audit"
  concierge serve                                  connect to Slack

environment: CONCIERGE_CONFIG (the workspace YAML), DATABASE_URL (default: a SQLite file in
./data), LOG_LEVEL, SLACK_BOT_TOKEN / SLACK_SIGNING_SECRET / SLACK_APP_TOKEN, OPENAI_API_KEY.
Exit codes: 0 done, 2 usage or config error, 1 a service (e.g. the database) cannot be used.
"""

EXAMPLES = {
    "chat": """\
examples:
  concierge chat                      as the config's first person
  concierge chat --as hana@acme.test  as someone else (an email from the config's people)
""",
    "ask": """\
examples:
  concierge ask "How do I expense a taxi?"
  concierge ask "What is the parental leave policy?" --as hana@acme.test
  concierge ask "Where are the runbooks?" --channel engineering   as if posted there
  concierge ask "Who approves expenses?" --json | jq .sources
""",
    "report": """\
examples:
  concierge report                          the last 7 days, Markdown, into ./report
  concierge report --days 30 --format html --out /tmp/report
""",
    "access": """\
examples:
  concierge access grant eve@acme.test hr-policies --for 30d --because "payroll project"
  concierge access grant group:finance role:hr
  concierge access revoke eve@acme.test hr-policies --because "project over"
  concierge access who-can hr-policies
  concierge access list eve@acme.test
""",
    "db": """\
examples:
  concierge db upgrade
  DATABASE_URL=postgresql://concierge@db.internal:5432/concierge concierge db upgrade
""",
    "review": """\
examples:
  concierge review list
  concierge review approve 12 --actor hana@acme.test
  concierge review reject 12 --actor hana@acme.test --because "needs legal sign-off"
""",
    "serve": """\
examples:
  SLACK_BOT_TOKEN=xoxb-… SLACK_SIGNING_SECRET=… concierge serve     Events API on $PORT
  SLACK_BOT_TOKEN=xoxb-… SLACK_APP_TOKEN=xapp-… concierge serve     Socket Mode
""",
    "jobs": """\
examples:
  concierge jobs list
  concierge jobs run weekly_report
""",
    "audit": """\
examples:
  concierge audit verify
  concierge audit export --since 2026-01-01 --format jsonl > audit.jsonl
""",
    "exchange": """\
examples:
  concierge exchange show 3f2c9a5e-…          the id that ask --json prints
  concierge exchange show 3f2c9a5e-… --json
""",
    "dataflow": """\
examples:
  concierge dataflow --format html --out dataflow.html
""",
    "eval": """\
examples:
  concierge eval questions.yaml --candidate concierge.yaml --candidate candidate.yaml
  concierge eval recent:50 --candidate concierge.yaml --json
""",
}

AS_HELP = "ask as this person (default: the config's default_person, else its first member)"
WHO_HELP = "an email, group:NAME or channel:NAME"
WHAT_HELP = "a source name, or role:NAME"
ACTOR_HELP = "who is acting, for the audit log (an email; cli: the shell operator)"


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog=ROOT_PROG,
        description="Concierge: answers from your company's sources.",
        epilog=MAIN_EXAMPLES,
    )
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser, metavar="COMMAND")

    def command(name: str, helptext: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=helptext, epilog=EXAMPLES.get(name))

    command("serve", "connect to Slack (Socket Mode with SLACK_APP_TOKEN, else HTTP on $PORT)")

    chat = command("chat", "a terminal conversation through the pipeline")
    chat.add_argument("--as", dest="as_", metavar="EMAIL", help=AS_HELP)

    ask = command("ask", "ask one question; the answer goes to stdout")
    ask.add_argument("question", help="the question, in quotes")
    ask.add_argument("--as", dest="as_", metavar="EMAIL", help=AS_HELP)
    ask.add_argument("--channel", metavar="NAME", help="answer as if posted in this channel")
    ask.add_argument("--json", action="store_true", help="print the recorded exchange as JSON")

    rep = command("report", "the owners' feedback report (Markdown/HTML, PNG, CSV)")
    rep.add_argument("--days", type=int, default=7, help="the period, in days")
    rep.add_argument("--out", metavar="DIR", default="report", help="where to write the files")
    rep.add_argument(
        "--format", choices=("md", "html"), default="md", help="the report's document format"
    )
    rep.add_argument(
        "--for",
        dest="for_",
        action="append",
        metavar="EMAIL",
        help="the reader (repeatable; default: the config's owners): questions appear only "
        "where every reader may read them",
    )

    access = command("access", "grant, revoke and inspect access")
    asub = access.add_subparsers(dest="op", required=True, parser_class=_Parser, metavar="OP")
    g = asub.add_parser("grant", help="grant WHO (email, group:X, channel:X) a source or role")
    g.add_argument("who", help=WHO_HELP)
    g.add_argument("what", help=WHAT_HELP)
    g.add_argument(
        "--for", dest="for_", metavar="DURATION", help="until it expires, e.g. 30d, 12h, 2w"
    )
    g.add_argument("--because", metavar="TEXT", help="the reason, kept in the audit log")
    g.add_argument("--actor", metavar="EMAIL", default="cli", help=ACTOR_HELP)
    g.add_argument(
        "--yes",
        action="store_true",
        help="grant even when warned (a person the directory does not know, or a "
        "confidential source for a channel)",
    )
    r = asub.add_parser("revoke", help="revoke a grant")
    r.add_argument("who", help=WHO_HELP)
    r.add_argument("what", help=WHAT_HELP)
    r.add_argument("--because", metavar="TEXT", help="the reason, kept in the audit log")
    r.add_argument("--actor", metavar="EMAIL", default="cli", help=ACTOR_HELP)
    lst = asub.add_parser("list", help="active grants, optionally for a person or source")
    lst.add_argument("filter", nargs="?", help="only grants for this person or source")
    wc = asub.add_parser("who-can", help="who may read a source")
    wc.add_argument("source", help="the source's name")
    rq = asub.add_parser("request", help="ask for access to a requestable source")
    rq.add_argument("source", help="the source's name")
    rq.add_argument("--because", metavar="TEXT", required=True, help="why you need it")
    rq.add_argument("--as", dest="as_", metavar="EMAIL", help="the person asking")
    for verb in ("approve", "deny"):
        d = asub.add_parser(verb, help=f"{verb} an access request (owner or admin)")
        d.add_argument("request_id", type=int, help="the request's number (access requests)")
        d.add_argument("--because", metavar="TEXT", help="the reason the requester reads")
        d.add_argument("--actor", metavar="EMAIL", required=True, help="the owner or admin")
    asub.add_parser("requests", help="pending access requests")
    au = asub.add_parser("audit", help="the most recent audit log rows")
    au.add_argument("n", nargs="?", type=int, default=20, help="how many rows")

    jobs = command("jobs", "scheduled jobs: their schedule, recent runs, run one now")
    jsub = jobs.add_subparsers(dest="op", required=True, parser_class=_Parser, metavar="OP")
    jsub.add_parser("list", help="each job's schedule and its recent runs")
    jr = jsub.add_parser("run", help="run one job now (claimed like a scheduled run)")
    jr.add_argument(
        "name",
        help="weekly_report, retention_purge, reindex, review_reminders, grant_expiry, "
        "delivery_purge",
    )

    audit = command("audit", "verify the audit log's hash chain, or export it")
    ausub = audit.add_subparsers(dest="op", required=True, parser_class=_Parser, metavar="OP")
    ausub.add_parser(
        "verify", help="walk the hash chain: exit 0 intact, 1 broken, 2 database unreadable"
    )
    ex = ausub.add_parser("export", help="every audit row to stdout (CSV, or exact JSON lines)")
    ex.add_argument("--since", metavar="DATE", help="rows from this date or ISO time (UTC)")
    ex.add_argument("--format", choices=("csv", "jsonl"), default="csv", help="output format")

    rev = command("review", "held drafts: list, show, approve, edit, reject")
    rsub = rev.add_subparsers(dest="op", required=True, parser_class=_Parser, metavar="OP")
    rsub.add_parser("list", help="the items waiting for review")
    rshow = rsub.add_parser("show", help="one item, with its draft")
    rshow.add_argument("review_id", type=int, help="the item's number (review list)")
    for verb, helptext in (
        ("approve", "send the draft to the asker as it is"),
        ("edit", "send your text instead (--text, or standard input)"),
        ("reject", "tell the asker it will not be shared (--because: the reason they read)"),
    ):
        rv = rsub.add_parser(verb, help=helptext)
        rv.add_argument("review_id", type=int, help="the item's number (review list)")
        rv.add_argument("--actor", metavar="EMAIL", required=True, help="the reviewer deciding")
        if verb == "edit":
            rv.add_argument("--text", help="the answer to send (default: read standard input)")
        if verb == "reject":
            rv.add_argument("--because", metavar="TEXT", help="the reason the asker reads")

    exch = command("exchange", "the whole record of one exchange")
    xsub = exch.add_subparsers(dest="op", required=True, parser_class=_Parser, metavar="OP")
    xs = xsub.add_parser(
        "show", help="who asked, sources used and withheld, each attempt and its prompt"
    )
    xs.add_argument("exchange_id", help="the id that ask --json prints")
    xs.add_argument("--json", action="store_true", help="the record as JSON")

    ev = command("eval", "answer a question set with candidate configs and compare them")
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

    flow = command(
        "dataflow", "where every piece of text goes, from the live config (Mermaid diagram)"
    )
    flow.add_argument("--format", choices=("md", "html"), default="md", help="document format")
    flow.add_argument("--out", metavar="FILE", help="write it here (default: standard output)")

    db = command("db", "database maintenance (DATABASE_URL)")
    dsub = db.add_subparsers(dest="op", required=True, parser_class=_Parser, metavar="OP")
    dsub.add_parser(
        "upgrade",
        help="create the schema, or apply the Alembic migrations it lacks; says which",
    )
    _describe(p)
    return p


def _describe(parser: argparse.ArgumentParser) -> None:
    """Each subcommand's --help opens with the line its parent's list shows for it."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            for name, child in action.choices.items():
                child.description = child.description or helps.get(name)
                _describe(child)


# Libraries whose DEBUG records carry whole request and response bodies: answers (confidential
# ones too) for slack_sdk / slack_bolt, prompts with their passages for the model clients.
BODY_LOGGERS = ("slack_sdk", "slack_bolt", "openai", "anthropic", "httpx", "httpcore")
CHATTY_LOGGERS = (
    "alembic",
    "sqlalchemy",
    "httpx",
    "httpcore",
    "urllib3",
    "apscheduler",
    "asyncio",
)


def _configure_logging(level: str, fmt: str = "text") -> None:
    """LOG_LEVEL for our own loggers (LOG_FORMAT=json: one JSON object a line, each with its
    question's request id); the libraries that log bodies never below INFO, so that no
    LOG_LEVEL puts answer or prompt text in the logs (they are not redacted there)."""
    from bot.telemetry import configure_logging

    numeric = getattr(logging, level.upper(), logging.WARNING)
    if not isinstance(numeric, int):
        numeric = logging.WARNING
    configure_logging(numeric, fmt)
    # Library chatter (each migration step, plugin set-up, every HTTP request) says nothing an
    # operator acts on: shown only with LOG_LEVEL=DEBUG. SQLAlchemy's engine logs statements
    # with their parameters (question and answer text), so it stays at WARNING even then.
    chatty = max(numeric, logging.WARNING) if numeric > logging.DEBUG else numeric
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(chatty)
    for name in BODY_LOGGERS:  # never below INFO; chatty ones not below the chatty level
        floor = max(chatty, logging.INFO) if name in CHATTY_LOGGERS else logging.INFO
        logging.getLogger(name).setLevel(max(numeric, floor))
    for name in ("sqlalchemy.engine", "sqlalchemy.orm"):  # statements; mapper set-up
        logging.getLogger(name).setLevel(max(numeric, logging.WARNING))


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
                f"environment variable {str(err['loc'][0]).upper()}: "
                f"{str(err['msg']).removeprefix('Value error, ')}"
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
