"""``app.py chat`` at a real (pseudo-)terminal, as a person uses it: the answer streams as
rendered Markdown, Ctrl-C stops an answer and returns to the prompt (recorded as
incomplete), slash commands are checked, greetings get what Concierge can do, and no key
ever produces a traceback. The model is the OpenAI-compatible stand-in, held part-way
through its answer so that the test can look at the screen (and press Ctrl-C) mid-answer.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from bot import PACKAGE_ROOT
from bot.store.db import Store
from bot.store.models import Exchange
from tests.conftest import Workspace
from tests.pty_session import PtySession
from tests.standins.openai_api import OpenAIStandIn, in_thread, primary_config

QUESTION = "How many days of time off can I carry over?"
BOLD = "\x1b[1m"


@pytest.fixture
def standin() -> Iterator[OpenAIStandIn]:
    model = OpenAIStandIn(
        reply="You may carry over **five days** of `unused` time off. [1] "
        "Book them in Factorial two weeks ahead. [1]",
        hold_after=5,  # held inside the bold: "… **five "
    )
    with in_thread(model):
        try:
            yield model
        finally:
            model.release()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "chat.sqlite"


@pytest.fixture
def app(workspace: Workspace, standin: OpenAIStandIn, tmp_path: Path, db_path: Path):  # type: ignore[no-untyped-def]
    """Start ``app.py ARGS`` on a terminal (closed at the end of the test)."""
    with workspace.config.open("a") as f:
        f.write(
            primary_config(
                standin.url, "first_token_timeout_s: 20, stall_timeout_s: 120, total_timeout_s: 180"
            )
        )
    sessions: list[PtySession] = []
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TEST_POSTGRES_URL", "TEST_REDIS_URL")
    env = {k: v for k, v in os.environ.items() if k in keep}
    env.update(
        {
            "PYTHONPATH": str(PACKAGE_ROOT),
            "CONCIERGE_CONFIG": str(workspace.config),
            "DATABASE_URL": f"sqlite:///{db_path}",
            "CONCIERGE_DATA_DIR": str(tmp_path / "data"),
            "CONCIERGE_INDEX_REFRESH_S": "0",
            "OPENAI_API_KEY": "sk-test-not-a-secret",
            "TERM": "xterm-256color",
            # No cursor-position query: a pty has no terminal to answer it.
            "PROMPT_TOOLKIT_NO_CPR": "1",
        }
    )

    def start(*args: str) -> PtySession:
        argv = [sys.executable, str(PACKAGE_ROOT / "app.py"), *args]
        session = PtySession(argv, env=env, cwd=str(tmp_path))
        sessions.append(session)
        return session

    yield start
    for s in sessions:
        s.close()


@pytest.fixture
def chat(app):  # type: ignore[no-untyped-def]
    return lambda *args: app("chat", *args)


def exchanges(db_path: Path) -> list[Exchange]:
    store = Store.open(f"sqlite:///{db_path}")
    try:
        with store.session() as s:
            return list(s.scalars(select(Exchange).order_by(Exchange.created_at)).all())
    finally:
        store.close()


def test_the_answer_streams_as_rendered_markdown_with_numbered_dated_sources(
    chat, standin: OpenAIStandIn, db_path: Path
) -> None:
    term = chat("--as", "eve@canary.test")
    term.expect(r"you> ")
    term.send(QUESTION + "\r")
    # Part of the answer is on the screen while the model is still held mid-answer (inside
    # a bold that is not closed yet: it shows bold, never as stars).
    term.expect(r"carry over five")
    assert "days" not in term.shown_since_last_expect() and "Factorial" not in term.text
    assert f"{BOLD}five" in term.raw
    standin.release()
    term.expect(r"Factorial two weeks ahead\. \[1\]")
    assert f"{BOLD}five days" in term.raw and "**" not in term.text  # rendered, not raw
    term.expect(r"Sources")
    term.expect(r"1\. Paid time off\s+handbook/pto\.md\S*\s+updated \d{4}-\d{2}-\d{2}")
    term.expect(r"Helpful\? \[y/n, Enter to skip\]")
    term.send("y\r")
    term.expect(r"Thanks, noted\.")
    term.expect(r"you> ")
    term.send("\x04")  # Ctrl-D leaves
    assert term.wait() == 0
    assert "Traceback" not in term.text
    (row,) = exchanges(db_path)
    assert row.outcome == "answered" and row.surface == "chat"


def test_ctrl_c_stops_the_answer_and_returns_to_the_prompt(
    chat, standin: OpenAIStandIn, db_path: Path
) -> None:
    term = chat("--as", "eve@canary.test")
    term.expect(r"you> ")
    term.send(QUESTION + "\r")
    term.expect(r"carry over five")  # the model is held here: the answer is still streaming
    term.send("\x03")
    term.expect(r"You stopped this answer\.")
    term.expect(r"you> ")
    assert "Helpful?" not in term.text  # nothing to rate
    # The chat goes on: a greeting is answered with what Concierge can do.
    term.send("hi\r")
    term.expect(r"I'm Concierge")
    term.expect(r"handbook")
    term.expect(r"you> ")
    term.send("\x03")  # Ctrl-C on an empty line leaves
    assert term.wait() == 0
    assert "Traceback" not in term.text
    stopped, greeting = exchanges(db_path)
    assert stopped.outcome == "incomplete"
    assert stopped.error == "cancelled: the asker stopped the answer"
    assert "carry over **five" in (stopped.answer or "")
    assert greeting.outcome == "answered" and greeting.model is None


def test_slash_commands_are_checked_and_never_asked(chat, db_path: Path) -> None:
    term = chat("--as", "eve@canary.test")
    term.expect(r"you> ")
    term.send("/help\r")
    term.expect(r"/new .*\n.*/as EMAIL .*\n.*/help .*\n.*/quit")
    term.send("/foo bar\r")
    term.expect(r"Unknown command /foo; try /help\.")
    term.send("/as eva@canary.test\r")
    term.expect(r"I don't know eva@canary\.test\. Did you mean eve@canary\.test\?")
    term.send("/as nobody@nowhere.test\r")
    term.expect(r"Known people include .*@canary\.test")
    term.send("/as sam@canary.test\r")
    term.expect(r"You are now sam@canary\.test; new conversation\.")
    term.send("hello\r")
    term.expect(r"you> ")
    term.send("/new\r")
    term.expect(r"New conversation\.")
    term.send("thanks\r")
    term.expect(r"You're welcome")
    term.expect(r"you> ")
    term.send("some text being typed")
    term.send("\x03")  # Ctrl-C on a line with text clears it (else /quit would be asked)
    term.send("/quit\r")
    assert term.wait() == 0
    assert "Traceback" not in term.text
    rows = exchanges(db_path)
    assert [r.question for r in rows] == ["hello", "thanks"]  # no command was asked
    assert {r.asker for r in rows} == {"sam@canary.test"}
    threads = [r.thread for r in rows]
    assert len(set(threads)) == 2 and "chat-1" not in threads


def test_ask_at_a_terminal_is_rendered_too(app, standin: OpenAIStandIn) -> None:
    standin.release()
    term = app("ask", QUESTION, "--as", "eve@canary.test")
    term.expect(r"Factorial two weeks ahead\. \[1\]")
    term.expect(r"1\. Paid time off\s+handbook/pto\.md")
    assert term.wait() == 0
    assert f"{BOLD}five days" in term.raw and "**" not in term.text


def test_chat_in_a_pipe_is_plain_text(cli, db_url: str) -> None:
    """Not a terminal (a script, a test): no escape codes, the same commands."""
    r = cli("chat", "--as", "eve@canary.test", stdin="hi\n/foo\n/help\n/quit\n")
    assert r.code == 0, r.err
    assert "\x1b" not in r.out + r.err
    assert "- **handbook**" in r.out or "handbook" in r.out
    assert "Unknown command /foo; try /help." in r.out
    assert "/as EMAIL" in r.out
