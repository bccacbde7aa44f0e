"""``app.py ask … | head -1``: a reader that leaves early is not an error (#15). The answer
is still recorded, the exit is quiet (code 0) and no BrokenPipeError traceback is printed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from bot.store.db import Store
from bot.store.models import Exchange

ROOT = Path(__file__).resolve().parent.parent.parent


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_ask_into_a_closed_pipe_exits_quietly_and_records(env: dict[str, str]) -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader (head -1) has already gone: every write breaks the pipe
    try:
        proc = subprocess.run(
            [sys.executable, str(ROOT / "app.py"), "ask", "Where do I submit expenses?"],
            env={**os.environ, **env, "LOG_LEVEL": "WARNING"},
            stdout=write_end,
            stderr=subprocess.PIPE,
            timeout=120,
            check=False,
        )
    finally:
        os.close(write_end)
    err = proc.stderr.decode(errors="replace")
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "BrokenPipe" not in err and "Exception ignored" not in err
    store = Store.open(env["DATABASE_URL"])
    try:
        with store.session() as s:
            (row,) = s.scalars(select(Exchange)).all()
        assert row.outcome == "answered"
    finally:
        store.close()
