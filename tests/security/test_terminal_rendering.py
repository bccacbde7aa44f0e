"""Issue 15: what the terminal renders. A document cannot hide a link's destination behind its
label or send escape sequences to the reader's terminal; a greeting names only the sources
every reader of its audience may read."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from bot import PACKAGE_ROOT
from tests.conftest import Workspace
from tests.pty_session import PtySession

HOSTILE = (
    "---\ntitle: Password resets\n---\n\n"
    "Reset your password at the [IT portal](https://evil.example/steal) before Friday. "
    "Password resets \x1b]0;pwned\x07 need your \x1b[8mhidden\x1b[0m laptop badge.\n"
)


def test_a_document_cannot_hide_a_link_or_send_escapes_to_the_terminal(
    workspace: Workspace, tmp_path: Path
) -> None:
    workspace.write("handbook", "passwords.md", HOSTILE)
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    env.update(
        {
            "PYTHONPATH": str(PACKAGE_ROOT),
            "CONCIERGE_CONFIG": str(workspace.config),
            "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite'}",
            "CONCIERGE_DATA_DIR": str(tmp_path / "data"),
            "TERM": "xterm-256color",
        }
    )
    argv = [sys.executable, str(PACKAGE_ROOT / "app.py"), "ask", "How do I reset my password?"]
    term = PtySession([*argv, "--as", "eve@canary.test"], env=env, cwd=str(tmp_path))
    try:
        term.expect(r"Sources")
        assert term.wait() == 0
    finally:
        term.close()
    assert "IT portal (https://evil.example/steal)" in term.text  # the destination is shown
    assert "\x1b]0;pwned" not in term.raw and "\x1b[8m" not in term.raw
    assert "\x1b]8;" not in term.raw  # no terminal hyperlink whose target is hidden


def test_a_greeting_names_only_what_every_reader_may_read(cli) -> None:  # type: ignore[no-untyped-def]
    guest = json.loads(cli("ask", "hi", "--as", "gus@partner.test", "--json").out)
    assert "handbook" in guest["answer"]
    assert "runbooks" not in guest["answer"]  # gus is in engineering, but a guest
    channel = json.loads(
        cli("ask", "hello", "--as", "fin@canary.test", "--channel", "general", "--json").out
    )
    assert "handbook" in channel["answer"] and "finance-notes" not in channel["answer"]
    assert channel["sources"] == [] and channel["outcome"] == "answered"
