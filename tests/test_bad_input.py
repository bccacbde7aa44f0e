"""Invariant 7: bad input gets a clear message and a sensible exit code; nothing is lost."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_exchanges import rows

ROOT = Path(__file__).resolve().parent.parent


def seed(cli) -> str:  # type: ignore[no-untyped-def]
    r = cli("ask", "Where do I submit expenses?", "--as", "eve@canary.test", "--json")
    assert r.code == 0
    return json.loads(r.out)["exchange_id"]


@pytest.mark.parametrize("question", ["", "   ", "\n\t"])
def test_empty_question_is_a_usage_error(cli, db_url: str, question: str) -> None:
    first = seed(cli)
    r = cli("ask", question)
    assert r.code == 2
    assert r.err.count("\n") == 1 and "empty" in r.err
    assert "Traceback" not in r.err
    assert [e.id for e in rows(db_url)] == [first]


def test_a_100kb_question_is_refused_and_recorded(cli, db_url: str) -> None:
    first = seed(cli)
    r = cli("ask", "why " * 25_600, "--as", "eve@canary.test", "--json")
    assert r.code == 0
    data = json.loads(r.out)
    assert data["outcome"] == "refused"
    assert "limit is 4,000" in data["answer"]
    stored = rows(db_url)
    assert stored[0].id == first and len(stored) == 2
    assert len(stored[1].question or "") < 5000


@pytest.mark.parametrize(
    "question", ["有給休暇は何日繰り越せますか？", "كم يوما من الإجازة يمكنني ترحيلها؟", "🙂🙂🙂"]
)
def test_questions_in_other_scripts_get_an_honest_answer(cli, db_url: str, question: str) -> None:
    r = cli("ask", question, "--as", "eve@canary.test", "--json")
    assert r.code == 0, r.err
    data = json.loads(r.out)
    assert data["outcome"] in {"no_answer", "answered"}
    assert data["answer"]
    assert rows(db_url)[0].question == question


def test_unknown_person_is_a_usage_error(cli, db_url: str) -> None:
    r = cli("ask", "hello?", "--as", "nobody@nowhere.test")
    assert r.code == 2
    assert "nobody@nowhere.test" in r.err and "people" in r.err
    r = cli("ask", "hello?", "--as", "not-an-email")
    assert r.code == 2 and "not an email" in r.err
    assert rows(db_url) == []


def test_missing_source_folder_warns_and_other_sources_answer(cli, workspace, db_url: str) -> None:
    import shutil

    shutil.rmtree(workspace.root / "runbooks")
    r = cli("ask", "Where do I submit expenses?", "--as", "eve@canary.test", "--json")
    assert r.code == 0
    assert "runbooks" in r.err and "does not exist" in r.err
    data = json.loads(r.out)
    assert data["outcome"] == "answered" and "Pleo" in data["answer"]
    assert "runbooks" in (rows(db_url)[0].error or "")


def test_malformed_front_matter_skips_that_file_only(cli, workspace) -> None:
    workspace.write(
        "handbook",
        "broken.md",
        "---\ntitle: [unclosed\nreaders: [group:x\n---\nThe secret broken code is CANARY-BROKEN.\n",
    )
    r = cli("ask", "What is the secret broken code?", "--as", "eve@canary.test", "--json")
    assert r.code == 0
    assert "broken.md" in r.err and "front matter" in r.err
    assert "CANARY-BROKEN" not in r.out
    r2 = cli("ask", "Where do I submit expenses?", "--as", "eve@canary.test", "--json")
    assert "Pleo" in json.loads(r2.out)["answer"]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("sources: [\n", "invalid YAML at line"),
        ("- just\n- a list\n", "mapping"),
        ("people: []\n", "sources: Field required"),
        ("sources:\n  - {name: a, kind: docs, path: .}\n", "sources[0] (a).readers"),
        ("sources:\n  - {name: a, kind: wiki, readers: everyone}\n", "unknown kind 'wiki'"),
        ("sources:\n  - {name: a, kind: docs, readers: [role:ghost]}\n", "role 'ghost'"),
        (
            "sources:\n  - {name: a, kind: docs, readers: everyone, data_class: secret}\n",
            "sources[0] (a).data_class",
        ),
        ("admins: [not-an-email]\nsources: []\n", "admins"),
    ],
)
def test_broken_config_is_refused_with_one_readable_line(
    cli, workspace, db_url: str, content: str, expected: str
) -> None:
    workspace.config.write_text(content)
    r = cli("ask", "anything?")
    assert r.code == 2
    assert r.err.startswith(f"concierge: config file {workspace.config}")
    assert expected in r.err, r.err
    assert r.err.count("\n") == 1 and "Traceback" not in r.err


def test_missing_config_file(cli, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("CONCIERGE_CONFIG", str(tmp_path / "nope.yaml"))
    r = cli("ask", "anything?")
    assert r.code == 2 and "does not exist" in r.err


def test_unknown_subcommand_and_bad_arguments(cli) -> None:
    for argv in (["fly"], ["access", "delete", "x", "y"], ["ask"], ["access", "audit", "many"]):
        r = cli(*argv)
        assert r.code == 2, argv
        assert r.err.startswith("concierge:") and "Traceback" not in r.err


def test_real_process_exit_codes_and_no_traceback(env: dict[str, str]) -> None:
    """The same through a real ``python app.py`` process, as an operator runs it."""
    run_env = {**os.environ, **env}
    ok = subprocess.run(
        [sys.executable, str(ROOT / "app.py"), "ask", "Where do I submit expenses?", "--json"],
        capture_output=True,
        text=True,
        env=run_env,
        timeout=120,
    )
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["outcome"] == "answered"
    bad = subprocess.run(
        [sys.executable, str(ROOT / "app.py"), "ask", ""],
        capture_output=True,
        text=True,
        env=run_env,
        timeout=120,
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and bad.stdout == ""


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{name: w, kind: http, readers: everyone}", "needs url"),
        (
            "{name: w, kind: http, readers: everyone, url: 'http://x/s?q={query}', "
            "auth_header: Authorization}",
            "auth_env",
        ),
        ("{name: t, kind: sql, readers: everyone, url_env: X}", "needs queries"),
        (
            "{name: t, kind: sql, readers: everyone, url_env: X, queries: [{name: q, "
            "sql: 'DELETE FROM t'}]}",
            "single SELECT",
        ),
    ],
)
def test_connector_settings_are_checked_at_load(cli, workspace, source: str, expected: str) -> None:
    workspace.config.write_text(f"sources:\n  - {source}\n")
    r = cli("ask", "anything?")
    assert r.code == 2 and expected in r.err and "sources[0]" in r.err


def test_unknown_keys_are_reported_and_ignored_not_fatal(cli, workspace) -> None:
    text = workspace.config.read_text().replace(
        "limits: {questions_per_minute: 1000}",
        "limits: {questions_per_minute: 1000, daily_budget_usd: 5}\nretention_days: 90",
    )
    workspace.config.write_text(text)
    r = cli("ask", "Where do I submit expenses?", "--as", "eve@canary.test")
    assert r.code == 0 and "Pleo" in r.out
    assert "'retention_days' is not a known setting" in r.err
    assert "'limits.daily_budget_usd' is not a known setting" in r.err
