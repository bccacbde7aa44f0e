"""``app.py eval``: candidate configs answer the same questions in throwaway stores and are
compared with the first; the real records are untouched."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from bot.store.db import Store
from bot.store.models import Exchange
from tests.standins import openai_api
from tests.standins.openai_api import OpenAIStandIn

QUESTIONS = """\
questions:
  - {question: "Where do I submit expenses?", as: eve@canary.test, expect: Pleo}
  - {question: "How many days of paid time off do we get?", as: maya@canary.test, expect: "25"}
  - {question: "What is the L3 salary band in Lisbon?", as: hana@canary.test}
"""


@pytest.fixture
def files(workspace: Any, tmp_path: Path) -> dict[str, Path]:
    qs = tmp_path / "questions.yaml"
    qs.write_text(QUESTIONS)
    return {"questions": qs, "baseline": workspace.config}


def hosted_candidate(workspace: Any, url: str) -> Path:
    text = workspace.config.read_text().replace(
        "limits:", openai_api.primary_config(url, "first_token_timeout_s: 2") + "limits:"
    )
    path = workspace.root / "candidate.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_two_candidates_are_compared_and_the_difference_reported(
    files: dict[str, Path],
    workspace: Any,
    cli: Any,
    env: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-stand-in")
    api = OpenAIStandIn(reply="Submit expenses in Pleo within thirty days. [1]", prompt_tokens=500)
    with openai_api.in_thread(api):
        candidate = hosted_candidate(workspace, api.url)
        result = cli(
            "eval",
            str(files["questions"]),
            "--candidate",
            str(files["baseline"]),
            "--candidate",
            str(candidate),
            "--out",
            str(tmp_path / "report"),
            "--json",
        )
    assert result.code == 0, result.err
    base, hosted = json.loads(result.out)["candidates"]
    assert set(base) >= {
        "config",
        "answered",
        "no_answer",
        "refused",
        "failed",
        "citation_overlap",
        "expect_hits",
        "p50_ms",
        "p95_ms",
        "cost_usd",
    }
    assert base["cost_usd"] == 0 and hosted["cost_usd"] > 0  # the difference: cost
    assert base["citation_overlap"] == 1.0
    assert base["expect_hits"] == 2
    # The hosted model was asked the public questions; the confidential one stayed offline.
    assert len(api.requests) == 2
    report = (tmp_path / "report" / "eval.md").read_text()
    assert "## Where the candidates differ" in report and "candidate.yaml" in report
    assert "primary" in report
    rows = (tmp_path / "report" / "eval.csv").read_text().splitlines()
    assert len(rows) == 1 + 3 * 2
    # The real records are untouched.
    store = Store.open(env["DATABASE_URL"])
    with store.session() as s:
        assert s.scalar(select(func.count()).select_from(Exchange)) == 0
    store.close()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_recent_questions_from_the_store(files: dict[str, Path], cli: Any, tmp_path: Path) -> None:
    assert cli("ask", "Where do I submit expenses?", "--as", "eve@canary.test").code == 0
    result = cli(
        "eval",
        "recent:5",
        "--candidate",
        str(files["baseline"]),
        "--out",
        str(tmp_path / "r"),
        "--json",
    )
    assert result.code == 0, result.err
    (only,) = json.loads(result.out)["candidates"]
    assert only["answered"] == 1


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("questions: 3\n", "expected a list of questions"),
        ("- {as: eve@canary.test}\n", "'question' is missing"),
        ("[unclosed\n", "not valid YAML"),
    ],
)
def test_bad_question_files_are_clear_usage_errors(
    files: dict[str, Path], cli: Any, tmp_path: Path, content: str, message: str
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(content)
    result = cli("eval", str(bad), "--candidate", str(files["baseline"]))
    assert result.code == 2 and message in result.err and "Traceback" not in result.err
    missing = cli("eval", "recent:5", "--candidate", str(tmp_path / "nope.yaml"))
    assert missing.code == 2 and "does not exist" in missing.err
