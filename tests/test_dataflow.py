"""``app.py dataflow``: the data-flow document states, from the live config, each source's
class, readers and the models that may receive it, where models run, what is stored where,
and which outside endpoints are called, with a Mermaid diagram; it never prints a secret."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

HOSTED = """\
models:
  - name: primary
    provider: openai
    model: gpt-4o-mini
    base_url: https://llm.example.test/v1
    price: {input: 0.15, output: 0.6}
  - {name: offline, provider: offline}
routing: {chain: [primary, offline]}
embeddings: {provider: openai, model: text-embedding-3-small, base_url: https://emb.example.test/v1}
"""


@pytest.fixture
def hosted(workspace: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    text = workspace.config.read_text().replace(
        "limits:",
        "  - name: tickets\n    kind: sql\n    readers: [group:engineering]\n"
        "    url_env: TICKETS_DB_URL\n    queries:\n      - name: mine\n"
        "        sql: SELECT title, body FROM t WHERE owner = :asker_email\n"
        "        fields: {title: title, text: body}\n"
        "limits:",
        1,
    )
    workspace.config.write_text(text.replace("limits:", HOSTED + "limits:", 1))
    monkeypatch.setenv("OPENAI_API_KEY", "sk-do-not-print-me")
    monkeypatch.setenv("TICKETS_DB_URL", "postgresql://app:hunter2@db.example.test/tickets")


def section(text: str, title: str) -> str:
    return text.split(f"## {title}", 1)[1].split("\n## ", 1)[0]


def row(text: str, name: str) -> list[str]:
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        if cells and cells[0] == name:
            return cells
    raise AssertionError(f"no row for {name}")


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_each_source_states_its_class_readers_and_the_models_that_may_receive_it(
    hosted: None, cli: Any
) -> None:
    result = cli("dataflow")
    assert result.code == 0, result.err
    sources = section(result.out, "Sources")
    assert row(sources, "handbook")[3:5] == ["public", "everyone (guests included)"]
    assert row(sources, "handbook")[-1] == "primary, offline"
    assert row(sources, "runbooks")[-1] == "primary, offline"  # internal
    hr = row(sources, "hr-policies")
    assert hr[3] == "confidential" and hr[4] == "role:hr" and hr[-1] == "offline"
    assert hr[6].startswith("required (hana@canary.test")
    tickets = row(sources, "tickets")
    assert "rows fetched as the asker" in tickets[2] and "$TICKETS_DB_URL" in tickets[2]
    models = section(result.out, "Models")
    assert row(models, "primary")[2:4] == ["https://llm.example.test", "public, internal"]
    endpoints = section(result.out, "Outside endpoints called")
    assert "https://llm.example.test: prompts of classes public, internal" in endpoints
    embeddings = next(line for line in endpoints.splitlines() if "emb.example.test" in line)
    assert "handbook, runbooks" in embeddings and "hr-policies" not in embeddings
    # The diagram: the hosted model's edge carries no confidential source.
    edge = re.search(r'concierge -->\|"([^"]*)"\| m_primary', result.out)
    assert edge is not None and "hr-policies" not in edge.group(1)
    assert "handbook" in edge.group(1)
    assert "```mermaid\nflowchart LR" in result.out
    for secret in ("sk-do-not-print-me", "hunter2"):
        assert secret not in result.out


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_html_to_a_file_escapes_and_draws(hosted: None, cli: Any, tmp_path: Path) -> None:
    target = tmp_path / "out" / "dataflow.html"
    result = cli("dataflow", "--format", "html", "--out", str(target))
    assert result.code == 0 and str(target) in result.out
    page = target.read_text()
    assert page.startswith("<!doctype html>") and '<pre class="mermaid">' in page
    assert "<td>hr-policies</td>" in page and "sk-do-not-print-me" not in page
    assert "--&gt;" in page  # the diagram's arrows are escaped inside the page


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_the_bundled_example_needs_no_configuration(
    cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CONCIERGE_CONFIG")
    result = cli("dataflow")
    assert result.code == 0, result.err
    assert "# Data flows: Acme Robotics" in result.out
    assert row(section(result.out, "Sources"), "hr-policies")[3] == "confidential"
    assert "none: everything runs in this process" in result.out


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_an_unwritable_out_path_is_a_clear_usage_error(cli: Any, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = cli("dataflow", "--out", str(blocker / "dataflow.md"))
    assert result.code == 2 and "cannot write" in result.err and "Traceback" not in result.err


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_query_rewrite_model_is_named_as_an_endpoint_of_questions(
    workspace: Any, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    rewrite = (
        HOSTED.replace(
            "  - {name: offline, provider: offline}\n",
            "  - {name: mini, provider: openai, model: gpt-mini, base_url: https://rw.example.test/v1}\n"
            "  - {name: offline, provider: offline}\n",
        )
        + "retrieval: {rewrite: {model: mini}}\n"
    )
    workspace.config.write_text(
        workspace.config.read_text().replace("limits:", rewrite + "limits:", 1)
    )
    monkeypatch.setenv("OPENAI_API_KEY", "sk-do-not-print-me")
    result = cli("dataflow")
    assert result.code == 0, result.err
    endpoints = section(result.out, "Outside endpoints called")
    line = next(x for x in endpoints.splitlines() if "rw.example.test" in x)
    assert "each question" in line and "never passages or answers" in line
