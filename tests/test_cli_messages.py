"""What a person sees when something is wrong (issue 15, items 3 and 6, and --help): one
"concierge:" prefix, database failures with their cause and fix, what ``db upgrade`` did,
"did you mean", a quiet INFO log, help with descriptions, defaults and examples, and hosted
models that cannot be used named at start-up.

Database failures are real: PostgreSQL on 127.0.0.1:5432 asked for a database and a role that
do not exist, and a port where nothing listens.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy.engine import make_url

from bot.cli import build_parser
from tests.conftest import PG_ADMIN_URL

ROOT = Path(__file__).resolve().parent.parent
QUESTION = "Where do I submit expenses?"


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """The working database (SQLite); the failures below name their own PostgreSQL URLs."""
    return f"sqlite:///{tmp_path / 'concierge.db'}"


def head_revision() -> str:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from bot.store.db import MIGRATIONS

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(cfg).get_current_head() or ""


def app(env: dict[str, str], *argv: str, extra: dict[str, str] | None = None) -> Any:
    """``python app.py ARGV`` in a real process (its logging goes to its own stderr)."""
    run_env = {**os.environ, **env, **(extra or {})}
    run_env.pop("OPENAI_API_KEY", None)
    return subprocess.run(
        [sys.executable, str(ROOT / "app.py"), *argv],
        capture_output=True,
        text=True,
        env=run_env,
        timeout=120,
        cwd=Path(env["CONCIERGE_DATA_DIR"]).parent,
    )


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bad_urls() -> dict[str, tuple[str, list[str]]]:
    """case -> (DATABASE_URL, phrases its message must hold: the cause and the fix)."""
    url = make_url(PG_ADMIN_URL)
    missing = f"concierge_missing_{uuid.uuid4().hex[:8]}"
    role = f"concierge_norole_{uuid.uuid4().hex[:6]}"
    port = closed_port()
    return {
        "unknown_database": (
            url.set(database=missing).render_as_string(hide_password=False),
            [f'database "{missing}" does not exist', f"createdb -h {url.host}", "DATABASE_URL"],
        ),
        "unknown_role": (
            url.set(username=role, password=None).render_as_string(hide_password=False),
            [f'no role "{role}"', f"createuser -h {url.host}", "DATABASE_URL"],
        ),
        "closed_port": (
            url.set(host="127.0.0.1", port=port).render_as_string(hide_password=False),
            [f"127.0.0.1:{port}", "connection refused", "host and port in DATABASE_URL"],
        ),
    }


BAD = bad_urls()


def one_clean_line(err: str) -> str:
    assert err.count("\n") == 1, err
    assert err.startswith("concierge: ") and err.count("concierge:") == 1, err
    assert "Traceback" not in err and "OperationalError" not in err, err
    return err


# --- one prefix ------------------------------------------------------------------------------


def test_usage_errors_carry_one_prefix_and_name_the_subcommand(cli) -> None:
    r = cli("ask")
    assert r.code == 2
    one_clean_line(r.err)
    assert r.err == (
        "concierge: ask: the following arguments are required: question "
        "(see concierge ask --help)\n"
    )
    r = cli("access", "grant", "eve@canary.test")
    assert r.code == 2 and one_clean_line(r.err).startswith("concierge: access grant: ")
    r = cli("fly")
    assert r.code == 2 and "invalid choice: 'fly'" in one_clean_line(r.err)


# --- --help ----------------------------------------------------------------------------------


def _parsers(parser: argparse.ArgumentParser, name: str = "concierge") -> Any:
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub, child in action.choices.items():
                yield from _parsers(child, f"{name} {sub}")


def test_every_argument_of_every_command_is_described() -> None:
    missing = [
        f"{name}: {action.dest}"
        for name, parser in _parsers(build_parser())
        for action in parser._actions
        if not isinstance(action, argparse._SubParsersAction) and not action.help
    ]
    assert missing == []
    undescribed = [n for n, p in _parsers(build_parser()) if n != "concierge" and not p.description]
    assert undescribed == []


def test_help_shows_defaults_and_examples(env: dict[str, str]) -> None:
    main = app(env, "--help")
    assert main.returncode == 0 and "examples:" in main.stdout
    assert 'concierge ask "How do I expense a taxi?"' in main.stdout
    for command in ("ask", "chat", "report", "access", "db"):
        r = app(env, command, "--help")
        assert r.returncode == 0 and "examples:" in r.stdout, command
    report = app(env, "report", "--help").stdout
    assert "(default: 7)" in report and "(default: report)" in report
    grant = app(env, "access", "grant", "--help").stdout
    assert "an email, group:NAME or channel:NAME" in grant and "(default: cli)" in grant
    assert "(default: None)" not in grant and "(default: False)" not in grant


# --- database failures -----------------------------------------------------------------------


@pytest.mark.parametrize("case", sorted(BAD))
@pytest.mark.parametrize("command", [("db", "upgrade"), ("report", "--out", "r")])
def test_a_database_that_cannot_be_used_says_why_and_what_to_do(
    cli, monkeypatch: pytest.MonkeyPatch, case: str, command: tuple[str, ...]
) -> None:
    url, phrases = BAD[case]
    monkeypatch.setenv("DATABASE_URL", url)
    r = cli(*command)
    assert r.code == 1
    one_clean_line(r.err)
    for phrase in phrases:
        assert phrase in r.err, (phrase, r.err)


@pytest.mark.parametrize("case", sorted(BAD))
def test_audit_verify_says_why_too(cli, monkeypatch: pytest.MonkeyPatch, case: str) -> None:
    url, phrases = BAD[case]
    monkeypatch.setenv("DATABASE_URL", url)
    r = cli("audit", "verify")
    assert r.code == 2  # audit: 1 means a broken chain
    one_clean_line(r.err)
    assert all(phrase in r.err for phrase in phrases), r.err


@pytest.mark.parametrize("case", sorted(BAD))
def test_ask_answers_without_the_database_and_says_why(env: dict[str, str], case: str) -> None:
    url, phrases = BAD[case]
    r = app(env, "ask", QUESTION, "--as", "eve@canary.test", "--json", extra={"DATABASE_URL": url})
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["outcome"] == "answered"  # one JSON object on stdout
    assert "Traceback" not in r.stderr and "OperationalError" not in r.stderr
    for phrase in phrases:
        assert phrase in r.stderr, (phrase, r.stderr)


def test_a_command_after_a_spooled_answer_says_the_cause_once(env: dict[str, str]) -> None:
    url, phrases = BAD["unknown_database"]
    operator = {"DATABASE_URL": url, "LOG_LEVEL": "WARNING"}
    asked = app(env, "ask", QUESTION, "--as", "eve@canary.test", extra=operator)
    assert asked.returncode == 0 and "spooled" in asked.stderr  # a record waits on disk
    r = app(env, "report", extra=operator)
    assert r.returncode == 1
    one_clean_line(r.stderr)
    assert phrases[0] in r.stderr


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mysql://app:secret-pw@localhost/concierge", "uses mysql://, which Concierge does not"),
        ("postgresql+psycopg2://app@localhost/x", "driver 'psycopg2'"),
        ("not a url", "DATABASE_URL is not a database URL"),
    ],
)
@pytest.mark.parametrize("command", [("db", "upgrade"), ("ask", QUESTION), ("report",)])
def test_an_unsupported_database_url_is_a_usage_error_without_a_traceback(
    cli, monkeypatch: pytest.MonkeyPatch, url: str, expected: str, command: tuple[str, ...]
) -> None:
    monkeypatch.setenv("DATABASE_URL", url)
    r = cli(*command)
    assert r.code == 2
    one_clean_line(r.err)
    assert expected in r.err and "use postgresql://" in r.err
    assert "secret-pw" not in r.err


def test_an_unsupported_url_through_a_real_process(env: dict[str, str]) -> None:
    r = app(env, "ask", QUESTION, extra={"DATABASE_URL": "mysql://u@localhost/x"})
    assert r.returncode == 2 and r.stdout == ""
    assert "Traceback" not in r.stderr and "does not support" in r.stderr


# --- db upgrade says what it did -------------------------------------------------------------


@pytest.fixture
def empty_pg() -> Any:
    name = f"concierge_empty_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_db_upgrade_says_it_created_the_schema_then_that_it_is_current(
    cli, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, kind: str, request: Any
) -> None:
    url = (
        f"sqlite:///{tmp_path / 'new.db'}"
        if kind == "sqlite"
        else request.getfixturevalue("empty_pg")
    )
    monkeypatch.setenv("DATABASE_URL", url)
    head = head_revision()
    r = cli("db", "upgrade")
    assert r.code == 0, r.err
    assert r.out.strip().endswith(f": created the schema at revision {head}")
    r = cli("db", "upgrade")
    assert r.out.strip().endswith(f": already up to date at revision {head}")


def test_db_upgrade_from_an_older_revision_names_both(
    cli, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from alembic import command
    from alembic.config import Config

    from bot.store.db import MIGRATIONS, make_engine

    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = make_engine(url)
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    command.upgrade(cfg, "0005")
    engine.dispose()
    monkeypatch.setenv("DATABASE_URL", url)
    r = cli("db", "upgrade")
    assert r.code == 0, r.err
    assert f"upgraded the schema from revision 0005 to {head_revision()}" in r.out


# --- a quiet INFO log ------------------------------------------------------------------------


def test_log_level_info_shows_no_library_chatter(env: dict[str, str], tmp_path: Path) -> None:
    fresh = {"DATABASE_URL": f"sqlite:///{tmp_path / 'info.db'}", "LOG_LEVEL": "INFO"}
    r = app(env, "ask", QUESTION, "--as", "eve@canary.test", extra=fresh)
    assert r.returncode == 0, r.stderr
    assert "alembic" not in r.stderr and "Running upgrade" not in r.stderr, r.stderr
    assert f"created the schema at revision {head_revision()}" in r.stderr
    debug = {"DATABASE_URL": f"sqlite:///{tmp_path / 'debug.db'}", "LOG_LEVEL": "DEBUG"}
    r = app(env, "db", "upgrade", extra=debug)
    assert "Running upgrade" in r.stderr  # still there when asked for
    assert "INSERT INTO" not in r.stderr  # SQL parameters carry text: never logged


# --- did you mean ----------------------------------------------------------------------------


def test_a_misspelt_ignored_config_key_gets_a_suggestion(cli, workspace) -> None:
    text = workspace.config.read_text().replace(
        "limits: {questions_per_minute: 1000}",
        "limits: {questions_per_minute: 1000, question_per_minute: 5}\nroutnig: {}",
    )
    workspace.config.write_text(text)
    r = cli("ask", QUESTION, "--as", "eve@canary.test")
    assert r.code == 0
    assert "'routnig' is not a known setting and is ignored; did you mean 'routing'?" in r.err
    assert "did you mean 'limits.questions_per_minute'?" in r.err


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (
            "sources:\n  - {name: a, kind: docs, path: ., reader: everyone}\n",
            "sources[0] (a).readers: Field required (the file has 'reader': "
            "did you mean 'readers'?)",
        ),
        (
            "sources:\n  - {name: a, kind: docs, path: ., readers: everyone}\n"
            "models:\n  - {name: m, provider: opneai, model: x}\n",
            "did you mean 'openai'?",
        ),
        (
            "sources:\n  - {name: a, kind: doc, path: ., readers: everyone}\n",
            "did you mean 'docs'?",
        ),
        (
            "roles: {hr: {members: [a@b.test]}}\n"
            "sources:\n  - {name: a, kind: docs, path: ., readers: [role:hrr]}\n",
            "reads role 'hrr', not in roles; did you mean 'hr'?",
        ),
        (
            "sources:\n  - {name: a, kind: docs, path: ., readers: everyone}\n"
            "models:\n  - {name: offline, provider: offline}\nrouting: {chain: [ofline]}\n",
            "routing.chain names 'ofline', which is not in models; did you mean 'offline'?",
        ),
    ],
)
def test_a_misspelt_required_key_or_choice_gets_a_suggestion(
    cli, workspace, content: str, expected: str
) -> None:
    workspace.config.write_text(content)
    r = cli("ask", "anything?")
    assert r.code == 2 and expected in one_clean_line(r.err)


def test_an_unknown_person_gets_the_nearest_or_the_known_people(cli) -> None:
    r = cli("ask", "hello?", "--as", "eve@canary.tst")
    assert r.code == 2
    assert one_clean_line(r.err).rstrip().endswith("did you mean eve@canary.test?")
    r = cli("ask", "hello?", "--as", "nobody@elsewhere.test")
    assert r.code == 2 and "known people: " in one_clean_line(r.err)
    assert "eve@canary.test" in r.err and "hana@canary.test" in r.err


# --- hosted models that cannot be used -------------------------------------------------------

HOSTED = "models:\n  - {name: primary, provider: openai, model: gpt-4o-mini}\n"
HOSTED += "  - {name: offline, provider: offline}\nlimits:"


def test_a_hosted_model_without_its_key_is_named_at_start_and_skipped_without_a_call(
    cli, workspace
) -> None:
    workspace.config.write_text(workspace.config.read_text().replace("limits:", HOSTED))
    r = cli("ask", QUESTION, "--as", "eve@canary.test", "--json")
    assert r.code == 0, r.err
    data = json.loads(r.out)  # stdout is the one JSON object; the note is on stderr
    assert data["outcome"] == "answered" and data["model"] == "offline"
    assert data["models_tried"] == ["offline"]
    first = data["attempts"][0]
    assert (first["model"], first["outcome"], first["error"]) == (
        "primary",
        "skipped",
        "not_configured",
    )
    note = "model primary (openai) is not usable: OPENAI_API_KEY is not set; answers use offline"
    assert r.err.count(note) == 1
    r = cli("chat", "--as", "eve@canary.test", stdin="/quit\n")
    assert r.code == 0 and note in r.err


def test_a_missing_provider_package_is_named_at_start(
    env: dict[str, str], workspace, tmp_path: Path
) -> None:
    workspace.config.write_text(workspace.config.read_text().replace("limits:", HOSTED))
    blocked = tmp_path / "blocked"
    (blocked / "langchain_openai").mkdir(parents=True)
    (blocked / "langchain_openai" / "__init__.py").write_text(
        "raise ImportError('not installed here')\n"
    )
    path = os.pathsep.join([str(blocked), str(ROOT)])
    r = app(env, "ask", QUESTION, "--as", "eve@canary.test", "--json", extra={"PYTHONPATH": path})
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["model"] == "offline"
    assert re.search(
        r"model primary \(openai\) is not usable: its provider package is not installed "
        r"\(pip install 'concierge\[openai\]'\); answers use offline",
        r.stderr,
    ), r.stderr


async def test_a_refused_key_is_not_configured_rather_than_connection(
    env: dict[str, str], workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot.core.sinks import CollectingSink
    from bot.core.types import Question
    from bot.runtime import build_runtime
    from bot.settings import Settings
    from tests.standins import openai_api
    from tests.standins.openai_api import OpenAIStandIn

    api = OpenAIStandIn()
    api.status = 401
    runner = await openai_api.start(api)
    text = workspace.config.read_text().replace(
        "limits:", openai_api.primary_config(api.url, "first_token_timeout_s: 2") + "limits:"
    )
    workspace.config.write_text(text)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-wrong")
    runtime = await build_runtime(Settings())
    try:
        assert not any("not usable" in w for w in runtime.warnings)
        result = await runtime.pipeline.ask(Question(QUESTION, "eve@canary.test"), CollectingSink())
    finally:
        runtime.close()
        await runner.cleanup()
    assert result.model == "offline"
    first = result.attempts[0]
    assert (first.model, first.error) == ("primary", "not_configured")


async def test_serve_names_an_unusable_model_at_start(env: dict[str, str], workspace) -> None:
    import asyncio
    import signal
    import time

    import aiohttp

    from tests.slack_helpers import SECRET
    from tests.standins import slack_api
    from tests.standins.slack_api import SlackStandIn

    workspace.config.write_text(workspace.config.read_text().replace("limits:", HOSTED))
    api = SlackStandIn()
    runner = await slack_api.start(api)
    port = closed_port()
    proc_env = {
        **os.environ,
        **env,
        "SLACK_BOT_TOKEN": "xoxb-serve",
        "SLACK_SIGNING_SECRET": SECRET,
        "SLACK_API_URL": api.url,
        "PORT": str(port),
        "CONCIERGE_HOST": "127.0.0.1",
        "LOG_LEVEL": "WARNING",
    }
    for key in ("SLACK_APP_TOKEN", "OPENAI_API_KEY"):
        proc_env.pop(key, None)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "app.py"),
        "serve",
        env=proc_env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with aiohttp.ClientSession() as session:
            deadline = time.monotonic() + 60
            while True:  # the notes are written before the server listens
                try:
                    async with session.get(f"http://127.0.0.1:{port}/healthz") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                assert time.monotonic() < deadline, "serve did not start"
                assert proc.returncode is None, "serve exited"
                await asyncio.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await runner.cleanup()
    text = err.decode()
    note = "model primary (openai) is not usable: OPENAI_API_KEY is not set; answers use offline"
    assert text.count(note) == 1, text[-2000:]
    assert "Traceback" not in text


def test_openai_embeddings_without_a_key_are_named_and_words_answer(cli, workspace) -> None:
    text = workspace.config.read_text() + (
        "embeddings: {provider: openai, model: text-embedding-3-small}\n"
    )
    workspace.config.write_text(text)
    r = cli("ask", QUESTION, "--as", "eve@canary.test", "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["outcome"] == "answered"
    assert r.err.count("embeddings (openai) are not usable: OPENAI_API_KEY is not set") == 1
    assert "endpoint failed" not in r.err  # no call was made


def test_a_misspelt_log_level_is_named_not_ignored(cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOG_LEVEL", "inf")
    r = cli("ask", QUESTION)
    assert r.code == 2
    assert one_clean_line(r.err) == (
        "concierge: environment variable LOG_LEVEL: 'inf' is not a log level: "
        "did you mean INFO? use DEBUG, INFO, WARNING or ERROR\n"
    )
    monkeypatch.setenv("LOG_LEVEL", "warn")  # what the logging module accepts still works
    assert cli("ask", QUESTION, "--as", "eve@canary.test").code == 0


def test_an_unknown_job_gets_the_nearest(cli) -> None:
    r = cli("jobs", "run", "weekly-report")
    assert r.code == 2
    assert "unknown job 'weekly-report'; did you mean weekly_report? jobs: " in one_clean_line(
        r.err
    )
